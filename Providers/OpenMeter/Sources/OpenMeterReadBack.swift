import Foundation
import UsageBilling

/// OpenMeter's read-back for reconciliation: the meter query per meter slug and subject, in UTC
/// `HOUR` or `DAY` windows. Each event type is read from the meter `meter_slugs` names for it, or
/// else from the meter whose slug is the event type.
public struct OpenMeterReadBack: UsageReadBack {
    let settings: OpenMeterSettings
    let client: OpenMeterClient

    /// A read-back over `settings`.
    public init(settings: OpenMeterSettings, client: any HTTPClient) throws {
        self.settings = settings
        self.client = try OpenMeterClient(settings: settings, client: client)
    }

    public func names(for event: UsageEvent) -> ProviderNames { settings.mapping.providerNames(for: event) }

    public var requestsPerSecond: Double { 10 }

    public func usage(customer: String, meters: [String], from: Date, to: Date, granularity: ReadBackGranularity)
        async throws -> [ReportedUsage]
    {
        var out: [ReportedUsage] = []
        for meter in meters {
            let slug = settings.meterSlugs[meter] ?? meter
            for row in try await client.query(
                meter: slug, from: from, to: to, windowSize: granularity == .hour ? .hour : .day, subjects: [customer])
            where row.subject == nil || row.subject == customer {
                guard let start = RFC3339.parse(row.windowStart), let end = RFC3339.parse(row.windowEnd) else {
                    continue
                }
                out.append(
                    ReportedUsage(
                        customer: customer, meter: meter, start: start, end: end, value: Decimal(reported: row.value)))
            }
        }
        return out
    }
}
