import Foundation
import UsageBilling

/// Settings of the OpenMeter sink (snake_case keys). `api_key` is required for OpenMeter Cloud
/// and may be omitted for a self-hosted instance that has no auth.
public struct OpenMeterSettings: ProviderSettings {
    /// An OpenMeter Cloud API token (sent as `Authorization: Bearer`), or nil for self-hosted.
    public var apiKey: Secret?
    /// Base URL, `https://openmeter.cloud` by default.
    public var endpoint: String
    /// The CloudEvents `source`: keep it stable, since OpenMeter dedupes by (source, id).
    public var source: String
    /// Events per request. OpenMeter documents no limit; default 100.
    public var maxBatchSize: Int
    /// Event type, the `data` property carrying the quantity (default `value`), extra
    /// properties, customer id → subject.
    public var mapping: EventMapping
    /// Event type → the slug of the meter reconciliation reads it from. Unlisted event types are
    /// read from the meter whose slug is the event type.
    public var meterSlugs: [String: String] = [:]
    /// Pre-aggregation: events folded per customer and meter into one event per window (its
    /// quantity the window's value, its id the window's derived id), so a customer sending
    /// thousands of events a second costs one call per window. Unset: every event is sent.
    public var aggregate: AggregationSpec?

    /// The keys these settings read.
    public static let keys: Set<String> = EventMapping.keys.union(CodingKeys.allCases.map(\.rawValue))

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case apiKey = "api_key", endpoint, source, maxBatchSize = "max_batch_size", meterSlugs = "meter_slugs", aggregate
    }

    /// Settings with defaults.
    public init(apiKey: Secret?, endpoint: String = "https://openmeter.cloud", source: String = "usage-billing",
                maxBatchSize: Int = 100, mapping: EventMapping = EventMapping(quantityProperty: "value")) {
        self.apiKey = apiKey
        self.endpoint = endpoint
        self.source = source
        self.maxBatchSize = maxBatchSize
        self.mapping = mapping
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = OpenMeterSettings(apiKey: nil)
        apiKey = try c.decodeIfPresent(Secret.self, forKey: .apiKey)
        endpoint = try c.decodeIfPresent(String.self, forKey: .endpoint) ?? d.endpoint
        source = try c.decodeIfPresent(String.self, forKey: .source) ?? d.source
        maxBatchSize = try c.decodeIfPresent(Int.self, forKey: .maxBatchSize) ?? d.maxBatchSize
        mapping = try EventMapping(from: decoder, defaultQuantityProperty: "value")
        meterSlugs = try c.decodeIfPresent([String: String].self, forKey: .meterSlugs) ?? [:]
        aggregate = try c.decodeIfPresent(AggregationSpec.self, forKey: .aggregate)
    }

    public static let providerName = "OpenMeter"
    public static let example = "{api_key: ${OPENMETER_TOKEN}, source: my-service}"

    /// Checks values that decode but cannot work.
    public func validate() throws {
        try SettingsDecoding.checkURL(endpoint, field: "endpoint", provider: "OpenMeter", example: "https://openmeter.cloud")
        if apiKey == nil, endpoint.contains("openmeter.cloud") {
            throw UsageBillingError(.configuration, "OpenMeter Cloud needs an api_key", fix: "set api_key: ${OPENMETER_TOKEN}", field: "api_key")
        }
        if apiKey?.exposedValue.isEmpty == true {
            throw UsageBillingError(.configuration, "OpenMeter api_key is empty", fix: "set api_key: ${OPENMETER_TOKEN} or omit it for self-hosted", field: "api_key")
        }
        if source.isEmpty {
            throw UsageBillingError(.invalidInput, "OpenMeter source is empty", fix: "use a stable name such as your service's", field: "source")
        }
        for (eventType, slug) in meterSlugs where eventType.isEmpty || slug.isEmpty {
            throw UsageBillingError(.invalidInput, "OpenMeter meter_slugs maps '\(eventType)' to '\(slug)'; both must be non-empty",
                                    fix: "map an event type to its meter's slug, e.g. meter_slugs: {api_request: api_requests_total}", field: "meter_slugs")
        }
        if !(1...10_000).contains(maxBatchSize) {
            throw UsageBillingError(.invalidInput, "OpenMeter max_batch_size \(maxBatchSize) is out of range", fix: "use 1 to 10000", field: "max_batch_size")
        }
    }
}
