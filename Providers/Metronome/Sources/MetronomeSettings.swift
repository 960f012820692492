import Foundation
import UsageBilling

/// Settings of the Metronome sink (snake_case keys); only the credential is required: a
/// Metronome bearer token under `api_key`, or a Stripe secret key under `secret_key`.
public struct MetronomeSettings: ProviderSettings {
    /// The bearer token sent: a Metronome API token, or the Stripe secret key (`sk_…`) that
    /// Stripe documents as authenticating the Metronome API.
    public var apiKey: Secret
    /// Which key the credential came from (`api_key` or `secret_key`), for errors that name it.
    public var credentialField: String = "api_key"
    /// Base URL, `https://api.metronome.com` by default.
    public var endpoint: String
    /// Events per ingest request, 1–100 (Metronome's limit). Default 100.
    public var maxBatchSize: Int
    /// Send property values as strings (Metronome's advice: it keeps arbitrary decimal
    /// precision). Default `true`.
    public var propertiesAsStrings: Bool
    /// Events per second to pace at (Metronome's default ingest limit starts at 5,000 events/s).
    public var eventsPerSecond: Double
    /// Event type, quantity property (default `quantity`), extra properties, customer ids
    /// (Metronome customer UUIDs or ingest aliases).
    public var mapping: EventMapping
    /// Event type → the billable metric (its name or id) that counts it, for reconciliation.
    /// Unlisted event types are read from the billable metric named like the event type.
    public var billableMetrics: [String: String] = [:]
    /// Pre-aggregation: events folded per customer and meter into one event per window (its
    /// quantity the window's value, its id the window's derived id), so a customer sending
    /// thousands of events a second costs one call per window. Unset: every event is sent.
    public var aggregate: AggregationSpec?

    /// The keys these settings read.
    public static let keys: Set<String> = EventMapping.keys.union(CodingKeys.allCases.map(\.rawValue))

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case apiKey = "api_key", secretKey = "secret_key", endpoint, maxBatchSize = "max_batch_size",
            propertiesAsStrings = "properties_as_strings"
        case eventsPerSecond = "events_per_second", billableMetrics = "billable_metrics", aggregate
    }

    /// Settings with defaults for everything but the key.
    public init(
        apiKey: Secret, endpoint: String = "https://api.metronome.com", maxBatchSize: Int = 100,
        propertiesAsStrings: Bool = true, eventsPerSecond: Double = 5_000,
        mapping: EventMapping = EventMapping(quantityProperty: "quantity")
    ) {
        self.apiKey = apiKey
        self.endpoint = endpoint
        self.maxBatchSize = maxBatchSize
        self.propertiesAsStrings = propertiesAsStrings
        self.eventsPerSecond = eventsPerSecond
        self.mapping = mapping
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = MetronomeSettings(apiKey: "")
        switch (
            try c.decodeIfPresent(Secret.self, forKey: .apiKey), try c.decodeIfPresent(Secret.self, forKey: .secretKey)
        ) {
        case (let token?, nil): apiKey = token
        case (nil, let stripeKey?): apiKey = stripeKey; credentialField = "secret_key"
        case (_?, _?):
            throw UsageBillingError(
                .configuration, "Metronome takes one credential; both api_key and secret_key are set",
                fix: "keep api_key (a Metronome token) or secret_key (a Stripe sk_… key), not both", field: "secret_key"
            )
        case (nil, nil):
            throw UsageBillingError(
                .configuration, "Metronome needs a credential",
                fix: "set api_key: ${METRONOME_BEARER_TOKEN}, or secret_key: ${STRIPE_SECRET_KEY} (a Stripe sk_… key)",
                field: "api_key")
        }
        endpoint = try c.decodeIfPresent(String.self, forKey: .endpoint) ?? d.endpoint
        maxBatchSize = try c.decodeIfPresent(Int.self, forKey: .maxBatchSize) ?? d.maxBatchSize
        propertiesAsStrings = try c.decodeIfPresent(Bool.self, forKey: .propertiesAsStrings) ?? true
        eventsPerSecond = try c.decodeIfPresent(Double.self, forKey: .eventsPerSecond) ?? d.eventsPerSecond
        mapping = try EventMapping(from: decoder, defaultQuantityProperty: "quantity")
        billableMetrics = try c.decodeIfPresent([String: String].self, forKey: .billableMetrics) ?? [:]
        aggregate = try c.decodeIfPresent(AggregationSpec.self, forKey: .aggregate)
    }

    public static let providerName = "Metronome"
    public static let example = "{api_key: ${METRONOME_BEARER_TOKEN}}"

    /// Checks values that decode but cannot work.
    public func validate() throws {
        if apiKey.exposedValue.isEmpty {
            throw UsageBillingError(
                .configuration, "Metronome \(credentialField) is empty",
                fix: credentialField == "secret_key"
                    ? "set it: secret_key: ${STRIPE_SECRET_KEY}" : "set it: api_key: ${METRONOME_BEARER_TOKEN}",
                field: credentialField)
        }
        if credentialField == "secret_key" {
            let key = apiKey.exposedValue
            if key.hasPrefix("rk_") {
                throw UsageBillingError(
                    .configuration, "Metronome does not take Stripe restricted keys (rk_…)",
                    fix:
                        "use the account's secret key (sk_test_… for Metronome's sandbox, sk_live_… for production), or a Metronome token under api_key",
                    field: "secret_key")
            }
            if !key.hasPrefix("sk_") {
                throw UsageBillingError(
                    .configuration, "Metronome secret_key must be a Stripe secret key (sk_…)",
                    fix: "put a Stripe sk_… key here, or a Metronome token under api_key instead", field: "secret_key")
            }
        }
        try SettingsDecoding.checkURL(
            endpoint, field: "endpoint", provider: "Metronome", example: "https://api.metronome.com")
        if !(1...100).contains(maxBatchSize) {
            throw UsageBillingError(
                .invalidInput, "Metronome max_batch_size \(maxBatchSize) is out of range",
                fix: "use 1 to 100 (Metronome takes at most 100 events per request)", field: "max_batch_size")
        }
        for (eventType, metric) in billableMetrics where eventType.isEmpty || metric.isEmpty {
            throw UsageBillingError(
                .invalidInput, "Metronome billable_metrics maps '\(eventType)' to '\(metric)'; both must be non-empty",
                fix:
                    "map an event type to its billable metric's name or id, e.g. billable_metrics: {api_request: API Requests}",
                field: "billable_metrics")
        }
        if Set(billableMetrics.values).count < billableMetrics.count {
            throw UsageBillingError(
                .invalidInput, "Metronome billable_metrics names one billable metric for two event types",
                fix: "give each event type its own billable metric", field: "billable_metrics")
        }
        if eventsPerSecond <= 0 {
            throw UsageBillingError(
                .invalidInput, "Metronome events_per_second must be positive", fix: "use 5000",
                field: "events_per_second")
        }
    }
}
