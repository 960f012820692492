import Foundation
import UsageBilling

extension StripeSink {
    /// The routing-config kind `stripe`.
    public static let kind = ProviderKind(
        name: "stripe", settings: StripeSettings.self, secretKeys: ["secret_key"], requestTimeout: .seconds(10),
        answerTime: .milliseconds(250),
        sink: { try StripeSink(settings: $0, client: $1, clock: $2, name: $3) },
        readBack: { try StripeReadBack(settings: $0, client: $1) }, tools: tools)
}

extension StripeSink {
    /// Stripe's tools for the CLI: event summaries, meters, and its asynchronous meter error
    /// reports as rejections; a test key as the placeholder (keys are checked for `sk_`/`rk_`).
    static let tools = ProviderTools(
        placeholderSecret: "sk_test_REDACTED_demo",
        summary: { settings, client in
            StripeSummary(client: try StripeClient(settings: StripeSettings.decode(settings), client: client))
        },
        meters: { settings, client in
            let s = try StripeSettings.decode(settings)
            return StripeMeters(settings: s, client: try StripeClient(settings: s, client: client))
        },
        rejectionReport: { body in
            let report = try StripeMeterErrorReport.parse(body)
            return RejectionReport(type: report.type, rejections: report.rejections, unattributed: report.unattributed)
        })
}

/// `usage-billing summary` for Stripe: a meter's event summaries for one customer.
struct StripeSummary: UsageSummarizer {
    let client: StripeClient

    func summary(_ q: SummaryQuery) async throws -> [SummaryRow] {
        let meter = try q.require(
            q.meter, "meter", provider: "Stripe", what: "a meter id (mtr_…; `usage-billing meters list` shows them)")
        let customer = try q.require(q.customer, "customer", provider: "Stripe", what: "a Stripe customer id (cus_…)")
        let grouping = q.window.flatMap { StripeSummaryWindow(rawValue: $0.rawValue) }
        return try await client.eventSummaries(
            meterID: meter, customer: customer, start: q.from, end: q.to, window: grouping
        )
        .sorted { $0.startTime < $1.startTime }
        .map {
            SummaryRow(
                start: RFC3339.format(Date(timeIntervalSince1970: Double($0.startTime))),
                end: RFC3339.format(Date(timeIntervalSince1970: Double($0.endTime))),
                customer: customer, metric: $0.meter, value: String(format: "%g", $0.aggregatedValue))
        }
    }
}

/// `usage-billing meters` for Stripe: its billing meters, created with the config's payload keys.
struct StripeMeters: MeterManager {
    let settings: StripeSettings
    let client: StripeClient

    func list() async throws -> [MeterInfo] {
        try await client.listMeters().map {
            MeterInfo(
                id: $0.id, eventName: $0.eventName, displayName: $0.displayName, status: $0.status,
                formula: $0.defaultAggregation.formula)
        }
    }

    func create(eventName: String, displayName: String, formula: String) async throws -> MeterInfo {
        let m = try await client.createMeter(
            displayName: displayName, eventName: eventName, formula: formula, customerKey: settings.customerKey,
            valueKey: settings.valueKey)
        return MeterInfo(
            id: m.id, eventName: m.eventName, displayName: m.displayName, status: m.status,
            formula: m.defaultAggregation.formula)
    }
}
