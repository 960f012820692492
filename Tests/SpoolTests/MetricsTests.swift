import Foundation
import Metrics
import MetricsTestKit
import Testing
import UsageBillingTesting
import UsageRouting
import UsageSpool

/// swift-metrics can be bootstrapped once per process; only this suite does it.
let testMetrics: TestMetrics = {
    let metrics = TestMetrics()
    MetricsSystem.bootstrap(metrics)
    return metrics
}()

@Suite("Worker metrics")
struct MetricsTests {
    @Test(arguments: LedgerKind.allCases)
    func countersPerLaneAndOutcomeAndDeadLettersByReason(_ kind: LedgerKind) async throws {
        let metrics = testMetrics
        let config = try routing(
            """
            version: 1
            providers:
              metered_\(kind.rawValue): { kind: stripe, secret_key: sk_test_REDACTED }
            routes:
              - { events: [api_request], to: metered_\(kind.rawValue) }
            """)  // a provider name per ledger kind: the two cases run at once and share the metrics backend
        let pipeline = try UsagePipeline(
            config: config, ledger: try await kind.make("m"), client: DryRunHTTPClient(keep: 0, secrets: []))
        var batch = events(4, prefix: "metric")
        batch.append(
            UsageEvent(
                id: "metric-old", name: "api_request", customer: "acme",
                timestamp: Date().addingTimeInterval(-40 * 86_400)))
        try await pipeline.record(batch)
        try await pipeline.flush()
        let accepted = try metrics.expectCounter(
            DeliveryWorker.MetricNames.deliveries,
            [("lane", "metered_\(kind.rawValue)/api_request"), ("outcome", "accepted")])
        #expect(accepted.totalValue == 4)
        let dead = try metrics.expectCounter(
            DeliveryWorker.MetricNames.deadLetters,
            [("lane", "metered_\(kind.rawValue)/api_request"), ("reason", "timestamp_too_old")])
        #expect(dead.totalValue == 1)
        #expect(try await pipeline.spool.deadLetters().map(\.eventID) == ["metric-old"])
    }
}
