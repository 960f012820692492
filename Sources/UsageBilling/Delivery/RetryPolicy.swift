import Foundation

/// Exponential backoff with full jitter, honouring `Retry-After`, capped by attempts and by
/// total elapsed time.
///
/// The curve: before retry *n* (1-based) the delay is drawn uniformly from
/// `[0, min(maxDelay, baseDelay · multiplier^(n-1))]` ("full jitter", which spreads a crowd of
/// clients evenly instead of in waves). With the defaults (0.5 s base, ×2, 30 s cap) the upper
/// bounds are 0.5, 1, 2, 4, 8, 16, 30, 30 … seconds. When the provider sends `Retry-After`, the
/// delay is at least that long (the jittered value is added on top of nothing: we wait
/// `max(retryAfter, jittered)`), even past `maxDelay`. Retrying stops when `maxAttempts`
/// deliveries have been made or when the next wait would end past `maxElapsed` since the first
/// attempt: the event then stays queued (worker) or is reported as still retryable.
public struct RetryPolicy: Sendable, Hashable {
    /// Upper bound of the first retry's delay.
    public var baseDelay: Duration
    /// Growth per retry.
    public var multiplier: Double
    /// Cap on the jittered delay (not on `Retry-After`).
    public var maxDelay: Duration
    /// Total delivery attempts, the first included.
    public var maxAttempts: Int
    /// Cap on the time from the first attempt to the start of the last one.
    public var maxElapsed: Duration

    /// Creates a value with the given settings; every parameter is described on its property.
    public init(
        baseDelay: Duration = .milliseconds(500),
        multiplier: Double = 2,
        maxDelay: Duration = .seconds(30),
        maxAttempts: Int = 10,
        maxElapsed: Duration = .seconds(15 * 60)
    ) {
        self.baseDelay = baseDelay
        self.multiplier = max(1, multiplier)
        self.maxDelay = maxDelay
        self.maxAttempts = max(1, maxAttempts)
        self.maxElapsed = maxElapsed
    }

    /// The default policy: 10 attempts within 15 minutes, 0.5 s → 30 s full-jitter backoff.
    public static let `default` = RetryPolicy()

    /// No retries at all.
    public static let none = RetryPolicy(maxAttempts: 1)

    /// The upper bound of the jittered delay before retry `retry` (1-based).
    public func ceiling(forRetry retry: Int) -> Duration {
        let exponent = Double(max(0, retry - 1))
        let raw = baseDelay.seconds * pow(multiplier, exponent)
        return .seconds(min(maxDelay.seconds, raw))
    }

    /// How long to wait before the next attempt, or `nil` to stop retrying.
    /// - Parameters:
    ///   - attemptsMade: deliveries made so far (≥ 1).
    ///   - elapsed: time since the first attempt started.
    ///   - retryAfter: the provider's `Retry-After`, if any.
    public func delay<R: RandomNumberGenerator>(
        attemptsMade: Int, elapsed: Duration, retryAfter: Duration?, using rng: inout R
    ) -> Duration? {
        guard attemptsMade < maxAttempts else { return nil }
        let ceiling = ceiling(forRetry: attemptsMade).seconds
        let jittered = ceiling > 0 ? Double.random(in: 0...ceiling, using: &rng) : 0
        let wait = max(jittered, retryAfter?.seconds ?? 0)
        guard (elapsed.seconds + wait) <= maxElapsed.seconds else { return nil }
        return .seconds(wait)
    }

    /// ``delay(attemptsMade:elapsed:retryAfter:using:)`` with the system random generator.
    public func delay(attemptsMade: Int, elapsed: Duration, retryAfter: Duration?) -> Duration? {
        var rng = SystemRandomNumberGenerator()
        return delay(attemptsMade: attemptsMade, elapsed: elapsed, retryAfter: retryAfter, using: &rng)
    }
}
