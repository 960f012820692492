import Foundation
import Testing
import UsageBilling
import UsageBillingCurl
import UsageBillingTesting
import UsageRouting
import UsageTestSupport
@testable import UsageSpool

/// A provider that applies a request and never answers it (a dropped connection) costs the lane
/// the hedge delay, not the request timeout, and bills nothing twice.
@Suite("Hedged resends", .timeLimit(.minutes(5)))
struct HedgeTests {
    /// An ingest endpoint that dedupes by CloudEvent id: the first request carrying `hung` is
    /// applied and then held until another request carrying it (the hedge) has been answered,
    /// then answered late.
    final class HangingIngest: Sendable {
        let hung: String
        let state = Locked(
            (billed: [String: Int](), requests: 0, hedgeAnswered: false, lateAnswers: 0, heldOnce: false))
        init(hung: String) { self.hung = hung }

        func handle(_ request: LoopbackHTTPServer.Request) async -> LoopbackHTTPServer.Action {
            let ids = (JSONValue.parse(request.body)?.arrayValue ?? []).compactMap { $0["id"]?.stringValue }
            let hold = state.with { s -> Bool in
                s.requests += 1
                for id in ids where s.billed[id] == nil { s.billed[id] = 1 }  // applied once, whatever comes again
                guard ids.contains(hung), !s.heldOnce else { return false }
                s.heldOnce = true
                return true
            }
            if hold {
                // Accepted, and no answer until the hedge has been answered.
                _ = try? await eventually(within: .seconds(240)) { self.state.with { $0.hedgeAnswered } }
                state.with { $0.lateAnswers += 1 }
                return .respond(HTTPResponse(status: 204))
            }
            if ids.contains(hung) { state.with { $0.hedgeAnswered = true } }
            return .respond(HTTPResponse(status: 204))
        }
    }

    @Test(arguments: LedgerKind.allCases)
    func aHungRequestIsHedgedAndBillsOnce(_ kind: LedgerKind) async throws {
        let ingest = HangingIngest(hung: "hedge-7")
        let server = try await LoopbackHTTPServer.start(threads: 2) { await ingest.handle($0) }
        // The longest timeout a config allows (300 s): without the hedge the lane would wait that
        // long for the hung request, so even a starved machine draining in half of it shows the hedge.
        let config = try routing(
            """
            version: 1
            providers:
              openmeter: { kind: openmeter, api_key: om_REDACTED, endpoint: "\(server.baseURL)", max_batch_size: 5, timeout: 300s }
            routes:
              - { events: [api_request], to: openmeter }
            """)
        let curl = try CurlHTTPClient()
        defer { curl.shutdown() }
        let pipeline = try UsagePipeline(config: config, ledger: try await kind.make("hedge"), client: curl)
        let n = 40
        try await pipeline.record(events(n, prefix: "hedge"))
        let started = ContinuousClock.now
        try await pipeline.flush()
        let took = ContinuousClock.now - started
        let seen = ingest.state.with { $0 }
        let lane = try #require(try await pipeline.spool.status().first)
        #expect(lane.delivered + lane.duplicates == n && lane.queued == 0 && lane.dead.isEmpty)
        #expect(seen.billed.count == n && seen.billed.values.allSatisfy { $0 == 1 }, "every id billed once")
        #expect(seen.requests == n / 5 + 1, "one hedge, for the one hung request: \(seen.requests) requests")
        #expect(took < .seconds(150), "the hung request cost the hedge delay, not the 300 s timeout (\(took))")
        // The late answer to the first attempt reaches nobody: the attempt was cancelled.
        _ = try? await eventually(within: .seconds(5)) { ingest.state.with { $0.lateAnswers } == 1 }
        #expect(try await pipeline.spool.status().first?.delivered == lane.delivered, "a late answer changes nothing")
        print("hedge: \(n) events, \(seen.requests) requests, drained in \(took)")
        await server.shutdown()
    }
}
