import Foundation
import UsageBilling
import Logging
import ServiceLifecycle
import Testing
import UsageBillingCurl
import UsageBillingTesting
import UsageRouting
import UsageSpool
import UsageTestSupport

@Suite("Graceful shutdown", .timeLimit(.minutes(3)))
struct ShutdownTests {
    /// Graceful shutdown while batches are in flight (OpenMeter keeps up to 8 at once): they complete
    /// and are marked, nothing after them is started, and the rest stays queued for the next run.
    /// The server answers nothing until the worker has been told to stop, so which batches were in
    /// flight at the shutdown does not depend on how fast the machine gets there.
    @Test(arguments: LedgerKind.allCases)
    func theInFlightBatchFinishesAndIsMarked(_ kind: LedgerKind) async throws {
        let inFlight = Locked(0)
        let answer = Locked(false)
        let server = try await LoopbackHTTPServer.start { _ in
            inFlight.with { $0 += 1 }
            _ = try? await eventually { answer.with { $0 } }
            return .respond(HTTPResponse(status: 204))
        }
        let config = try openMeterOnly(server, batch: 10)
        let curl = try CurlHTTPClient()
        defer { curl.shutdown() }
        let pipeline = try UsagePipeline(config: config, ledger: try await kind.make("shutdown"), client: curl)
        try await pipeline.record(events(100))
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: DeliveryService(worker: pipeline.worker))], logger: Logger(label: "test")))
        let running = Task { try await group.run() }
        #expect(try await eventually { inFlight.with { $0 } > 0 })
        await group.triggerGracefulShutdown()
        #expect(try await eventually { pipeline.worker.isStopping })
        answer.with { $0 = true }
        try await running.value
        let lane = try await #require(try await pipeline.spool.status().first)
        let started = inFlight.with { $0 }
        // At most the lane's 8 concurrent batches: a ninth could only start once one of them was
        // answered, and none was before the worker was stopping.
        #expect((1...8).contains(started), "\(started) batches started")
        #expect(lane.delivered == 10 * started, "every batch in flight was marked")
        #expect(
            lane.queued == 100 - 10 * started && lane.retrying == 0, "the rest is untouched, queued for the next run")
        await server.shutdown()
    }
}
