import Foundation
import UsageBilling

/// Settings of the Orb sink. Decodes from a routing-config / fixture `settings` object
/// (snake_case keys); only `api_key` is required.
public struct OrbSettings: ProviderSettings {
    /// Which Orb customer id field events carry.
    public enum CustomerIDKind: String, Sendable, Decodable {
        /// `external_customer_id`: your own alias; the customer need not exist yet.
        case external
        /// `customer_id`: Orb's generated id; the customer must exist.
        case orb
    }

    /// Which of Orb's environments the key belongs to: each has its own documented ingest
    /// limits, which are the pacing defaults. Orb's keys do not say which they are.
    public enum Mode: String, Sendable, Decodable, CaseIterable {
        case live, test, trial

        /// Orb's documented ingest limits for this mode (docs.withorb.com/api-reference/rate-limits).
        public var documentedLimits: (requestsPerSecond: Double, eventsPerMinute: Double) {
            switch self {
            case .live: (100, 10_000)
            case .test: (10, 2_000)
            case .trial: (2, 100)
            }
        }
    }

    /// An Orb API key (sent as `Authorization: Bearer`).
    public var apiKey: Secret
    /// Base URL, `https://api.withorb.com/v1` by default.
    public var endpoint: String
    /// Which customer id field to send. Default `external`.
    public var customerIDKind: CustomerIDKind
    /// Events per ingest request. Orb documents no maximum; default 500.
    public var maxBatchSize: Int
    /// The account's grace period: older events fail Orb's validation. Unset: not checked locally.
    public var gracePeriodHours: Double?
    /// Send events older than the grace period through a backfill (create, ingest with
    /// `backfill_id`, close) instead of rejecting them.
    public var backfill: Bool
    /// The environment the key belongs to. Default `live`.
    public var mode: Mode
    /// Ingest requests per second to pace at; nil: a tenth under the mode's documented limit.
    public var requestsPerSecond: Double?
    /// Events per minute to pace at; nil: a tenth under the mode's documented limit (Orb raises
    /// it on request: set the raised figure here).
    public var eventsPerMinute: Double?
    /// Event name, quantity property (default `quantity`), extra properties, customer ids.
    public var mapping: EventMapping
    /// Orb customer id → the subscription whose usage reconciliation reads. Unlisted customers:
    /// their subscriptions are looked up (`GET /subscriptions`) and those overlapping the range read.
    public var subscriptions: [String: String] = [:]
    /// Pre-aggregation: events folded per customer and meter into one event per window (its
    /// quantity the window's value, its id the window's derived id), so a customer sending
    /// thousands of events a second costs one call per window. Unset: every event is sent.
    public var aggregate: AggregationSpec?

    /// The keys these settings read.
    public static let keys: Set<String> = EventMapping.keys.union(CodingKeys.allCases.map(\.rawValue))

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case apiKey = "api_key", endpoint, customerIDKind = "customer_id_kind", maxBatchSize = "max_batch_size"
        case gracePeriodHours = "grace_period_hours", backfill, mode, requestsPerSecond = "requests_per_second",
            eventsPerMinute = "events_per_minute"
        case subscriptions, aggregate
    }

    /// Settings with defaults for everything but the key.
    public init(
        apiKey: Secret, endpoint: String = "https://api.withorb.com/v1", customerIDKind: CustomerIDKind = .external,
        maxBatchSize: Int = 500, gracePeriodHours: Double? = nil, backfill: Bool = false, mode: Mode = .live,
        requestsPerSecond: Double? = nil, eventsPerMinute: Double? = nil,
        mapping: EventMapping = EventMapping(quantityProperty: "quantity")
    ) {
        self.apiKey = apiKey
        self.endpoint = endpoint
        self.customerIDKind = customerIDKind
        self.maxBatchSize = maxBatchSize
        self.gracePeriodHours = gracePeriodHours
        self.backfill = backfill
        self.mode = mode
        self.requestsPerSecond = requestsPerSecond
        self.eventsPerMinute = eventsPerMinute
        self.mapping = mapping
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = OrbSettings(apiKey: "")
        apiKey = try c.decode(Secret.self, forKey: .apiKey)
        endpoint = try c.decodeIfPresent(String.self, forKey: .endpoint) ?? d.endpoint
        customerIDKind = try c.decodeIfPresent(CustomerIDKind.self, forKey: .customerIDKind) ?? d.customerIDKind
        maxBatchSize = try c.decodeIfPresent(Int.self, forKey: .maxBatchSize) ?? d.maxBatchSize
        gracePeriodHours = try c.decodeIfPresent(Double.self, forKey: .gracePeriodHours)
        backfill = try c.decodeIfPresent(Bool.self, forKey: .backfill) ?? false
        mode = try c.decodeIfPresent(Mode.self, forKey: .mode) ?? d.mode
        requestsPerSecond = try c.decodeIfPresent(Double.self, forKey: .requestsPerSecond)
        eventsPerMinute = try c.decodeIfPresent(Double.self, forKey: .eventsPerMinute)
        mapping = try EventMapping(from: decoder, defaultQuantityProperty: "quantity")
        subscriptions = try c.decodeIfPresent([String: String].self, forKey: .subscriptions) ?? [:]
        aggregate = try c.decodeIfPresent(AggregationSpec.self, forKey: .aggregate)
    }

    public static let providerName = "Orb"
    public static let example = "{api_key: ${ORB_API_KEY}}"

    /// Checks values that decode but cannot work.
    public func validate() throws {
        if apiKey.exposedValue.isEmpty {
            throw UsageBillingError(
                .configuration, "Orb api_key is empty", fix: "set it from the environment: api_key: ${ORB_API_KEY}",
                field: "api_key")
        }
        try SettingsDecoding.checkURL(
            endpoint, field: "endpoint", provider: "Orb", example: "https://api.withorb.com/v1")
        if !(1...10_000).contains(maxBatchSize) {
            throw UsageBillingError(
                .invalidInput, "Orb max_batch_size \(maxBatchSize) is out of range",
                fix: "use 1 to 10000 (500 is a good default)", field: "max_batch_size")
        }
        if let grace = gracePeriodHours, grace <= 0 {
            throw UsageBillingError(
                .invalidInput, "Orb grace_period_hours must be positive",
                fix: "use your account's grace period, e.g. 12", field: "grace_period_hours")
        }
        if backfill && gracePeriodHours == nil {
            throw UsageBillingError(
                .invalidInput, "Orb backfill needs grace_period_hours to know which events are old",
                fix: "set grace_period_hours to your account's grace period", field: "grace_period_hours")
        }
        for (customer, id) in subscriptions where customer.isEmpty || id.isEmpty {
            throw UsageBillingError(
                .invalidInput, "Orb subscriptions maps '\(customer)' to '\(id)'; both must be non-empty",
                fix: "map an Orb customer id to its subscription id, e.g. subscriptions: {acme: sub_…}",
                field: "subscriptions")
        }
        if let rate = requestsPerSecond, rate <= 0 {
            throw UsageBillingError(
                .invalidInput, "Orb requests_per_second must be positive",
                fix:
                    "omit it to pace under mode \(mode.rawValue)'s documented limit, or set the rate Orb raised for your account",
                field: "requests_per_second")
        }
        if let rate = eventsPerMinute, rate <= 0 {
            throw UsageBillingError(
                .invalidInput, "Orb events_per_minute must be positive",
                fix:
                    "omit it to pace under mode \(mode.rawValue)'s documented limit, or set the volume Orb raised for your account",
                field: "events_per_minute")
        }
    }

    /// The pacing: the settings' figures where set, else a tenth under the mode's documented
    /// limits (requests sent at exactly a limit arrive bunched and meet it). Bursts are a tenth
    /// of a second's requests and six seconds' events.
    public var rateLimit: RateLimit {
        let documented = mode.documentedLimits
        let requests = requestsPerSecond ?? documented.requestsPerSecond * 0.9
        let eventsPerSecond = (eventsPerMinute ?? documented.eventsPerMinute * 0.9) / 60
        return RateLimit(
            requestsPerSecond: requests, burst: max(1, Int(requests / 10)),
            eventsPerSecond: eventsPerSecond, eventBurst: max(1, Int(eventsPerSecond * 6)))
    }
}
