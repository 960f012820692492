import Foundation
import UsageBilling

/// Settings of the OpenMeter sink (snake_case keys). `api_key` is required for OpenMeter Cloud
/// and Kong Konnect, and may be omitted for a self-hosted instance that has no auth.
public struct OpenMeterSettings: ProviderSettings {
    /// Which OpenMeter API the sink speaks.
    public enum API: String, Sendable, Codable, CaseIterable {
        /// Self-hosted OpenMeter and OpenMeter Cloud: `POST {endpoint}/api/v1/events`, 204.
        case v1
        /// Kong Konnect Metering & Billing (and OpenMeter's v3): `POST {endpoint}/openmeter/events`
        /// under a base that ends in `/v3`, 202.
        case v3
    }

    /// Kong Konnect's regions, each with its own API host (`https://{region}.api.konghq.com/v3`).
    public static let konnectRegions = ["us", "eu", "au", "me", "in"]

    /// An OpenMeter Cloud API token or a Konnect personal/system access token (sent as
    /// `Authorization: Bearer`), or nil for self-hosted.
    public var apiKey: Secret?
    /// Base URL: `https://openmeter.cloud` by default, `https://{region}.api.konghq.com/v3` with a region.
    public var endpoint: String
    /// The API: `v3` with a `region` or a Konnect endpoint, else `v1`.
    public var api: API = .v1
    /// The Konnect region (`us`, `eu`, `au`, `me`, `in`), when sending to Konnect.
    public var region: String?
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
        case apiKey = "api_key", endpoint, api, region, source, maxBatchSize = "max_batch_size", meterSlugs =
            "meter_slugs", aggregate
    }

    /// Settings with defaults.
    public init(
        apiKey: Secret?, endpoint: String = "https://openmeter.cloud", source: String = "usage-billing",
        maxBatchSize: Int = 100, mapping: EventMapping = EventMapping(quantityProperty: "value")
    ) {
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
        region = try c.decodeIfPresent(String.self, forKey: .region)
        let regional = region.map { "https://\($0).api.konghq.com/v3" }
        endpoint = try c.decodeIfPresent(String.self, forKey: .endpoint) ?? regional ?? d.endpoint
        api = try c.decodeIfPresent(API.self, forKey: .api) ?? (region != nil || Self.isKonnect(endpoint) ? .v3 : .v1)
        source = try c.decodeIfPresent(String.self, forKey: .source) ?? d.source
        maxBatchSize = try c.decodeIfPresent(Int.self, forKey: .maxBatchSize) ?? d.maxBatchSize
        mapping = try EventMapping(from: decoder, defaultQuantityProperty: "value")
        meterSlugs = try c.decodeIfPresent([String: String].self, forKey: .meterSlugs) ?? [:]
        aggregate = try c.decodeIfPresent(AggregationSpec.self, forKey: .aggregate)
    }

    public static let providerName = "OpenMeter"
    public static let example =
        "{api_key: ${OPENMETER_TOKEN}, source: my-service}, or for Kong Konnect {region: eu, api_key: ${KONNECT_TOKEN}}"

    /// Whether `endpoint` is a Kong Konnect API host.
    static func isKonnect(_ endpoint: String) -> Bool {
        URLComponents(string: endpoint)?.host?.hasSuffix(".api.konghq.com") == true
    }

    /// The ingest path under ``endpoint``.
    public var eventsPath: String { api == .v3 ? "/openmeter/events" : "/api/v1/events" }

    /// Checks values that decode but cannot work.
    public func validate() throws {
        try SettingsDecoding.checkURL(
            endpoint, field: "endpoint", provider: "OpenMeter", example: "https://openmeter.cloud")
        if let region, !Self.konnectRegions.contains(region) {
            throw UsageBillingError(
                .invalidInput, "OpenMeter region '\(region)' is not a Konnect region",
                fix: "use one of \(Self.konnectRegions.joined(separator: ", ")), or set endpoint for another host",
                field: "region")
        }
        if apiKey == nil, endpoint.contains("openmeter.cloud") {
            throw UsageBillingError(
                .configuration, "OpenMeter Cloud needs an api_key", fix: "set api_key: ${OPENMETER_TOKEN}",
                field: "api_key")
        }
        if apiKey == nil, Self.isKonnect(endpoint) {
            throw UsageBillingError(
                .configuration, "Kong Konnect needs an api_key",
                fix:
                    "set api_key: ${KONNECT_TOKEN}, a Konnect system (spat_…) or personal (kpat_…) access token with Metering & Billing access",
                field: "api_key")
        }
        if api == .v1, Self.isKonnect(endpoint) {
            throw UsageBillingError(
                .invalidInput, "Kong Konnect speaks OpenMeter's v3 API, not v1",
                fix: "remove api: v1 (a Konnect endpoint or region means v3)", field: "api")
        }
        if api == .v3, !endpoint.hasSuffix("/v3"), Self.isKonnect(endpoint) {
            throw UsageBillingError(
                .invalidInput, "a Konnect endpoint ends in /v3 (\(endpoint))",
                fix: "use e.g. https://eu.api.konghq.com/v3, or set region: eu instead", field: "endpoint")
        }
        if apiKey?.exposedValue.isEmpty == true {
            throw UsageBillingError(
                .configuration, "OpenMeter api_key is empty",
                fix: "set api_key: ${OPENMETER_TOKEN} or omit it for self-hosted", field: "api_key")
        }
        if source.isEmpty {
            throw UsageBillingError(
                .invalidInput, "OpenMeter source is empty", fix: "use a stable name such as your service's",
                field: "source")
        }
        for (eventType, slug) in meterSlugs where eventType.isEmpty || slug.isEmpty {
            throw UsageBillingError(
                .invalidInput, "OpenMeter meter_slugs maps '\(eventType)' to '\(slug)'; both must be non-empty",
                fix: "map an event type to its meter's slug, e.g. meter_slugs: {api_request: api_requests_total}",
                field: "meter_slugs")
        }
        if !(1...10_000).contains(maxBatchSize) {
            throw UsageBillingError(
                .invalidInput, "OpenMeter max_batch_size \(maxBatchSize) is out of range", fix: "use 1 to 10000",
                field: "max_batch_size")
        }
    }
}
