import Foundation
import Testing
import UsageBilling
import UsageBillingCurl
import UsageEmulator
import UsageRouting
import UsageSpool

/// `aggregate:` on every provider: events fold per customer and meter into one record per window,
/// billed exactly once, with the window's derived id as the provider's idempotency key.
@Suite("Pre-aggregation on every provider", .timeLimit(.minutes(2)))
struct PreAggregationTests {
    @Test(arguments: UsageEmulator.kinds)
    func aWindowOfManyEventsIsOneRecordWithTheirTotal(_ kind: String) async throws {
        let emulator = try await UsageEmulator.start()
        let config = try emulatorConfig(
            emulator, routes: "  - { events: [api_request], to: \(kind) }\n",
            extra: [kind: "aggregate: { window: 1m, grace: 1m }"])
        #expect(config.providers[kind].map { ProviderRegistry.standard.kind($0.kind.name) != nil } == true)
        let client = try CurlHTTPClient()
        defer { client.shutdown() }
        let spool = FileManager.default.temporaryDirectory.appending(
            path: "ub-preagg-\(kind)-\(UUID().uuidString.prefix(8)).spool"
        ).path
        let pipeline = try UsagePipeline(config: config, spoolPath: spool, client: client)
        // Two customers, 300 and 100 events, inside one UTC minute two minutes ago; properties
        // differ per event and fold away.
        let minute = (Date().timeIntervalSince1970 / 60).rounded(.down) * 60 - 120
        let events = (0..<400).map { (i: Int) -> UsageEvent in
            let customer = i < 300 ? "acme" : "globex"
            let region: UsageValue = .string(i % 2 == 0 ? "eu" : "us")
            let at = Date(timeIntervalSince1970: minute + Double(i % 60))
            return UsageEvent(
                id: "agg-\(kind)-\(i)", name: "api_request", customer: customer, timestamp: at,
                quantity: Decimal(i % 7 + 1), properties: ["region": region])
        }
        try await pipeline.record(events)
        try await pipeline.flush()
        let accepted = await emulator.accepted(kind)
        let recorded = events.reduce(Decimal(0)) { $0 + $1.quantity }
        #expect(accepted.count == 2, "\(kind): one record per customer and window, got \(accepted.count)")
        #expect(
            accepted.reduce(Decimal(0)) { $0 + $1.quantity } == recorded,
            "\(kind): the records carry every event's quantity")
        let status = try #require(try await pipeline.spool.status().first)
        #expect(status.queued == 0 && status.dead.isEmpty && status.aggregated == 400, "\(kind): \(status)")
        // Flushing again sends nothing: the windows' ids were taken.
        try await pipeline.flush()
        #expect(await emulator.accepted(kind).count == 2)
        await emulator.shutdown()
    }
}
