/// A destination for usage events: one provider adapter, or a router fanning out to several.
///
/// Adapters validate locally what their provider would reject (rule 6: validate before
/// sending) and map every provider answer to a per-event ``DeliveryOutcome``.
public protocol UsageSink: Sendable {
    /// A short, stable name for logs and metrics labels (e.g. `stripe`).
    var name: String { get }
    /// What the provider can take; the delivery worker batches and paces by it.
    var capabilities: SinkCapabilities { get }
    /// Delivers one batch (at most `capabilities.maxBatchSize` events) and returns exactly one
    /// outcome per event, in the same order.
    ///
    /// Throws only when the whole sink is unusable, such as bad credentials or a missing
    /// permission (a ``UsageBillingError`` with code `.configuration`), never for one bad event.
    func deliver(_ batch: [UsageEvent]) async throws -> [DeliveryOutcome]

    /// Delivers one batch in which the events whose ids are in `retrying` may already have
    /// reached the provider (an earlier attempt failed or ended ambiguous, or the process died
    /// during one). A provider without idempotency (``IdempotencyKind/clientCheckBeforeRetry``)
    /// looks those up before sending them again; the default ignores `retrying`.
    func deliver(_ batch: [UsageEvent], retrying: Set<String>) async throws -> [DeliveryOutcome]

    /// Events with the same key are never in flight at the same time, even when
    /// ``SinkCapabilities/maxConcurrentRequests`` allows several requests: for providers that
    /// refuse concurrent calls for one customer and meter (Stripe v1 and v2). `nil` (the
    /// default): no such limit.
    func concurrencyKey(for event: UsageEvent) -> String?
}

extension UsageSink {
    /// No per-key limit.
    public func concurrencyKey(for event: UsageEvent) -> String? { nil }

    /// Delivers, ignoring `retrying`: right for providers that dedupe by the event id themselves.
    public func deliver(_ batch: [UsageEvent], retrying: Set<String>) async throws -> [DeliveryOutcome] {
        try await deliver(batch)
    }
}

/// What a sink can take, declared by each adapter.
public struct SinkCapabilities: Sendable, Hashable {
    /// The most events one `deliver` call (one provider request) may carry.
    public var maxBatchSize: Int
    /// How old or how far in the future an event's timestamp may be; `nil` means no limit.
    public var acceptedWindow: AcceptedTimeWindow?
    /// How the provider deduplicates repeated deliveries of the same event.
    public var idempotency: IdempotencyKind
    /// The provider's request rate limit, if known; the worker paces requests by it.
    public var rateLimit: RateLimit?
    /// For providers that bill quantities per period rather than raw events: how events are
    /// aggregated per (customer, meter, window) before delivery. The spool and the router fold
    /// raw events with a ``WindowAggregator`` and hand the sink only the emitted records.
    public var aggregation: AggregationSpec?
    /// Whether events must be aggregated before delivery.
    public var needsPreAggregation: Bool { aggregation != nil }
    /// How many `deliver` calls the delivery worker may have in flight at once for one lane.
    /// More than 1 only where order and overlap cannot matter: the provider dedupes by the event
    /// id and each request stands alone (no session, no look-up before a resend, no windows).
    public var maxConcurrentRequests: Int

    /// A sink's capabilities; only the batch size is required.
    public init(
        maxBatchSize: Int,
        acceptedWindow: AcceptedTimeWindow? = nil,
        idempotency: IdempotencyKind,
        rateLimit: RateLimit? = nil,
        aggregation: AggregationSpec? = nil,
        maxConcurrentRequests: Int = 1
    ) {
        self.maxBatchSize = max(1, maxBatchSize)
        self.acceptedWindow = acceptedWindow
        self.idempotency = idempotency
        self.rateLimit = rateLimit
        self.aggregation = aggregation
        self.maxConcurrentRequests = max(1, maxConcurrentRequests)
    }
}

/// The timestamp range a provider accepts, relative to "now".
public struct AcceptedTimeWindow: Sendable, Hashable {
    /// The oldest accepted event is `now - maxAge`.
    public var maxAge: Duration
    /// The newest accepted event is `now + maxFutureSkew` (clock drift allowance).
    public var maxFutureSkew: Duration

    /// A window from `now - maxAge` to `now + maxFutureSkew`.
    public init(maxAge: Duration, maxFutureSkew: Duration) {
        self.maxAge = maxAge
        self.maxFutureSkew = maxFutureSkew
    }
}

/// How a provider deduplicates.
public enum IdempotencyKind: Sendable, Hashable {
    /// The provider drops a repeated event id itself, for at least `window` (nil: unknown/forever).
    case providerDeduplicates(window: Duration?)
    /// The provider does not dedupe, but the adapter can look up whether an id landed before
    /// re-sending after an ambiguous failure.
    case clientCheckBeforeRetry
    /// No dedup at all: an ambiguous failure cannot be retried safely without a human.
    case none
}

/// A provider's rate limit as token buckets: requests (a sustained rate and a burst) and,
/// for providers that also limit volume, events carried by those requests.
public struct RateLimit: Sendable, Hashable {
    /// Sustained requests per second.
    public var requestsPerSecond: Double
    /// How many requests may go at once after an idle period.
    public var burst: Int
    /// Sustained events per second across requests; nil: only requests are limited.
    public var eventsPerSecond: Double?
    /// How many events may go at once after an idle period.
    public var eventBurst: Int

    /// A limit of `requestsPerSecond` sustained, `burst` at once; with `eventsPerSecond`, also
    /// at most that many events a second, `eventBurst` at once.
    public init(requestsPerSecond: Double, burst: Int, eventsPerSecond: Double? = nil, eventBurst: Int = 1) {
        self.requestsPerSecond = requestsPerSecond
        self.burst = max(1, burst)
        self.eventsPerSecond = eventsPerSecond
        self.eventBurst = max(1, eventBurst)
    }
}
