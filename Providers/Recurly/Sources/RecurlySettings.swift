import Foundation
import UsageBilling

/// Settings of the Recurly sink (snake_case keys). Required: `api_key` and an add-on
/// (`add_on_id` or `add_ons`); customers map to subscriptions through `customers`.
public struct RecurlySettings: ProviderSettings {
    /// A Recurly private API key (HTTP basic user name, empty password).
    public var apiKey: Secret
    /// `us` (v3.recurly.com, default) or `eu` (v3.eu.recurly.com).
    public var region: String
    /// Base URL; default from `region`.
    public var endpoint: String
    /// The usage add-on every event bills: a Recurly id or `code-<add_on_code>`.
    public var addOnID: String?
    /// Per event name, the add-on (overrides `add_on_id`).
    public var addOns: [String: String]
    /// Whether the site has Recurly's Decimal Quantity feature (amounts keep 9 decimals);
    /// without it Recurly drops decimals, so fractional amounts are rejected locally.
    public var decimalQuantity: Bool
    /// Windowed aggregation; default one day, summed, 1 h grace.
    public var aggregate: AggregationSpec
    /// Requests per minute to pace at (Recurly sandbox: 400/min over a sliding 5 minutes).
    public var requestsPerMinute: Double
    /// Your customer id → Recurly subscription (`uuid-<uuid>` or a Recurly id).
    public var mapping: EventMapping

    /// The keys these settings read.
    public static let keys: Set<String> = EventMapping.keys.union(CodingKeys.allCases.map(\.rawValue))

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case apiKey = "api_key", region, endpoint, addOnID = "add_on_id", addOns = "add_ons", decimalQuantity =
            "decimal_quantity"
        case aggregate, requestsPerMinute = "requests_per_minute"
    }

    /// Settings with defaults for everything but the key.
    public init(
        apiKey: Secret, region: String = "us", endpoint: String? = nil, addOnID: String? = nil,
        addOns: [String: String] = [:],
        decimalQuantity: Bool = false,
        aggregate: AggregationSpec = AggregationSpec(window: .fixed(seconds: 86_400), grace: .seconds(3600)),
        requestsPerMinute: Double = 400, mapping: EventMapping = EventMapping(quantityProperty: "quantity")
    ) {
        self.apiKey = apiKey
        self.region = region
        self.endpoint = endpoint ?? (region == "eu" ? "https://v3.eu.recurly.com" : "https://v3.recurly.com")
        self.addOnID = addOnID
        self.addOns = addOns
        self.decimalQuantity = decimalQuantity
        self.aggregate = aggregate
        self.requestsPerMinute = requestsPerMinute
        self.mapping = mapping
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = RecurlySettings(apiKey: "")
        self.init(
            apiKey: try c.decode(Secret.self, forKey: .apiKey),
            region: try c.decodeIfPresent(String.self, forKey: .region) ?? "us",
            endpoint: try c.decodeIfPresent(String.self, forKey: .endpoint),
            addOnID: try c.decodeIfPresent(String.self, forKey: .addOnID),
            addOns: try c.decodeIfPresent([String: String].self, forKey: .addOns) ?? [:],
            decimalQuantity: try c.decodeIfPresent(Bool.self, forKey: .decimalQuantity) ?? false,
            aggregate: try c.decodeIfPresent(AggregationSpec.self, forKey: .aggregate) ?? d.aggregate,
            requestsPerMinute: try c.decodeIfPresent(Double.self, forKey: .requestsPerMinute) ?? d.requestsPerMinute,
            mapping: try EventMapping(from: decoder, defaultQuantityProperty: "quantity"))
    }

    public static let providerName = "Recurly"
    public static let example = "{api_key: ${RECURLY_API_KEY}, add_on_id: code-api-calls, customers: {acme: uuid-…}}"

    /// The add-on for an event name.
    public func addOn(for eventName: String) -> String? { addOns[eventName] ?? addOnID }

    /// Checks values that decode but cannot work.
    public func validate() throws {
        if apiKey.exposedValue.isEmpty {
            throw UsageBillingError(
                .configuration, "Recurly api_key is empty", fix: "set it: api_key: ${RECURLY_API_KEY}", field: "api_key"
            )
        }
        if !["us", "eu"].contains(region) {
            throw UsageBillingError(
                .invalidInput, "Recurly region '\(region)' is not us or eu", fix: "use us or eu", field: "region")
        }
        try SettingsDecoding.checkURL(
            endpoint, field: "endpoint", provider: "Recurly", example: "https://v3.recurly.com")
        if addOnID == nil && addOns.isEmpty {
            throw UsageBillingError(
                .invalidInput, "Recurly needs a usage add-on",
                fix: "add add_on_id: code-<add_on_code> (or add_ons: {event_name: …})",
                field: "add_on_id")
        }
        if requestsPerMinute <= 0 {
            throw UsageBillingError(
                .invalidInput, "Recurly requests_per_minute must be positive", fix: "use 400",
                field: "requests_per_minute")
        }
    }
}
