import Foundation

/// Token buckets: one of requests (`rate` a second, up to `burst`) and, when the limit also
/// counts events, one of events. Each request takes one request token and one event token per
/// event it carries.
///
/// `acquire(events:)` waits (on the injected clock) until both are free. Waiters are served in
/// arrival order because each reserves its tokens before sleeping. A class with a lock
/// (``Locked``), not an actor: a Stripe v1 lane takes a token per request, and hopping onto an
/// actor and back for it costs more than the bucket's arithmetic.
public final class RateLimiter: Sendable {
    private let clock: any UsageClock
    private let buckets: Locked<(requests: Bucket, events: Bucket?)>

    /// A limiter for `limit`, starting full.
    public init(_ limit: RateLimit, clock: any UsageClock = SystemClock()) {
        self.clock = clock
        let now = clock.monotonicNow()
        buckets = Locked(
            (
                Bucket(rate: limit.requestsPerSecond, burst: limit.burst, now: now),
                limit.eventsPerSecond.map { Bucket(rate: $0, burst: limit.eventBurst, now: now) }
            ))
    }

    /// Takes a request token and, if events are limited, `events` event tokens, waiting as long
    /// as the slower bucket needs. Throws `CancellationError` if cancelled.
    public func acquire(events count: Int = 1) async throws {
        let now = clock.monotonicNow()
        let wait: Double = buckets.with { b in
            let request = b.requests.take(1, now: now)
            let event = b.events?.take(Double(count), now: now) ?? 0
            return max(request, event)
        }
        if wait > 0 { try await clock.sleep(for: .seconds(wait)) }
    }

    /// Request tokens available right now (may be negative while callers are queued).
    public func available() -> Double {
        let now = clock.monotonicNow()
        return buckets.with { b in
            b.requests.refill(now: now)
            return b.requests.tokens
        }
    }

    private struct Bucket: Sendable {
        let rate: Double
        let burst: Double
        var tokens: Double
        var lastRefill: Duration

        init(rate: Double, burst: Int, now: Duration) {
            self.rate = max(rate, 0.000_001)
            self.burst = Double(burst)
            self.tokens = Double(burst)
            self.lastRefill = now
        }

        mutating func refill(now: Duration) {
            let elapsed = (now - lastRefill).seconds
            if elapsed > 0 {
                tokens = min(burst, tokens + elapsed * rate)
                lastRefill = now
            }
        }

        /// Reserves `count` now, even into debt, so later callers queue behind; returns the wait.
        mutating func take(_ count: Double, now: Duration) -> Double {
            refill(now: now)
            tokens -= count
            return tokens >= 0 ? 0 : -tokens / rate
        }
    }
}
