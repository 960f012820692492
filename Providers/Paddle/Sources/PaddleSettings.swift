import Foundation
import UsageBilling

/// Settings of the Paddle Billing sink (snake_case keys). Required: `api_key` and a price
/// (`price_id` or `prices`); customers map to subscriptions (`sub_…`) or, in `transaction`
/// mode, to Paddle customers (`ctm_…`) through `customers`.
public struct PaddleSettings: ProviderSettings {
    /// How aggregated usage is billed.
    public enum Mode: String, Sendable, Codable {
        /// `POST /subscriptions/{id}/charge`: a one-time charge on the subscription (default).
        case subscriptionCharge = "subscription_charge"
        /// `POST /transactions`: a stand-alone one-off transaction for a customer.
        case transaction
    }

    /// How a fractional quantity becomes Paddle's whole quantity.
    public enum Rounding: String, Sendable, Codable {
        /// Refuse fractional quantities with a clear message (default).
        case reject, up, down, nearest
    }

    /// A Paddle API key (Bearer).
    public var apiKey: Secret
    /// `live` or `sandbox`; default `sandbox` for `pdl_sdbx_` keys, else `live`.
    public var environment: String
    /// Base URL; default from `environment`.
    public var endpoint: String
    /// The one-off price (`billing_cycle: null`) every event bills.
    public var priceID: String?
    /// Per event name, the price (overrides `price_id`).
    public var prices: [String: String]
    /// `subscription_charge` (default) or `transaction`.
    public var mode: Mode
    /// `next_billing_period` (default: added to the renewal, billed in arrears) or `immediately`.
    public var effectiveFrom: String
    /// `prevent_change` or `apply_change` (only matters for `immediately`); Paddle's default when absent.
    public var onPaymentFailure: String?
    /// Usage units per billed quantity (e.g. 1000: bill per thousand). Default 1.
    public var unitsPerQuantity: Decimal
    /// What to do with a fractional quantity. Default `reject`.
    public var rounding: Rounding
    /// The price's largest quantity (Paddle's default range is 1–100; raise the price's
    /// `quantity.maximum`, up to 999,999,999, and this with it).
    public var maxQuantity: Int
    /// `transaction` mode: `manual` (invoice, default) or `automatic`.
    public var collectionMode: String
    /// `transaction` mode, manual collection: days until the invoice is due. Default 30.
    public var paymentTermsDays: Int
    /// `transaction` mode: the customer's address id, when the transaction needs one.
    public var addressID: String?
    /// Windowed aggregation; default calendar months (UTC), summed, 1 h grace. Use
    /// `window: billing_period` with `anchor` to follow a subscription's renewals.
    public var aggregate: AggregationSpec
    /// Requests per minute to pace at (Paddle: 240 per IP).
    public var requestsPerMinute: Double
    /// Your customer id → Paddle subscription (or customer, in transaction mode) id.
    public var mapping: EventMapping

    /// The keys these settings read.
    public static let keys: Set<String> = EventMapping.keys.union(CodingKeys.allCases.map(\.rawValue))

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case apiKey = "api_key", environment, endpoint, priceID = "price_id", prices, mode, effectiveFrom =
            "effective_from"
        case onPaymentFailure = "on_payment_failure", unitsPerQuantity = "units_per_quantity", rounding, maxQuantity =
            "max_quantity"
        case collectionMode = "collection_mode", paymentTermsDays = "payment_terms_days", addressID = "address_id",
            aggregate
        case requestsPerMinute = "requests_per_minute"
    }

    /// Settings with defaults for everything but the key.
    public init(
        apiKey: Secret, environment: String? = nil, endpoint: String? = nil, priceID: String? = nil,
        prices: [String: String] = [:],
        mode: Mode = .subscriptionCharge, effectiveFrom: String = "next_billing_period",
        onPaymentFailure: String? = nil,
        unitsPerQuantity: Decimal = 1, rounding: Rounding = .reject, maxQuantity: Int = 100,
        collectionMode: String = "manual",
        paymentTermsDays: Int = 30, addressID: String? = nil,
        aggregate: AggregationSpec = AggregationSpec(
            window: .monthly(anchor: Date(timeIntervalSince1970: 0)), grace: .seconds(3600)),
        requestsPerMinute: Double = 240, mapping: EventMapping = EventMapping(quantityProperty: "quantity")
    ) {
        self.apiKey = apiKey
        (self.environment, self.endpoint) = PaddleSettings.connection(
            apiKey: apiKey, environment: environment, endpoint: endpoint)
        self.priceID = priceID
        self.prices = prices
        self.mode = mode
        self.effectiveFrom = effectiveFrom
        self.onPaymentFailure = onPaymentFailure
        self.unitsPerQuantity = unitsPerQuantity
        self.rounding = rounding
        self.maxQuantity = maxQuantity
        self.collectionMode = collectionMode
        self.paymentTermsDays = paymentTermsDays
        self.addressID = addressID
        self.aggregate = aggregate
        self.requestsPerMinute = requestsPerMinute
        self.mapping = mapping
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let key = try c.decode(Secret.self, forKey: .apiKey)
        let d = PaddleSettings(apiKey: key)
        self.init(
            apiKey: key, environment: try c.decodeIfPresent(String.self, forKey: .environment),
            endpoint: try c.decodeIfPresent(String.self, forKey: .endpoint),
            priceID: try c.decodeIfPresent(String.self, forKey: .priceID),
            prices: try c.decodeIfPresent([String: String].self, forKey: .prices) ?? [:],
            mode: try c.decodeIfPresent(Mode.self, forKey: .mode) ?? .subscriptionCharge,
            effectiveFrom: try c.decodeIfPresent(String.self, forKey: .effectiveFrom) ?? d.effectiveFrom,
            onPaymentFailure: try c.decodeIfPresent(String.self, forKey: .onPaymentFailure),
            unitsPerQuantity: try c.decodeIfPresent(Decimal.self, forKey: .unitsPerQuantity) ?? 1,
            rounding: try c.decodeIfPresent(Rounding.self, forKey: .rounding) ?? .reject,
            maxQuantity: try c.decodeIfPresent(Int.self, forKey: .maxQuantity) ?? d.maxQuantity,
            collectionMode: try c.decodeIfPresent(String.self, forKey: .collectionMode) ?? d.collectionMode,
            paymentTermsDays: try c.decodeIfPresent(Int.self, forKey: .paymentTermsDays) ?? d.paymentTermsDays,
            addressID: try c.decodeIfPresent(String.self, forKey: .addressID),
            aggregate: try c.decodeIfPresent(AggregationSpec.self, forKey: .aggregate) ?? d.aggregate,
            requestsPerMinute: try c.decodeIfPresent(Double.self, forKey: .requestsPerMinute) ?? d.requestsPerMinute,
            mapping: try EventMapping(from: decoder, defaultQuantityProperty: "quantity"))
    }

    public static let providerName = "Paddle"
    public static let example = "{api_key: ${PADDLE_API_KEY}, price_id: pri_…, customers: {acme: sub_…}}"

    /// The price for an event name.
    public func price(for eventName: String) -> String? { prices[eventName] ?? priceID }

    /// Checks values that decode but cannot work.
    public func validate() throws {
        try Self.checkConnection(
            apiKey: apiKey, environment: environment, endpoint: endpoint, requestsPerMinute: requestsPerMinute)
        if priceID == nil && prices.isEmpty {
            throw UsageBillingError(
                .invalidInput, "Paddle needs a one-off price",
                fix: "add price_id: pri_… (a price with billing_cycle null), or prices: {event_name: pri_…}",
                field: "price_id")
        }
        if !["next_billing_period", "immediately"].contains(effectiveFrom) {
            throw UsageBillingError(
                .invalidInput, "Paddle effective_from '\(effectiveFrom)' is not next_billing_period or immediately",
                fix: "use next_billing_period (billed with the renewal) or immediately", field: "effective_from")
        }
        if let value = onPaymentFailure, !["prevent_change", "apply_change"].contains(value) {
            throw UsageBillingError(
                .invalidInput, "Paddle on_payment_failure '\(value)' is not prevent_change or apply_change",
                field: "on_payment_failure")
        }
        if unitsPerQuantity <= 0 {
            throw UsageBillingError(
                .invalidInput, "Paddle units_per_quantity must be positive",
                fix: "use e.g. 1000 to bill per thousand units", field: "units_per_quantity")
        }
        if !(1...999_999_999).contains(maxQuantity) {
            throw UsageBillingError(
                .invalidInput, "Paddle max_quantity \(maxQuantity) is out of range",
                fix: "use the price's quantity.maximum: 1 to 999999999", field: "max_quantity")
        }
        if !["manual", "automatic"].contains(collectionMode) {
            throw UsageBillingError(
                .invalidInput, "Paddle collection_mode '\(collectionMode)' is not manual or automatic",
                field: "collection_mode")
        }
    }
}

extension PaddleSettings {
    /// The environment a key is for (`pdl_sdbx_` keys: sandbox) and its base URL, unless given.
    static func connection(apiKey: Secret, environment: String?, endpoint: String?) -> (
        environment: String, endpoint: String
    ) {
        let environment = environment ?? (apiKey.exposedValue.hasPrefix("pdl_sdbx_") ? "sandbox" : "live")
        return (
            environment,
            endpoint ?? (environment == "sandbox" ? "https://sandbox-api.paddle.com" : "https://api.paddle.com")
        )
    }

    /// The checks every Paddle kind's key, environment, endpoint and pacing take.
    static func checkConnection(apiKey: Secret, environment: String, endpoint: String, requestsPerMinute: Double) throws
    {
        if apiKey.exposedValue.isEmpty {
            throw UsageBillingError(
                .configuration, "Paddle api_key is empty", fix: "set it: api_key: ${PADDLE_API_KEY}", field: "api_key")
        }
        if !["live", "sandbox"].contains(environment) {
            throw UsageBillingError(
                .invalidInput, "Paddle environment '\(environment)' is not live or sandbox", fix: "use live or sandbox",
                field: "environment")
        }
        try SettingsDecoding.checkURL(
            endpoint, field: "endpoint", provider: "Paddle", example: "https://sandbox-api.paddle.com")
        if requestsPerMinute <= 0 {
            throw UsageBillingError(
                .invalidInput, "Paddle requests_per_minute must be positive", fix: "use 240",
                field: "requests_per_minute")
        }
    }
}
