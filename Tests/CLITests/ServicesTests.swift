import Foundation
import Prometheus
import Testing
import UsageBilling
import UsageBillingCurl
import UsageBillingProviders
import UsageEmulator
import UsageRouting
import UsageServe
import UsageSpool
import UsageTestSupport

/// The service groups `serve` and `worker` run, assembled by the library and driven here in
/// process: what the CLI adds is only flags, output and exit codes.
@Suite("Service assembly", .timeLimit(.minutes(2)))
struct ServicesTests {
    static func config(_ emulator: UsageEmulator, routes: String = "- { events: [api_request], to: openmeter }") throws
        -> RoutingConfig
    {
        try RoutingConfig.parse(
            """
            version: 1
            providers:
              openmeter: { kind: openmeter, api_key: om_test_key, endpoint: "\(emulator.endpoints["openmeter"]?["endpoint"] ?? "")" }
            routes:
              \(routes)
            serve:
              tokens: [ingest-token-for-tests]
            """, file: "services.yaml", directory: NSTemporaryDirectory(), registry: .standard, environment: [:])
    }

    static func spoolPath() -> String {
        FileManager.default.temporaryDirectory.appending(path: "ub-services-\(UUID().uuidString.prefix(8)).spool").path
    }

    /// serve's group listens, records what it is sent, delivers it, and on a graceful shutdown
    /// stops with every accepted event delivered.
    @Test func serveRecordsDeliversAndShutsDownGracefully() async throws {
        let emulator = try await UsageEmulator.start()
        let config = try Self.config(emulator)
        let client = try CurlHTTPClient()
        defer { client.shutdown() }
        let ledger = try Spool(path: Self.spoolPath())
        let ports = AsyncStream.makeStream(of: Int.self)
        let group = UsageServices.serve(
            settings: try ServeSettings.from(config, doors: IngestDoors.standard), ledger: ledger,
            router: try Router(config: config, client: client), doors: IngestDoors.standard, host: "127.0.0.1",
            port: 0, reconcile: nil, registry: PrometheusCollectorRegistry(), logger: .init(label: "test"),
            handlesSignals: false
        ) { ports.continuation.yield($0) }
        let running = Task { try await group.run() }
        var listening = ports.stream.makeAsyncIterator()
        let port = try #require(await listening.next())
        let body =
            #"{"id":"svc-1","name":"api_request","customer":"acme","timestamp":"\#(RFC3339.format(Date().addingTimeInterval(-60)))","quantity":3}"#
        let answer = try await client.send(
            HTTPRequest(
                method: .post, url: "http://127.0.0.1:\(port)/v1/events",
                headers: ["Authorization": "Bearer ingest-token-for-tests", "Content-Type": "application/json"],
                body: Data(body.utf8)))
        #expect(answer.status == 202)
        let delivered = try await eventually(within: .seconds(20)) {
            try await ledger.status().first?.delivered == 1
        }
        #expect(delivered, "the worker in the group delivered it")
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(try await ledger.queuedCount() == 0)
        await emulator.shutdown()
    }

    /// worker's group refuses a ledger with undelivered events on a lane the config no longer
    /// has, and that failure is the caller's to fix (the CLI's exit 2), naming the lane.
    @Test func aWorkerRefusedByItsLedgerIsTheCallersToFix() async throws {
        let emulator = try await UsageEmulator.start()
        let client = try CurlHTTPClient()
        defer { client.shutdown() }
        let ledger = try Spool(path: Self.spoolPath())
        try await ledger.record([
            RecordEntry(event: UsageEvent(id: "old-1", name: "api_request", customer: "acme"), lanes: ["gone/x"])
        ])
        let config = try Self.config(emulator)
        let group = UsageServices.worker(
            ledger: ledger, router: try Router(config: config, client: client), leaseTTL: .seconds(15),
            untilEmpty: true, closeWindows: false, metrics: nil, logger: .init(label: "test"), handlesSignals: false)
        do {
            try await group.run()
            Issue.record("the worker started with an orphaned lane")
        } catch {
            guard case .refused(let message) = UsageServices.failure(error) else {
                Issue.record("expected a refusal, got \(UsageServices.failure(error))")
                return
            }
            #expect(message.contains("gone/x") && message.contains("lanes drop"))
        }
        struct Unreachable: Error, CustomStringConvertible { var description: String { "the ledger is down" } }
        #expect(
            UsageServices.failure(Unreachable()) == .failed("the ledger is down"), "anything else is not the caller's")
        await emulator.shutdown()
    }
}
