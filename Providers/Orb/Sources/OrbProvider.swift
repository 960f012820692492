import Foundation
import UsageBilling

extension OrbSink {
    /// The routing-config kind `orb`.
    public static let kind = ProviderKind(
        name: "orb", settings: OrbSettings.self, secretKeys: ["api_key"], requestTimeout: .seconds(10),
        sink: { try OrbSink(settings: $0, client: $1, clock: $2, name: $3) },
        readBack: { try OrbReadBack(settings: $0, client: $1) }, tools: tools)
}

extension OrbSink {
    /// Orb's tools for the CLI: a subscription's usage per billable metric.
    static let tools = ProviderTools(summary: { settings, client in
        OrbSummary(client: try OrbClient(settings: OrbSettings.decode(settings), client: client))
    })
}

/// `usage-billing summary` for Orb: a subscription's usage, per billable metric.
struct OrbSummary: UsageSummarizer {
    let client: OrbClient

    func summary(_ q: SummaryQuery) async throws -> [SummaryRow] {
        let subscription = try q.require(
            q.subscription, "subscription", provider: "Orb", what: "an Orb subscription id")
        return try await client.subscriptionUsage(
            subscriptionID: subscription, start: q.from, end: q.to, daily: q.window == .day
        ).flatMap { metric in
            metric.windows.map {
                SummaryRow(
                    start: RFC3339.format($0.start), end: RFC3339.format($0.end), customer: subscription,
                    metric: metric.metricName, value: String(format: "%g", $0.quantity))
            }
        }
    }
}
