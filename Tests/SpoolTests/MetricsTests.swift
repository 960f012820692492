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
    @Test func countersPerLaneAndOutcomeAndDeadLettersByReason() async throws {
        let metrics = testMetrics
        let config = try routing("""
            version: 1
            providers:
              metered: { kind: stripe, secret_key: sk_test_REDACTED }
            routes:
              - { events: [api_request], to: metered }
            """)
        let pipeline = try UsagePipeline(config: config, spoolPath: tempPath("m.spool"), client: DryRunHTTPClient(keep: 0, secrets: []))
        var batch = events(4, prefix: "metric")
        batch.append(UsageEvent(id: "metric-old", name: "api_request", customer: "acme", timestamp: Date().addingTimeInterval(-40 * 86_400)))
        try await pipeline.record(batch)
        try await pipeline.flush()
        let accepted = try metrics.expectCounter(DeliveryWorker.MetricNames.deliveries, [("lane", "metered/api_request"), ("outcome", "accepted")])
        #expect(accepted.totalValue == 4)
        let dead = try metrics.expectCounter(DeliveryWorker.MetricNames.deadLetters, [("lane", "metered/api_request"), ("reason", "timestamp_too_old")])
        #expect(dead.totalValue == 1)
        #expect(try await pipeline.spool.deadLetters().map(\.eventID) == ["metric-old"])
    }
}
