import Foundation

/// The clock everything time-dependent reads (rule 7: time is injected). Tests pass a clock they
/// move by hand; production uses ``SystemClock``.
public protocol UsageClock: Sendable {
    /// Wall-clock now, for timestamp windows and aggregation windows.
    func now() -> Date
    /// A monotonic reading for measuring elapsed time (never jumps backwards).
    func monotonicNow() -> Duration
    /// Suspends for `duration` (or, in a test clock, records it and moves time on).
    func sleep(for duration: Duration) async throws
}

/// The real clock: `Date()` for wall time, `ContinuousClock` for elapsed time and sleeping.
public struct SystemClock: UsageClock {
    private static let origin = ContinuousClock.now

    /// The system clock.
    public init() {}

    /// `Date()`.
    public func now() -> Date { Date() }

    /// Time on `ContinuousClock` since the process first read this clock.
    public func monotonicNow() -> Duration { ContinuousClock.now - Self.origin }

    /// `Task.sleep(for:)`; throws `CancellationError` when cancelled.
    public func sleep(for duration: Duration) async throws {
        try await Task.sleep(for: duration)
    }
}

extension Duration {
    /// The duration in seconds as a `Double`.
    public var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }
}
