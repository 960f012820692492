import Foundation
import UsageBilling

extension OpenMeterSink {
    /// The routing-config kind `openmeter`.
    public static let kind = ProviderKind(
        name: "openmeter", settings: OpenMeterSettings.self, secretKeys: ["api_key"], requestTimeout: .seconds(10),
        sink: { try OpenMeterSink(settings: $0, client: $1, clock: $2, name: $3) },
        readBack: { try OpenMeterReadBack(settings: $0, client: $1) }, tools: tools)
}

extension OpenMeterSink {
    /// OpenMeter's tools for the CLI: a meter's query.
    static let tools = ProviderTools(summary: { settings, client in
        OpenMeterSummary(client: try OpenMeterClient(settings: OpenMeterSettings.decode(settings), client: client))
    })
}

/// `usage-billing summary` for OpenMeter: a meter's values, per window and subject.
struct OpenMeterSummary: UsageSummarizer {
    let client: OpenMeterClient

    func summary(_ q: SummaryQuery) async throws -> [SummaryRow] {
        let meter = try q.require(q.meter, "meter", provider: "OpenMeter", what: "a meter slug")
        let size: OpenMeterClient.WindowSize? =
            switch q.window {
            case .hour?: .hour;
            case .day?: .day;
            case nil: nil
            }
        return try await client.query(
            meter: meter, from: q.from, to: q.to, windowSize: size, subjects: q.customer.map { [$0] } ?? []
        ).map {
            SummaryRow(
                start: $0.windowStart, end: $0.windowEnd, customer: $0.subject ?? "-", metric: meter,
                value: String(format: "%g", $0.value))
        }
    }
}
