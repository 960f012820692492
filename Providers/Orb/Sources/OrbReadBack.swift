import Foundation
import UsageBilling

/// Orb's read-back for reconciliation: subscription usage per billable metric, in the customer's
/// own days (Orb cuts days in the customer's `timezone`), per day only. Usage is read from the
/// subscription `subscriptions` names for the customer, or else from every subscription of the
/// customer (`GET /subscriptions`) that overlaps the range, each over its overlap, summed.
public struct OrbReadBack: UsageReadBack {
    let settings: OrbSettings
    let client: OrbClient

    /// A read-back over `settings`.
    public init(settings: OrbSettings, client: any HTTPClient) throws {
        self.settings = settings
        self.client = try OrbClient(settings: settings, client: client)
    }

    public func names(for event: UsageEvent) -> ProviderNames { settings.mapping.providerNames(for: event) }

    /// Orb's documented limit for most endpoints is far above this; read-back stays gentle.
    public var requestsPerSecond: Double { 10 }

    public func windowing(customer: String) async throws -> ReadBackWindowing {
        .aligned(try await client.customerTimeZone(customer: customer))
    }

    public func usage(customer: String, meters: [String], from: Date, to: Date, granularity: ReadBackGranularity)
        async throws -> [ReportedUsage]
    {
        guard granularity == .day else {
            throw UsageBillingError(
                .invalidInput, "Orb reports subscription usage per day, not per hour",
                fix: "reconcile Orb with --window day", field: "window")
        }
        var spans: [(id: String, from: Date, to: Date)] = []
        if let id = settings.subscriptions[customer] {
            spans = [(id, from, to)]
        } else {
            let listed = try await client.subscriptions(customer: customer)
            spans = listed.compactMap { s in
                let lo = max(from, s.startDate), hi = min(to, s.endDate ?? to)
                return lo < hi ? (s.id, lo, hi) : nil
            }
            guard !spans.isEmpty else {
                throw UsageBillingError(
                    .invalidInput,
                    "Orb has no subscription for customer \(customer) between \(RFC3339.format(from)) and \(RFC3339.format(to)) (\(listed.count) in all), so it bills none of its usage",
                    fix:
                        "subscribe the customer to a plan in Orb, or name its subscription: subscriptions: {\(customer): sub_…}",
                    field: "subscriptions")
            }
        }
        var out: [ReportedUsage] = []
        for span in spans {
            out += try await client.subscriptionUsage(
                subscriptionID: span.id, start: span.from, end: span.to, daily: true
            )
            .filter { meters.isEmpty || meters.contains($0.metricName) }
            .flatMap { metric in
                metric.windows.map {
                    ReportedUsage(
                        customer: customer, meter: metric.metricName, start: $0.start, end: $0.end,
                        value: Decimal(reported: $0.quantity))
                }
            }
        }
        return out
    }
}
