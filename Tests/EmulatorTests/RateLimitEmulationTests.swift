import Foundation
import Testing
import UsageBilling
import UsageBillingCurl
import UsageEmulator
import UsageRouting
import UsageSpool

/// The emulator answers 429 past a provider's documented rate limit, so pacing is tested against
/// the provider's rules: the adapter's default pacing never meets one, a raised pace does, and
/// both bill every event once.
@Suite("Documented rate limits, emulated", .timeLimit(.minutes(2)))
struct RateLimitEmulationTests {
    static func drain(_ emulator: UsageEmulator, pace: String, tag: String, n: Int) async throws -> (
        rateLimited: Int, billed: [String]
    ) {
        let endpoint = emulator.endpoints["stripe"]?["endpoint"] ?? ""
        let config = try RoutingConfig.parse(
            """
            version: 1
            providers:
              stripe: { kind: stripe, secret_key: sk_test_REDACTED, endpoint: "\(endpoint)"\(pace) }
            routes:
              - { events: [api_request], to: stripe }
            """, file: "limits.yaml", directory: "/tmp", registry: .standard, environment: [:])
        let client = try CurlHTTPClient()
        defer { client.shutdown() }
        let spool = FileManager.default.temporaryDirectory.appending(
            path: "ub-limits-\(tag)-\(UUID().uuidString.prefix(8)).spool"
        ).path
        let pipeline = try UsagePipeline(config: config, spoolPath: spool, client: client)
        let now = Date()
        try await pipeline.record(
            (0..<n).map {
                UsageEvent(
                    id: "\(tag)-\($0)", name: "api_request", customer: "cus_\($0 % 40)",
                    timestamp: now.addingTimeInterval(-60), quantity: 1)
            })
        let before = emulator.statistics.injected["stripe"]?["rate_limit"] ?? 0
        try await pipeline.flush()
        let status = try #require(try await pipeline.spool.status().first)
        #expect(status.queued == 0 && status.dead.isEmpty && status.delivered + status.duplicates == n)
        let billed = await emulator.accepted("stripe").compactMap(\.key).filter { $0.hasPrefix("\(tag)-") }
        return ((emulator.statistics.injected["stripe"]?["rate_limit"] ?? 0) - before, billed)
    }

    @Test func stripeTestModePacingMeetsNoLimitAndARaisedPaceIsRefusedButLosesNothing() async throws {
        let emulator = try await UsageEmulator.start(rateLimits: true)
        let n = 80
        let paced = try await Self.drain(emulator, pace: "", tag: "paced", n: n)
        // Arrivals bunch on a loaded machine (as on a network), so a refusal or two can meet even
        // a pace under the limit; without pacing most requests would be refused.
        #expect(
            paced.rateLimited <= n / 10,
            "the default pace for a test key stays under the sandbox's 25 requests/s: \(paced.rateLimited) refused")
        #expect(paced.billed.count == n && Set(paced.billed).count == n)
        let raised = try await Self.drain(emulator, pace: ", requests_per_second: 1000", tag: "raised", n: n)
        #expect(raised.rateLimited > 0, "1,000 requests/s with a test key is past Stripe's sandbox limit")
        #expect(raised.billed.count == n && Set(raised.billed).count == n, "every event billed once through the 429s")
        print(
            "emulated limits: Stripe test key, \(n) events: default pace \(paced.rateLimited) refusals; raised pace \(raised.rateLimited) refusals, all billed once"
        )
        await emulator.shutdown()
    }
}
