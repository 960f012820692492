import Foundation
import UsageBilling

/// Settings of the Chargebee sink (snake_case keys). Required: `api_key`, `site` (or
/// `endpoint`), and in `usages` mode an item price (`item_price_id` or `item_prices`).
public struct ChargebeeSettings: ProviderSettings {
    /// Which Chargebee usage system a route feeds.
    public enum Mode: String, Sendable, Codable {
        /// The Usages API (metered billing): one aggregated record per (subscription, item
        /// price, window), form-encoded, `id` = the aggregate's id.
        case usages
        /// The Usage Events API (usage-based billing): raw events, JSON batches of up to 500 to
        /// the `ingest` sub-domain, deduplicated by `deduplication_id`.
        case usageEvents = "usage_events"
    }

    /// A Chargebee API key (HTTP basic user name, empty password).
    public var apiKey: Secret
    /// The site name as in `{site}.chargebee.com`; a test site is `acme-test`.
    public var site: String?
    /// Base URL of the main API; default `https://{site}.chargebee.com`.
    public var endpoint: String
    /// Base URL of the ingest API; default `https://{site}.ingest.chargebee.com`.
    public var ingestEndpoint: String
    /// `usages` (default) or `usage_events`.
    public var mode: Mode
    /// The metered item price every event bills (usages mode).
    public var itemPriceID: String?
    /// Per event name, the item price (overrides `item_price_id`).
    public var itemPrices: [String: String]
    /// Sent as `dedupe_option` (`skip` or `update_existing`) when set.
    public var dedupeOption: String?
    /// Windowed aggregation for usages mode; default one day, summed, 1 h grace.
    public var aggregate: AggregationSpec
    /// Requests per minute to pace at (Chargebee: 150/min on test sites and Starter plans).
    public var requestsPerMinute: Double
    /// Events per usage-events request, 1–500.
    public var maxBatchSize: Int
    /// Quantity property, extra properties, and your customer id → Chargebee subscription id.
    public var mapping: EventMapping

    /// The keys these settings read.
    public static let keys: Set<String> = EventMapping.keys.union(CodingKeys.allCases.map(\.rawValue))

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case apiKey = "api_key", site, endpoint, ingestEndpoint = "ingest_endpoint", mode, itemPriceID = "item_price_id"
        case itemPrices = "item_prices", dedupeOption = "dedupe_option", aggregate, requestsPerMinute =
            "requests_per_minute"
        case maxBatchSize = "max_batch_size"
    }

    /// Settings for `site`; everything else defaults.
    public init(
        apiKey: Secret, site: String?, endpoint: String? = nil, ingestEndpoint: String? = nil, mode: Mode = .usages,
        itemPriceID: String? = nil, itemPrices: [String: String] = [:], dedupeOption: String? = nil,
        aggregate: AggregationSpec = AggregationSpec(window: .fixed(seconds: 86_400), grace: .seconds(3600)),
        requestsPerMinute: Double = 150, maxBatchSize: Int = 500,
        mapping: EventMapping = EventMapping(quantityProperty: "quantity")
    ) {
        self.apiKey = apiKey
        self.site = site
        self.endpoint = endpoint ?? "https://\(site ?? "SITE").chargebee.com"
        self.ingestEndpoint = ingestEndpoint ?? "https://\(site ?? "SITE").ingest.chargebee.com"
        self.mode = mode
        self.itemPriceID = itemPriceID
        self.itemPrices = itemPrices
        self.dedupeOption = dedupeOption
        self.aggregate = aggregate
        self.requestsPerMinute = requestsPerMinute
        self.maxBatchSize = maxBatchSize
        self.mapping = mapping
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let site = try c.decodeIfPresent(String.self, forKey: .site)
        let d = ChargebeeSettings(apiKey: "", site: site)
        self.init(
            apiKey: try c.decode(Secret.self, forKey: .apiKey), site: site,
            endpoint: try c.decodeIfPresent(String.self, forKey: .endpoint),
            ingestEndpoint: try c.decodeIfPresent(String.self, forKey: .ingestEndpoint),
            mode: try c.decodeIfPresent(Mode.self, forKey: .mode) ?? .usages,
            itemPriceID: try c.decodeIfPresent(String.self, forKey: .itemPriceID),
            itemPrices: try c.decodeIfPresent([String: String].self, forKey: .itemPrices) ?? [:],
            dedupeOption: try c.decodeIfPresent(String.self, forKey: .dedupeOption),
            aggregate: try c.decodeIfPresent(AggregationSpec.self, forKey: .aggregate) ?? d.aggregate,
            requestsPerMinute: try c.decodeIfPresent(Double.self, forKey: .requestsPerMinute) ?? d.requestsPerMinute,
            maxBatchSize: try c.decodeIfPresent(Int.self, forKey: .maxBatchSize) ?? d.maxBatchSize,
            mapping: try EventMapping(from: decoder, defaultQuantityProperty: "quantity"))
    }

    public static let providerName = "Chargebee"
    public static let example = "{api_key: ${CHARGEBEE_API_KEY}, site: acme-test, item_price_id: api-calls-USD-monthly}"

    /// The item price for an event name (usages mode).
    public func itemPrice(for eventName: String) -> String? { itemPrices[eventName] ?? itemPriceID }

    /// Checks values that decode but cannot work.
    public func validate() throws {
        if apiKey.exposedValue.isEmpty {
            throw UsageBillingError(
                .configuration, "Chargebee api_key is empty", fix: "set it: api_key: ${CHARGEBEE_API_KEY}",
                field: "api_key")
        }
        if site == nil && (endpoint.contains("SITE") || ingestEndpoint.contains("SITE")) {
            throw UsageBillingError(
                .invalidInput, "Chargebee site is missing",
                fix: "add site: your-site (or your-site-test for a test site)", field: "site")
        }
        if let site, site.isEmpty || !site.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) {
            throw UsageBillingError(
                .invalidInput, "Chargebee site '\(site)' is not a site name",
                fix: "write only the name in {site}.chargebee.com, e.g. acme-test", field: "site")
        }
        try SettingsDecoding.checkURL(
            endpoint, field: "endpoint", provider: "Chargebee", example: "https://acme-test.chargebee.com")
        try SettingsDecoding.checkURL(
            ingestEndpoint, field: "ingest_endpoint", provider: "Chargebee",
            example: "https://acme-test.ingest.chargebee.com")
        if mode == .usages && itemPriceID == nil && itemPrices.isEmpty {
            throw UsageBillingError(
                .invalidInput, "Chargebee usages mode needs an item price",
                fix: "add item_price_id: <metered item price id> (or item_prices: {event_name: id})",
                field: "item_price_id")
        }
        if let option = dedupeOption, !["skip", "update_existing"].contains(option) {
            throw UsageBillingError(
                .invalidInput, "Chargebee dedupe_option '\(option)' is not skip or update_existing",
                fix: "use skip or update_existing, or leave it out", field: "dedupe_option")
        }
        if !(1...500).contains(maxBatchSize) {
            throw UsageBillingError(
                .invalidInput, "Chargebee max_batch_size \(maxBatchSize) is out of range",
                fix: "use 1 to 500 (Chargebee takes at most 500 usage events per batch)", field: "max_batch_size")
        }
        if requestsPerMinute <= 0 {
            throw UsageBillingError(
                .invalidInput, "Chargebee requests_per_minute must be positive", fix: "use 150",
                field: "requests_per_minute")
        }
    }
}
