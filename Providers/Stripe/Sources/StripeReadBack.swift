import Foundation
import UsageBilling

/// Stripe's read-back for reconciliation: the meter's event summaries per customer, grouped in
/// `hour` or `day` windows (Stripe aligns both to UTC), every page. The meter is found by its
/// `event_name`, the active one first.
public struct StripeReadBack: UsageReadBack {
    let settings: StripeSettings
    let client: StripeClient
    let sink: StripeSink
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
        self.client = try StripeClient(settings: settings, client: client)
        self.sink = try StripeSink(settings: settings, client: client)
    }

    public func names(for event: UsageEvent) -> ProviderNames {
        ProviderNames(
            customer: settings.customers[event.customer] ?? event.customer,
            meter: sink.stripeEventName(for: event))
    }

    /// Under the sandbox's documented limit (`StripeSink.documentedRate.test`), which live keys also clear.
    public var requestsPerSecond: Double { 20 }

    public func usage(customer: String, meters: [String], from: Date, to: Date, granularity: ReadBackGranularity)
        async throws -> [ReportedUsage]
    {
        let client = self.client
        let known = try await directory.meters { try await client.listMeters() }
        var out: [ReportedUsage] = []
        for name in meters {
            // Stripe keeps one active meter per event_name; deactivated ones may share it.
            guard
                let meter = known.first(where: { $0.eventName == name && $0.status == "active" })
                    ?? known.first(where: { $0.eventName == name })
            else {
                throw UsageBillingError(
                    .configuration, "Stripe has no meter for event_name '\(name)'",
                    fix: "create it (usage-billing meters create) or fix event_name in the route", field: "event_name")
            }
            let window: StripeSummaryWindow = granularity == .hour ? .hour : .day
            for row in try await client.eventSummaries(
                meterID: meter.id, customer: customer, start: from, end: to, window: window)
            {
                out.append(
                    ReportedUsage(
                        customer: customer, meter: name,
                        start: Date(timeIntervalSince1970: TimeInterval(row.startTime)),
                        end: Date(timeIntervalSince1970: TimeInterval(row.endTime)),
                        value: Decimal(reported: row.aggregatedValue)))
            }
        }
        return out
    }
}
