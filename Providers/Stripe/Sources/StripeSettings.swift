import Foundation
import UsageBilling

/// Which Stripe metering API the sink uses.
public enum StripeMeteringAPI: String, Sendable, Codable, CaseIterable {
    /// `POST /v1/billing/meter_events`: form-encoded, one event per request, validated mostly
    /// asynchronously. Up to 1,000 calls/s in live mode.
    case v1
    /// `POST /v2/billing/meter_events`: JSON, one event per request, validated synchronously
    /// (duplicates, unknown meters and bad values answer 400 at once).
    case v2
    /// `POST /v2/billing/meter_event_stream` on meter-events.stripe.com with a 15-minute session
    /// token: up to 100 events per request, validated asynchronously. The high-throughput path.
    case v2Stream = "v2_stream"
}

/// Settings of the Stripe sink. Decodes from the routing config / fixture `settings` object
/// (snake_case keys); only `secret_key` is required.
public struct StripeSettings: ProviderSettings {
    /// The API version this adapter is built and tested against (sent as `Stripe-Version`).
    public static let pinnedAPIVersion = "2026-11-18.endive"

    /// A secret key (`sk_live_…`, `sk_test_…`) or restricted key (`rk_…`) with Billing Meters write.
    public var secretKey: Secret
    /// Which metering API to use. Default `v1`.
    public var api: StripeMeteringAPI
    /// Base URL of the Stripe API (override for the emulator or a recording proxy).
    public var endpoint: String
    /// Base URL of the v2 meter-event stream host.
    public var meterEventsEndpoint: String
    /// `Stripe-Version`. Defaults to ``pinnedAPIVersion``.
    public var apiVersion: String
    /// Connect: act on behalf of this connected account (`Stripe-Account`).
    public var stripeAccount: String?
    /// The Stripe meter `event_name`; default: the event's own name.
    public var eventName: String?
    /// Per event name, the Stripe meter `event_name` (overrides ``eventName``).
    public var eventNames: [String: String]
    /// The meter's `customer_mapping.event_payload_key`. Default `stripe_customer_id`.
    public var customerKey: String
    /// The meter's `value_settings.event_payload_key`. Default `value`.
    public var valueKey: String
    /// Your customer id → Stripe customer id (`cus_…`). Ids not listed are sent as they are.
    public var customers: [String: String]
    /// Stripe documents whole-number values; set true to send fractional quantities anyway.
    public var allowFractionalValues: Bool
    /// Events per stream request (1–100). Default 100.
    public var streamBatchSize: Int
    /// Requests per second to pace at, when Stripe has raised your account's limit (or for the
    /// emulator); nil: Stripe's documented limit for the key's mode and API.
    public var requestsPerSecond: Double?
    /// Pre-aggregation: events folded per customer and meter into one event per window (its
    /// quantity the window's value, its id the window's derived id), so a customer sending
    /// thousands of events a second costs one call per window (Stripe v1 and v2 take one call at a time per customer and meter). Unset: every event is sent.
    public var aggregate: AggregationSpec?

    /// Settings with defaults for everything but the key.
    public init(
        secretKey: Secret, api: StripeMeteringAPI = .v1, endpoint: String = "https://api.stripe.com",
        meterEventsEndpoint: String = "https://meter-events.stripe.com",
        apiVersion: String = StripeSettings.pinnedAPIVersion,
        stripeAccount: String? = nil, eventName: String? = nil, eventNames: [String: String] = [:],
        customerKey: String = "stripe_customer_id", valueKey: String = "value", customers: [String: String] = [:],
        allowFractionalValues: Bool = false, streamBatchSize: Int = 100, requestsPerSecond: Double? = nil
    ) {
        self.secretKey = secretKey
        self.api = api
        self.endpoint = endpoint
        self.meterEventsEndpoint = meterEventsEndpoint
        self.apiVersion = apiVersion
        self.stripeAccount = stripeAccount
        self.eventName = eventName
        self.eventNames = eventNames
        self.customerKey = customerKey
        self.valueKey = valueKey
        self.customers = customers
        self.allowFractionalValues = allowFractionalValues
        self.streamBatchSize = streamBatchSize
        self.requestsPerSecond = requestsPerSecond
    }

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case secretKey = "secret_key", api, endpoint, meterEventsEndpoint = "meter_events_endpoint"
        case apiVersion = "api_version", stripeAccount = "stripe_account", eventName = "event_name"
        case eventNames = "event_names", customerKey = "customer_key", valueKey = "value_key", customers
        case allowFractionalValues = "allow_fractional_values", streamBatchSize = "stream_batch_size"
        case requestsPerSecond = "requests_per_second", aggregate
    }

    /// Decodes the routing config's snake_case keys; only `secret_key` is required.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = StripeSettings(secretKey: "")
        secretKey = try c.decode(Secret.self, forKey: .secretKey)
        api = try c.decodeIfPresent(StripeMeteringAPI.self, forKey: .api) ?? d.api
        endpoint = try c.decodeIfPresent(String.self, forKey: .endpoint) ?? d.endpoint
        meterEventsEndpoint = try c.decodeIfPresent(String.self, forKey: .meterEventsEndpoint) ?? d.meterEventsEndpoint
        apiVersion = try c.decodeIfPresent(String.self, forKey: .apiVersion) ?? d.apiVersion
        stripeAccount = try c.decodeIfPresent(String.self, forKey: .stripeAccount)
        eventName = try c.decodeIfPresent(String.self, forKey: .eventName)
        eventNames = try c.decodeIfPresent([String: String].self, forKey: .eventNames) ?? [:]
        customerKey = try c.decodeIfPresent(String.self, forKey: .customerKey) ?? d.customerKey
        valueKey = try c.decodeIfPresent(String.self, forKey: .valueKey) ?? d.valueKey
        customers = try c.decodeIfPresent([String: String].self, forKey: .customers) ?? [:]
        allowFractionalValues = try c.decodeIfPresent(Bool.self, forKey: .allowFractionalValues) ?? false
        streamBatchSize = try c.decodeIfPresent(Int.self, forKey: .streamBatchSize) ?? d.streamBatchSize
        requestsPerSecond = try c.decodeIfPresent(Double.self, forKey: .requestsPerSecond)
        aggregate = try c.decodeIfPresent(AggregationSpec.self, forKey: .aggregate)
    }

    /// The keys these settings read.
    public static let keys = Set(CodingKeys.allCases.map(\.rawValue))

    public static let providerName = "Stripe"
    public static let example = "{secret_key: ${STRIPE_SECRET_KEY}}"

    /// Checks values that decode but cannot work.
    public func validate() throws {
        if secretKey.exposedValue.isEmpty {
            throw UsageBillingError(
                .configuration, "Stripe secret_key is empty", fix: "set it to an sk_… or rk_… key", field: "secret_key")
        }
        for (field, url) in [("endpoint", endpoint), ("meter_events_endpoint", meterEventsEndpoint)] {
            try SettingsDecoding.checkURL(url, field: field, provider: "Stripe", example: "https://api.stripe.com")
        }
        if apiVersion.isEmpty {
            throw UsageBillingError(
                .invalidInput, "Stripe api_version is empty", fix: "omit it to use \(Self.pinnedAPIVersion)",
                field: "api_version")
        }
        if let rate = requestsPerSecond, !(rate > 0) {
            throw UsageBillingError(
                .invalidInput, "Stripe requests_per_second \(rate) must be above 0",
                fix: "omit it to pace at Stripe's documented limit", field: "requests_per_second")
        }
        if !(1...100).contains(streamBatchSize) {
            throw UsageBillingError(
                .invalidInput, "Stripe stream_batch_size \(streamBatchSize) is out of range",
                fix: "use 1 to 100 (Stripe's limit per stream request)", field: "stream_batch_size")
        }
    }

    /// Whether the key is a test-mode key (test mode has much lower rate limits).
    public var isTestMode: Bool { secretKey.exposedValue.contains("_test_") }
}
