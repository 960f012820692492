import Foundation

/// Delivers events to a sink in batches and retries what is retryable by a ``RetryPolicy``,
/// resending the same events (same ids, so the same idempotency keys) until each is final or
/// the policy gives up.
///
/// This is the in-memory driver (for scripts, the demo and the conformance suite). The durable
/// path is the spool's delivery worker, which follows the same rules.
public struct RetryingDeliverer: Sendable {
    /// The result for one event.
    public struct Report: Sendable, Hashable {
        /// The event's id.
        public var eventID: String
        /// Every outcome it had, one per attempt, in order. The last is its final state.
        public var history: [DeliveryOutcome]
        /// The last outcome.
        public var final: DeliveryOutcome { history.last ?? .possiblyDelivered }

        /// The report of `eventID` with `history`.
        public init(eventID: String, history: [DeliveryOutcome]) {
            self.eventID = eventID
            self.history = history
        }
    }

    /// The sink events go to.
    public let sink: any UsageSink
    /// When and how often to retry.
    public let policy: RetryPolicy
    /// The clock retry waits and rate limiting read.
    public let clock: any UsageClock
    /// Paces requests by the sink's declared rate limit, if it declares one.
    public let rateLimiter: RateLimiter?

    /// A deliverer for `sink`, retrying by `policy` on `clock`.
    /// - Parameters:
    ///   - sink: where the events go.
    ///   - policy: when to retry and when to give up.
    ///   - clock: what retry waits and pacing read.
    ///   - pace: whether to pace requests by the sink's declared rate limit (turn it off only
    ///     when nothing real is on the other end, as in a dry run).
    ///   - rateLimiter: a limiter shared with other deliverers of the same sink (so its bucket is
    ///     not refilled per deliverer); by default a new one from the sink's rate limit.
    public init(
        sink: any UsageSink, policy: RetryPolicy = .default, clock: any UsageClock = SystemClock(), pace: Bool = true,
        rateLimiter: RateLimiter? = nil
    ) {
        self.sink = sink
        self.policy = policy
        self.clock = clock
        self.rateLimiter =
            pace ? (rateLimiter ?? sink.capabilities.rateLimit.map { RateLimiter($0, clock: clock) }) : nil
    }

    /// Delivers `events`; returns one report per event in input order. Throws only what the sink
    /// throws (configuration errors) or `CancellationError`.
    public func deliver(_ events: [UsageEvent]) async throws -> [Report] {
        var rng = SystemJitter()
        return try await deliver(events, using: &rng)
    }

    /// ``deliver(_:)`` with a caller-supplied random generator for the jitter.
    public func deliver<R: RandomNumberGenerator>(_ events: [UsageEvent], using rng: inout R) async throws -> [Report] {
        var histories = [[DeliveryOutcome]](repeating: [], count: events.count)
        var pending = Array(events.indices)
        let started = clock.monotonicNow()
        while !pending.isEmpty {
            try Task.checkCancellation()
            for batch in Batcher.batches(pending, maxBatchSize: sink.capabilities.maxBatchSize) {
                if let rateLimiter { try await rateLimiter.acquire(events: batch.count) }
                let retrying = Set(
                    batch.filter { histories[$0].contains(where: \.mayHaveReachedProvider) }.map { events[$0].id })
                let outcomes = try await sink.deliver(batch.map { events[$0] }, retrying: retrying)
                guard outcomes.count == batch.count else {
                    throw UsageBillingError(
                        .unexpectedResponse,
                        "sink \(sink.name) returned \(outcomes.count) outcomes for \(batch.count) events",
                        fix: "this is a bug in the adapter; report it")
                }
                for (index, outcome) in zip(batch, outcomes) { histories[index].append(outcome) }
            }
            // Each event by the retry engine; the round waits for the longest of their waits (a
            // `Retry-After` holds for the whole round). An event the policy gives up on keeps its
            // last, non-final outcome.
            let elapsed = clock.monotonicNow() - started
            var wait: Duration = .zero
            pending = pending.filter { index in
                guard let last = histories[index].last else { return false }
                guard
                    case .retry(let after, _) = policy.decide(
                        last, attemptsMade: histories[index].count, elapsed: elapsed, using: &rng)
                else { return false }
                wait = max(wait, after)
                return true
            }
            guard !pending.isEmpty else { break }
            try await clock.sleep(for: wait)
        }
        return events.indices.map { Report(eventID: events[$0].id, history: histories[$0]) }
    }
}
