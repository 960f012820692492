import Foundation
import UsageBilling

/// Metronome's read-back for reconciliation: `POST /v1/usage` per customer, in UTC hour or day
/// windows (Metronome aligns to UTC midnight), every page. Each event type is read from the
/// billable metric `billable_metrics` names for it (by name or id), or else from the one named
/// like the event type. A customer named by an ingest alias is looked up to its Metronome id first.
public struct MetronomeReadBack: UsageReadBack {
    let settings: MetronomeSettings
    let client: MetronomeClient

    /// A read-back over `settings`.
    public init(settings: MetronomeSettings, client: any HTTPClient) throws {
        self.settings = settings
        self.client = try MetronomeClient(settings: settings, client: client)
    }

    public func names(for event: UsageEvent) -> ProviderNames { settings.mapping.providerNames(for: event) }

    public var requestsPerSecond: Double { 10 }

    public func usage(customer: String, meters: [String], from: Date, to: Date, granularity: ReadBackGranularity)
        async throws -> [ReportedUsage]
    {
        // Metronome asks for whole UTC days (at least one), even for hour windows: widen, then keep [from, to).
        let day = 86_400.0
        let start = Date(timeIntervalSince1970: (from.timeIntervalSince1970 / day).rounded(.down) * day)
        let end = max(
            start.addingTimeInterval(day),
            Date(timeIntervalSince1970: (to.timeIntervalSince1970 / day).rounded(.up) * day))
        // The event type each billable metric counts: mapped ones by id or name, the rest by name.
        var eventType: [String: String] = [:]
        for (type, metric) in settings.billableMetrics { eventType[metric] = type }
        func meter(_ row: MetronomeUsageRow) -> String {
            eventType[row.billableMetricID] ?? eventType[row.billableMetricName] ?? row.billableMetricName
        }
        // Usage is keyed by the Metronome customer id; events may name the customer by an ingest alias.
        let id = MetronomeClient.isCustomerID(customer) ? customer : try await client.customerID(forAlias: customer)
        return try await client.usage(start: start, end: end, window: granularity.rawValue, customerIDs: [id])
            .filter { $0.customerID == id && (meters.isEmpty || meters.contains(meter($0))) }
            .compactMap { row in
                guard let start = RFC3339.parse(row.startTimestamp), let end = RFC3339.parse(row.endTimestamp),
                    start >= from, start < to
                else { return nil }
                return ReportedUsage(
                    customer: customer, meter: meter(row), start: start, end: end,
                    value: Decimal(reported: row.value ?? 0))
            }
    }
}
