import Foundation
import UsageBilling

/// Recurly's read-back for reconciliation: the add-on's usage list per subscription
/// (`billing_status=all`, ascending `usage_timestamp`, every page); each record counts in the
/// window of its `usage_timestamp`.
public struct RecurlyReadBack: UsageReadBack {
    let settings: RecurlySettings
    let client: RecurlyClient

    /// A read-back over `settings`.
    public init(settings: RecurlySettings, client: any HTTPClient) {
        self.settings = settings
        self.client = RecurlyClient(settings: settings, client: client)
    }

    public func names(for event: UsageEvent) -> ProviderNames {
        ProviderNames(
            customer: settings.mapping.providerCustomer(for: event), meter: settings.addOn(for: event.name) ?? "")
    }

    /// Recurly allows 2,000 GET requests per 5 minutes in sandbox sites (about 6/s).
    public var requestsPerSecond: Double { 5 }

    public func usage(customer: String, meters: [String], from: Date, to: Date, granularity: ReadBackGranularity)
        async throws -> [ReportedUsage]
    {
        var out: [ReportedUsage] = []
        for addOn in meters {
            for row in try await client.usage(subscription: customer, addOn: addOn, begin: from, end: to) {
                guard let at = row.usageTimestamp.flatMap(RFC3339.parse), at >= from, at < to else { continue }
                out.append(
                    ReportedUsage(
                        customer: customer, meter: addOn, start: at, end: at, value: Decimal(reported: row.amount ?? 0))
                )
            }
        }
        return out
    }
}
