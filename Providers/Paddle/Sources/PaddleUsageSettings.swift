import Foundation
import UsageBilling

/// Settings of the Paddle usage-events sink (kind `paddle_usage`, snake_case keys). Required:
/// `api_key`; customers map to Paddle customers (`ctm_…`) through `customers`, event names to
/// meter actions through `event_name` / `event_names`.
public struct PaddleUsageSettings: ProviderSettings {
    /// A Paddle API key (Bearer) with the `usage_event.write` permission (and
    /// `usage_balance.read` and `meter.read` for reconciliation).
    public var apiKey: Secret
    /// `live` or `sandbox`; default `sandbox` for `pdl_sdbx_` keys, else `live`.
    public var environment: String
    /// Base URL; default from `environment`.
    public var endpoint: String
    /// Events per request, 1–100 (Paddle's limit). Accounts still on the early beta's one event
    /// per request set 1.
    public var maxBatchSize: Int
    /// Requests a minute to pace at (Paddle allows 240 per IP).
    public var requestsPerMinute: Double
    /// Event name → meter `action`, customer id → Paddle customer (`ctm_…`).
    public var mapping: EventMapping
    /// Pre-aggregation: events folded per customer and action into one usage event per window
    /// (its quantity the window's value, its `event_key` the window's id). Unset: every event is sent.
    public var aggregate: AggregationSpec?

    /// The keys these settings read.
    public static let keys: Set<String> = EventMapping.keys.union(CodingKeys.allCases.map(\.rawValue))

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case apiKey = "api_key", environment, endpoint, maxBatchSize = "max_batch_size", requestsPerMinute =
            "requests_per_minute", aggregate
    }

    /// Settings with defaults for everything but the key.
    public init(
        apiKey: Secret, environment: String? = nil, endpoint: String? = nil, maxBatchSize: Int = 100,
        requestsPerMinute: Double = 240,
        mapping: EventMapping = EventMapping(quantityProperty: "quantity")
    ) {
        self.apiKey = apiKey
        (self.environment, self.endpoint) = PaddleSettings.connection(
            apiKey: apiKey, environment: environment, endpoint: endpoint)
        self.maxBatchSize = maxBatchSize
        self.requestsPerMinute = requestsPerMinute
        self.mapping = mapping
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            apiKey: try c.decode(Secret.self, forKey: .apiKey),
            environment: try c.decodeIfPresent(String.self, forKey: .environment),
            endpoint: try c.decodeIfPresent(String.self, forKey: .endpoint),
            maxBatchSize: try c.decodeIfPresent(Int.self, forKey: .maxBatchSize) ?? 100,
            requestsPerMinute: try c.decodeIfPresent(Double.self, forKey: .requestsPerMinute) ?? 240,
            mapping: try EventMapping(from: decoder, defaultQuantityProperty: "quantity"))
        aggregate = try c.decodeIfPresent(AggregationSpec.self, forKey: .aggregate)
    }

    public static let providerName = "Paddle usage events"
    public static let example = "{api_key: ${PADDLE_API_KEY}, event_names: {api_request: api_call}}"

    /// The Paddle docs the kind follows (early access, beta).
    public static let docsChecked = "2026-12-07"

    /// Checks values that decode but cannot work.
    public func validate() throws {
        try PaddleSettings.checkConnection(
            apiKey: apiKey, environment: environment, endpoint: endpoint, requestsPerMinute: requestsPerMinute)
        if !(1...100).contains(maxBatchSize) {
            throw UsageBillingError(
                .invalidInput, "Paddle usage events max_batch_size \(maxBatchSize) is out of range",
                fix: "use 1 to 100 (Paddle takes at most 100 events per request; 1 for accounts on the early beta)",
                field: "max_batch_size")
        }
    }
}
