import Foundation
import UsageBilling

/// Chargebee's read-back for reconciliation (Usages mode): `GET /api/v2/usages` per
/// subscription, every `next_offset` page; each record counts in the window of its `usage_date`.
public struct ChargebeeReadBack: UsageReadBack {
    let settings: ChargebeeSettings
    let client: ChargebeeClient

    /// A read-back over `settings`.
    public init(settings: ChargebeeSettings, client: any HTTPClient) throws {
        self.settings = settings
        self.client = try ChargebeeClient(settings: settings, client: client)
    }

    public func names(for event: UsageEvent) -> ProviderNames {
        ProviderNames(
            customer: settings.mapping.providerCustomer(for: event), meter: settings.itemPrice(for: event.name) ?? "")
    }

    /// Chargebee's test sites allow about 150 calls a minute.
    public var requestsPerSecond: Double { 2 }

    public func usage(customer: String, meters: [String], from: Date, to: Date, granularity: ReadBackGranularity)
        async throws -> [ReportedUsage]
    {
        // usage_date[between] is inclusive at both ends: drop a record on `to` itself.
        try await client.usages(from: from, to: to, subscriptionID: customer)
            .filter {
                (meters.isEmpty || meters.contains($0.itemPriceID)) && Double($0.usageDate) < to.timeIntervalSince1970
            }
            .map { usage in
                let at = Date(timeIntervalSince1970: TimeInterval(usage.usageDate))
                return ReportedUsage(
                    customer: customer, meter: usage.itemPriceID, start: at, end: at, value: usage.decimalQuantity ?? 0)
            }
    }
}
