import Foundation
import UsageBilling

extension MetronomeSink {
    /// The routing-config kind `metronome`.
    public static let kind = ProviderKind(
        name: "metronome", settings: MetronomeSettings.self, secretKeys: ["api_key", "secret_key"],
        requestTimeout: .seconds(10),
        sink: { try MetronomeSink(settings: $0, client: $1, clock: $2, name: $3) },
        readBack: { try MetronomeReadBack(settings: $0, client: $1) }, tools: tools)
}

extension MetronomeSink {
    /// Metronome's tools for the CLI: usage per customer and billable metric.
    static let tools = ProviderTools(summary: { settings, client in
        MetronomeSummary(client: try MetronomeClient(settings: MetronomeSettings.decode(settings), client: client))
    })
}

/// `usage-billing summary` for Metronome: usage per customer and billable metric (per day unless
/// asked per hour).
struct MetronomeSummary: UsageSummarizer {
    let client: MetronomeClient

    func summary(_ q: SummaryQuery) async throws -> [SummaryRow] {
        try await client.usage(
            start: q.from, end: q.to, window: q.window?.rawValue ?? "day", customerIDs: q.customer.map { [$0] } ?? []
        ).map {
            SummaryRow(
                start: $0.startTimestamp, end: $0.endTimestamp, customer: $0.customerID, metric: $0.billableMetricName,
                value: $0.value.map { String(format: "%g", $0) } ?? "-")
        }
    }
}
