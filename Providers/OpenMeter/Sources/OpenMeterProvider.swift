import Foundation
import UsageBilling

extension OpenMeterIngestSink {
    /// The routing-config kind `openmeter`.
    public static let kind = ProviderKind(name: "openmeter", settingsKeys: OpenMeterSettings.keys, secretKeys: ["api_key"], requestTimeout: .seconds(10), makeSink: { settings, client, clock, name in
        try OpenMeterIngestSink(settings: OpenMeterSettings.decode(settings), client: client, clock: clock, name: name)
    }, makeReadBack: { settings, client in
        try OpenMeterReadBack(settings: OpenMeterSettings.decode(settings), client: client)
    }, tools: tools)
}

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

    public func usage(customer: String, meters: [String], from: Date, to: Date, granularity: ReadBackGranularity) async throws -> [ReportedUsage] {
        var out: [ReportedUsage] = []
        for meter in meters {
            let slug = settings.meterSlugs[meter] ?? meter
            for row in try await client.query(meter: slug, from: from, to: to, windowSize: granularity == .hour ? .hour : .day, subjects: [customer])
            where row.subject == nil || row.subject == customer {
                guard let start = RFC3339.parse(row.windowStart), let end = RFC3339.parse(row.windowEnd) else { continue }
                out.append(ReportedUsage(customer: customer, meter: meter, start: start, end: end, value: Decimal(reported: row.value)))
            }
        }
        return out
    }
}

extension OpenMeterIngestSink {
    /// OpenMeter's tools for the CLI: a meter's query.
    static let tools = ProviderTools(summary: { settings, client in OpenMeterSummary(client: try OpenMeterClient(settings: OpenMeterSettings.decode(settings), client: client)) })
}

/// `usage-billing summary` for OpenMeter: a meter's values, per window and subject.
struct OpenMeterSummary: UsageSummarizer {
    let client: OpenMeterClient

    func summary(_ q: SummaryQuery) async throws -> [SummaryRow] {
        let meter = try q.require(q.meter, "meter", provider: "OpenMeter", what: "a meter slug")
        let size: OpenMeterClient.WindowSize? = switch q.window { case .hour?: .hour; case .day?: .day; case nil: nil }
        return try await client.query(meter: meter, from: q.from, to: q.to, windowSize: size, subjects: q.customer.map { [$0] } ?? []).map {
            SummaryRow(start: $0.windowStart, end: $0.windowEnd, customer: $0.subject ?? "-", metric: meter, value: String(format: "%g", $0.value))
        }
    }
}
