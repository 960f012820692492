import Foundation

/// A token bucket: `rate` tokens per second refill up to `burst`; each request takes one.
///
/// `acquire()` waits (on the injected clock) until a token is free. Waiters are served in
/// arrival order because each reserves its token before sleeping. A class with a lock, not an
/// actor: a Stripe v1 lane takes a token per request, and hopping onto an actor and back for
/// it cost more than the bucket's arithmetic.
public final class RateLimiter: @unchecked Sendable {
    private let rate: Double
    private let burst: Double
    private let clock: any UsageClock
    private let lock = NSLock()
    private var tokens: Double       // guarded by `lock`
    private var lastRefill: Duration // guarded by `lock`

    /// A limiter for `limit`, starting full.
    public init(_ limit: RateLimit, clock: any UsageClock = SystemClock()) {
        self.rate = max(limit.requestsPerSecond, 0.000_001)
        self.burst = Double(limit.burst)
        self.clock = clock
        self.tokens = Double(limit.burst)
        self.lastRefill = clock.monotonicNow()
    }

    /// Takes `count` tokens, waiting as long as needed. Throws `CancellationError` if cancelled.
    public func acquire(_ count: Int = 1) async throws {
        let wait: Double = lock.withLock {
            refill()
            tokens -= Double(count)  // reserve now, even into debt, so later callers queue behind
            return tokens >= 0 ? 0 : -tokens / rate
        }
        if wait > 0 { try await clock.sleep(for: .seconds(wait)) }
    }

    /// Tokens available right now (may be negative while callers are queued).
    public func available() -> Double {
        lock.withLock {
            refill()
            return tokens
        }
    }

    private func refill() {  // under `lock`
        let now = clock.monotonicNow()
        let elapsed = (now - lastRefill).seconds
        if elapsed > 0 {
            tokens = min(burst, tokens + elapsed * rate)
            lastRefill = now
        }
    }
}
