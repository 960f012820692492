import Foundation
import UsageBilling

/// A clock for tests: time stands still until moved, and `sleep` does not wait but moves time
/// forward by the requested amount and records it, so backoff and Retry-After can be asserted.
public final class TestClock: UsageClock {
    private let state: Locked<(wall: Date, monotonic: Duration, sleeps: [Duration])>

    /// A clock that reads `now`.
    public init(now: Date = Date(timeIntervalSince1970: 1_764_072_000)) {
        state = Locked((wall: now, monotonic: .zero, sleeps: []))
    }

    /// The test's wall-clock time.
    public func now() -> Date { state.with { $0.wall } }

    /// Elapsed time since the clock was made, moved only by sleeps and `advance`.
    public func monotonicNow() -> Duration { state.with { $0.monotonic } }

    /// Records `duration` and advances time by it, at once.
    public func sleep(for duration: Duration) async throws {
        try Task.checkCancellation()
        state.with {
            $0.sleeps.append(duration)
            $0.wall = $0.wall.addingTimeInterval(duration.seconds)
            $0.monotonic += duration
        }
    }

    /// Moves time forward without a sleep.
    public func advance(by duration: Duration) {
        state.with {
            $0.wall = $0.wall.addingTimeInterval(duration.seconds)
            $0.monotonic += duration
        }
    }

    /// Every sleep requested so far, in order.
    public var sleeps: [Duration] { state.with { $0.sleeps } }
}
