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
///
/// **Bounded chains** (``chainLength``): one event's bad luck (a 500, then a reset, then a 429
/// on a lane that otherwise delivers) should not push its next attempt out to the cap while the
/// lane drains around it. With a chain length *N*, after *N* consecutive backoffs the event's
/// next retry starts a fresh chain at the first retry's ceiling, at most ``chainRestarts``
/// times; after that the curve goes on where it left off, so a provider that stays down still
/// meets the full backoff. `Retry-After` is always honoured: a restart only shortens our own
/// backoff, never the provider's demand.
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
    /// Consecutive backoffs after which a retry chain starts again at the first retry's ceiling;
    /// nil: one chain, growing to the cap.
    public var chainLength: Int?
    /// How many times a chain starts again before the curve goes on to the cap.
    public var chainRestarts: Int

    /// A policy; the defaults are ``default``'s: 10 attempts within 15 minutes, 0.5 s → 30 s.
    public init(
        baseDelay: Duration = .milliseconds(500),
        multiplier: Double = 2,
        maxDelay: Duration = .seconds(30),
        maxAttempts: Int = 10,
        maxElapsed: Duration = .seconds(15 * 60),
        chainLength: Int? = nil,
        chainRestarts: Int = 2
    ) {
        self.baseDelay = baseDelay
        self.multiplier = max(1, multiplier)
        self.maxDelay = maxDelay
        self.maxAttempts = max(1, maxAttempts)
        self.maxElapsed = maxElapsed
        self.chainLength = chainLength.map { max(1, $0) }
        self.chainRestarts = max(0, chainRestarts)
    }

    /// The worker's policy: 24 attempts within 24 hours, chains of 2 backoffs (ceilings 0.5 s and
    /// 1 s) restarted at most twice. A lane that otherwise delivers sees independent failures, so
    /// a third failure in a row is rarer than the drain's end, and a short chain keeps one
    /// unlucky event from ending the drain seconds after the rest. The four attempts the
    /// restarts take are added to the 20 a single chain would get, so a provider that stays down
    /// is retried over as long as without restarts.
    public static let worker = RetryPolicy(
        maxAttempts: 24, maxElapsed: .seconds(24 * 3600), chainLength: 2, chainRestarts: 2)

    /// The position on the curve of retry `retry` (1-based): the same, or within its restarted
    /// chain (see ``chainLength``).
    public func curveIndex(forRetry retry: Int) -> Int {
        guard let n = chainLength, retry > n else { return retry }
        let restarts = min((retry - 1) / n, chainRestarts)
        return retry - restarts * n
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
    ///   - rng: the jitter's source.
    public func delay<R: RandomNumberGenerator>(
        attemptsMade: Int, elapsed: Duration, retryAfter: Duration?, using rng: inout R
    ) -> Duration? {
        guard attemptsMade < maxAttempts else { return nil }
        let ceiling = ceiling(forRetry: curveIndex(forRetry: attemptsMade)).seconds
        let jittered = ceiling > 0 ? Double.random(in: 0...ceiling, using: &rng) : 0
        let wait = max(jittered, retryAfter?.seconds ?? 0)
        guard (elapsed.seconds + wait) <= maxElapsed.seconds else { return nil }
        return .seconds(wait)
    }

    /// ``delay(attemptsMade:elapsed:retryAfter:using:)`` with the system's random numbers.
    public func delay(attemptsMade: Int, elapsed: Duration, retryAfter: Duration?) -> Duration? {
        var rng = SystemJitter()
        return delay(attemptsMade: attemptsMade, elapsed: elapsed, retryAfter: retryAfter, using: &rng)
    }
}

/// What becomes of one event after an attempt: the one retry engine the delivery worker and
/// ``RetryingDeliverer`` both decide by, so a row in the spool and an event in memory are
/// retried on the same curve and given up at the same point.
public enum RetryDecision: Sendable, Hashable {
    /// Final: the provider has it (`duplicate`: it had it already).
    case delivered(duplicate: Bool)
    /// Final: refused for a reason resending cannot fix.
    case rejected(RejectionReason)
    /// Not final yet: try again after `after`.
    case retry(after: Duration, reason: String)
    /// Not final, and the policy's attempts or time are spent: `reason` (code `gave_up`) says
    /// what kept failing.
    case gaveUp(RejectionReason)
}

extension RetryPolicy {
    /// The decision for an event whose attempt number `attemptsMade` (1-based, this one
    /// included) ended in `outcome`, `elapsed` after its first attempt started.
    public func decide<R: RandomNumberGenerator>(
        _ outcome: DeliveryOutcome, attemptsMade: Int, elapsed: Duration,
        using rng: inout R
    ) -> RetryDecision {
        let retryAfter: Duration?
        let reason: String
        switch outcome {
        case .accepted: return .delivered(duplicate: false)
        case .duplicate: return .delivered(duplicate: true)
        case .rejected(let why): return .rejected(why)
        case .retryable(let why, let after):
            retryAfter = after
            reason = why.description
        case .possiblyDelivered:
            retryAfter = nil
            reason = "possibly delivered; resending with the same id"
        }
        guard let wait = delay(attemptsMade: attemptsMade, elapsed: elapsed, retryAfter: retryAfter, using: &rng) else {
            return .gaveUp(
                RejectionReason(
                    code: "gave_up", message: "still failing after \(attemptsMade) attempts: \(reason)", origin: .local)
            )
        }
        return .retry(after: wait, reason: reason)
    }
}

/// The system's random numbers through a generator with storage. ThreadSanitizer instruments a
/// zero-sized generator passed `inout` (`SystemRandomNumberGenerator`) at a wild address once
/// it is inlined into a closure: a crash under `scripts/tsan.sh`, not in the code.
public struct SystemJitter: RandomNumberGenerator, Sendable {
    private var draws: UInt64 = 0

    public init() {}

    public mutating func next() -> UInt64 {
        draws &+= 1
        return UInt64.random(in: .min ... .max)
    }
}
