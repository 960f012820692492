import Foundation
import NIOConcurrencyHelpers
import StripeUsage
import Testing
import UsageBillingCurl
import UsageBillingProviders
import UsageBillingTesting
import UsageRouting
import UsageSpool

/// An OpenMeter-shaped server that fails every request while `failing` is set.
final class SwitchableServer: Sendable {
    let failing = NIOLockedValueBox(true)
    let received = NIOLockedValueBox<Set<String>>([])

    func handle(_ request: LoopbackHTTPServer.Request) -> LoopbackHTTPServer.Action {
        if failing.withLockedValue({ $0 }) { return .respond(.json(503, .object(["title": .string("Service Unavailable")]))) }
        let json = JSONValue.parse(request.body)
        let ids = (json?.arrayValue ?? [json].compactMap { $0 }).compactMap { $0["id"]?.stringValue }
        received.withLockedValue { $0.formUnion(ids) }
        return .respond(HTTPResponse(status: 204))
    }
}

@Suite("Delivery worker", .timeLimit(.minutes(2)))
struct WorkerTests {
    /// One lane's provider is down for a long stretch; the other lane delivers everything in the
    /// meantime; the failed lane catches up afterwards.
    @Test func aFailingLaneNeverStallsTheOther() async throws {
        let fake = StripeFake(meters: ["api_request"])
        let stripeServer = try await LoopbackHTTPServer.start { r in
            .respond(await fake.handle(method: r.method, target: r.target, headers: r.headers, body: r.body))
        }
        let down = SwitchableServer()
        let openMeterServer = try await LoopbackHTTPServer.start { down.handle($0) }
        let config = try routing("""
            version: 1
            providers:
              stripe: { kind: stripe, secret_key: sk_live_REDACTED, endpoint: "\(stripeServer.baseURL)" }
              openmeter: { kind: openmeter, api_key: om_REDACTED, endpoint: "\(openMeterServer.baseURL)", max_batch_size: 20 }
            routes:
              - { events: [api_request], to: stripe, shadow: openmeter }
            """)
        let curl = try CurlHTTPClient()
        defer { curl.shutdown() }
        let pipeline = try UsagePipeline(config: config, spoolPath: tempPath("iso.spool"), client: curl,
                                         policy: RetryPolicy(baseDelay: .milliseconds(20), maxDelay: .milliseconds(200), maxAttempts: 1_000))
        let n = 120
        try await pipeline.record(events(n))
        let worker = Task { try await pipeline.flush() }

        // Stripe's lane finishes while OpenMeter is still down.
        var stripeDone = false
        for _ in 0..<200 where !stripeDone {
            try await Task.sleep(for: .milliseconds(50))
            stripeDone = try pipeline.spool.status().first { $0.lane == "stripe#0" }?.delivered == n
        }
        #expect(stripeDone, "the healthy lane did not finish while the other was down")
        let openMeter = try #require(try pipeline.spool.status().first { $0.lane == "openmeter#0" })
        #expect(openMeter.delivered == 0 && openMeter.queued == n && openMeter.retrying > 0)

        down.failing.withLockedValue { $0 = false }
        try await worker.value
        let final = try pipeline.spool.status()
        #expect(final.allSatisfy { $0.queued == 0 && $0.delivered == n && $0.dead.isEmpty })
        #expect(down.received.withLockedValue { $0.count } == n)
        print("isolation: \(n) events; stripe lane done while openmeter was down; openmeter caught up with \(n)")
        await stripeServer.shutdown()
        await openMeterServer.shutdown()
    }
}
