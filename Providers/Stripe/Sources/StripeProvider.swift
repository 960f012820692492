import Foundation
import UsageBilling

extension StripeMeterEventSink {
    /// The routing-config kind `stripe`.
    public static let kind = ProviderKind(name: "stripe", settingsKeys: StripeSettings.keys, secretKeys: ["secret_key"], requestTimeout: .seconds(10), makeSink: { settings, client, clock, name in
        try StripeMeterEventSink(settings: StripeSettings.decode(settings), client: client, clock: clock, name: name)
    }, makeReadBack: { settings, client in
        try StripeReadBack(settings: StripeSettings.decode(settings), client: client)
    }, tools: tools)
}

/// Stripe's read-back for reconciliation: the meter's event summaries per customer, grouped in
/// `hour` or `day` windows (Stripe aligns both to UTC), every page. The meter is found by its
/// `event_name`, the active one first.
public struct StripeReadBack: UsageReadBack {
    let settings: StripeSettings
    let client: StripeBillingClient
    let sink: StripeMeterEventSink
    /// The account's meters, listed once per read-back (a reconcile reads many customers).
    private let directory = MeterDirectory()

    private actor MeterDirectory {
        private var meters: [StripeMeter]?
        func meters(_ load: @Sendable () async throws -> [StripeMeter]) async throws -> [StripeMeter] {
            if let meters { return meters }
            let loaded = try await load()
            meters = loaded
            return loaded
        }
    }

    /// A read-back over `settings`.
    public init(settings: StripeSettings, client: any HTTPClient) throws {
        self.settings = settings
        self.client = try StripeBillingClient(settings: settings, client: client)
        self.sink = try StripeMeterEventSink(settings: settings, client: client)
    }

    public func names(for event: UsageEvent) -> ProviderNames {
        ProviderNames(customer: settings.customers[event.customer] ?? event.customer,
                      meter: sink.stripeEventName(for: event))
    }

    /// Stripe's sandbox allows 25 requests/s; read-back stays under it.
    public var requestsPerSecond: Double { 20 }

    public func usage(customer: String, meters: [String], from: Date, to: Date, granularity: ReadBackGranularity) async throws -> [ReportedUsage] {
        let client = self.client
        let known = try await directory.meters { try await client.listMeters() }
        var out: [ReportedUsage] = []
        for name in meters {
            // Stripe keeps one active meter per event_name; deactivated ones may share it.
            guard let meter = known.first(where: { $0.eventName == name && $0.status == "active" }) ?? known.first(where: { $0.eventName == name }) else {
                throw UsageBillingError(.configuration, "Stripe has no meter for event_name '\(name)'",
                                        fix: "create it (usage-billing meters create) or fix event_name in the route", field: "event_name")
            }
            let window: StripeSummaryWindow = granularity == .hour ? .hour : .day
            for row in try await client.eventSummaries(meterID: meter.id, customer: customer, start: from, end: to, window: window) {
                out.append(ReportedUsage(customer: customer, meter: name, start: Date(timeIntervalSince1970: TimeInterval(row.startTime)),
                                         end: Date(timeIntervalSince1970: TimeInterval(row.endTime)), value: Decimal(reported: row.aggregatedValue)))
            }
        }
        return out
    }
}

extension StripeMeterEventSink {
    /// Stripe's tools for the CLI: event summaries, meters, and its asynchronous meter error
    /// reports as rejections; a test key as the placeholder (keys are checked for `sk_`/`rk_`).
    static let tools = ProviderTools(
        placeholderSecret: "sk_test_REDACTED_demo",
        summary: { settings, client in StripeSummary(client: try StripeBillingClient(settings: StripeSettings.decode(settings), client: client)) },
        meters: { settings, client in
            let s = try StripeSettings.decode(settings)
            return StripeMeters(settings: s, client: try StripeBillingClient(settings: s, client: client))
        },
        rejectionReport: { body in
            let report = try StripeMeterErrorReport.parse(body)
            return RejectionReport(type: report.type, rejections: report.rejections, unattributed: report.unattributed)
        })
}

/// `usage-billing summary` for Stripe: a meter's event summaries for one customer.
struct StripeSummary: UsageSummarizer {
    let client: StripeBillingClient

    func summary(_ q: SummaryQuery) async throws -> [SummaryRow] {
        let meter = try q.require(q.meter, "meter", provider: "Stripe", what: "a meter id (mtr_…; `usage-billing meters list` shows them)")
        let customer = try q.require(q.customer, "customer", provider: "Stripe", what: "a Stripe customer id (cus_…)")
        let grouping = q.window.flatMap { StripeSummaryWindow(rawValue: $0.rawValue) }
        return try await client.eventSummaries(meterID: meter, customer: customer, start: q.from, end: q.to, window: grouping)
            .sorted { $0.startTime < $1.startTime }
            .map { SummaryRow(start: RFC3339.format(Date(timeIntervalSince1970: Double($0.startTime))), end: RFC3339.format(Date(timeIntervalSince1970: Double($0.endTime))),
                              customer: customer, metric: $0.meter, value: String(format: "%g", $0.aggregatedValue)) }
    }
}

/// `usage-billing meters` for Stripe: its billing meters, created with the config's payload keys.
struct StripeMeters: MeterManager {
    let settings: StripeSettings
    let client: StripeBillingClient

    func list() async throws -> [MeterInfo] {
        try await client.listMeters().map { MeterInfo(id: $0.id, eventName: $0.eventName, displayName: $0.displayName, status: $0.status, formula: $0.defaultAggregation.formula) }
    }

    func create(eventName: String, displayName: String, formula: String) async throws -> MeterInfo {
        let m = try await client.createMeter(displayName: displayName, eventName: eventName, formula: formula, customerKey: settings.customerKey, valueKey: settings.valueKey)
        return MeterInfo(id: m.id, eventName: m.eventName, displayName: m.displayName, status: m.status, formula: m.defaultAggregation.formula)
    }
}
