import Foundation
import GRDB
import StripeUsage
import Testing
import UsageBillingCurl
import UsageBillingProviders
import UsageBillingTesting
import UsageRouting
import UsageTestSupport
@testable import UsageSpool

func tempPath(_ name: String) -> String {
    FileManager.default.temporaryDirectory.appending(path: "ub-spool-\(UUID().uuidString)-\(name)").path
}

func routing(_ yaml: String) throws -> RoutingConfig {
    try RoutingConfig.parse(yaml, file: "test.yaml", directory: "/tmp", registry: .standard, environment: [:])
}

func events(_ n: Int, prefix: String = "evt") -> [UsageEvent] {
    let now = Date()
    return (0..<n).map {
        UsageEvent(
            id: "\(prefix)-\($0)", name: "api_request", customer: "acme",
            timestamp: now.addingTimeInterval(-Double(n - $0) - 60),
            quantity: Decimal($0 % 5 + 1))
    }
}

/// `api_request` to OpenMeter at a loopback server, `batch` events per request (placeholder key). Its
/// timeout is the longest allowed: the tests that hold the server's answer are decided by their
/// own signals, never by a request timing out on a starved machine.
func openMeterOnly(_ server: LoopbackHTTPServer, batch: Int) throws -> RoutingConfig {
    try routing(
        """
        version: 1
        providers:
          openmeter: { kind: openmeter, api_key: om_REDACTED, endpoint: "\(server.baseURL)", max_batch_size: \(batch), hedge: false, timeout: 300s }
        routes:
          - { events: [api_request], to: openmeter }
        """)
}

/// `api_request` to Stripe with an Orb shadow (placeholder keys).
func stripeWithOrbShadow() throws -> RoutingConfig {
    try routing(
        """
        version: 1
        providers:
          stripe: { kind: stripe, secret_key: sk_test_REDACTED }
          orb: { kind: orb, api_key: orb_REDACTED }
        routes:
          - { events: [api_request], to: stripe, shadow: orb }
        """)
}

@Suite("Spool")
struct SpoolTests {
    @Test(arguments: LedgerKind.allCases)
    func recordIsDurableIdempotentAndOneRowPerLane(_ kind: LedgerKind) async throws {
        let config = try stripeWithOrbShadow()
        let path = try await kind.make("a").location
        let pipeline = try UsagePipeline(
            config: config, ledger: try await openLedger(path), client: DryRunHTTPClient(keep: 0, secrets: []))
        let batch = events(3)
        try await pipeline.record(batch)
        try await pipeline.record(batch)  // recorded again: a no-op, not a second charge
        let status = try await pipeline.spool.status()
        #expect(status.map(\.lane) == ["orb/api_request", "stripe/api_request"])
        #expect(status.allSatisfy { $0.queued == 3 })
        // A second process sees the same durable rows.
        #expect(try await openLedger(path).queuedCount(lane: nil) == 6)
        try await pipeline.flush()
        #expect(try await pipeline.spool.status().allSatisfy { $0.queued == 0 && $0.delivered == 3 })
    }

    @Test func commitStatisticsCountCallsAndTransactions() async throws {
        let spool = try Spool(path: tempPath("stats.spool"))
        #expect(spool.commitStatistics == (0, 0))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<20 {
                group.addTask {
                    try await spool.record([
                        RecordEntry(
                            event: UsageEvent(id: "s-\(i)", name: "api_request", customer: "acme"), lanes: ["a#0"])
                    ])
                }
            }
            try await group.waitForAll()
        }
        let stats = spool.commitStatistics
        #expect(stats.calls == 20)
        #expect(stats.transactions >= 1 && stats.transactions <= 20)
        #expect(try await spool.queuedCount() == 20)
    }

    /// A commit that fails half-way leaves nothing of itself behind, every caller sharing it
    /// gets the error (saying to record again), and the next commit works.
    @Test func aFailedCommitRecordsNothingAndTheNextOneWorks() async throws {
        let spool = try Spool(path: tempPath("rollback.spool"))
        try await spool.pool.write { db in
            try db.execute(
                sql:
                    "CREATE TRIGGER boom BEFORE INSERT ON deliveries WHEN NEW.lane = 'boom#0' BEGIN SELECT RAISE(ABORT, 'lane refused'); END"
            )
        }
        let ok = UsageEvent(id: "ok-1", name: "api_request", customer: "acme")
        let bad = UsageEvent(id: "bad-1", name: "api_request", customer: "acme")
        await #expect {
            try await spool.record([RecordEntry(event: ok, lanes: ["a#0"]), RecordEntry(event: bad, lanes: ["boom#0"])])
        } throws: { error in
            (error as? UsageBillingError)?.fix?.contains("record them again") == true
        }
        let events = try await spool.pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM events") }
        #expect(events == 0)
        #expect(try await spool.queuedCount() == 0)
        try await spool.record([RecordEntry(event: ok, lanes: ["a#0"])])
        #expect(try await spool.queuedCount() == 1)
    }

    @Test(arguments: LedgerKind.allCases)
    func unroutedEventsFollowThePolicy(_ kind: LedgerKind) async throws {
        let yaml = """
            version: 1
            providers:
              stripe: { kind: stripe, secret_key: sk_test_REDACTED }
            routes:
              - { events: [api_request], to: stripe }
            """
        let rejecting = try UsagePipeline(
            config: try routing(yaml), ledger: try await kind.make("r"), client: DryRunHTTPClient(keep: 0, secrets: []))
        await #expect { try await rejecting.record([UsageEvent(name: "gpu_seconds", customer: "acme")]) } throws: {
            ($0 as? UsageBillingError)?.code == .invalidInput
        }
        #expect(try await rejecting.spool.queuedCount() == 0)
        let keeping = try UsagePipeline(
            config: try routing(yaml + "\nunrouted: dead-letter"), ledger: try await kind.make("d"),
            client: DryRunHTTPClient(keep: 0, secrets: []))
        try await keeping.record([UsageEvent(id: "u1", name: "gpu_seconds", customer: "acme")])
        #expect(try await keeping.spool.deadLetters().map(\.eventID) == ["u1"])
        #expect(try await keeping.spool.deadLetters().first?.code == "unrouted")
    }

    @Test func aFileThatIsNotASpoolGivesAClearErrorAndIsLeftAlone() throws {
        let path = tempPath("garbage.spool")
        let garbage = Data(String(repeating: "not a database ", count: 500).utf8)
        try garbage.write(to: URL(fileURLWithPath: path))
        #expect { try Spool(path: path) } throws: { error in
            guard let e = error as? UsageBillingError else { return false }
            return e.code == .invalidInput && e.message.contains(path) && (e.fix ?? "").contains("nothing")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == garbage)
    }

    @Test func aTruncatedSpoolGivesAClearErrorAndNothingIsDropped() async throws {
        let path = tempPath("trunc.spool")
        do {
            let spool = try Spool(path: path, durability: .full)
            try await spool.record(events(2_000).map { RecordEntry(event: $0, lanes: ["stripe#0"]) })
            try spool.checkpoint()
        }
        // Fold the WAL in, then cut the file in half.
        let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        #expect(size > 8192)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: UInt64(size / 2))
        try handle.close()
        try? FileManager.default.removeItem(atPath: path + "-wal")
        try? FileManager.default.removeItem(atPath: path + "-shm")
        #expect { try Spool(path: path) } throws: { error in
            guard let e = error as? UsageBillingError else { return false }
            return e.code == .invalidInput && e.message.contains(path) && e.fix != nil
        }
    }
}

@Suite("Spool: provider refusals after delivery")
struct RejectDeliveredTests {
    /// Stripe took four events and later reported two of them invalid: those two become dead
    /// letters on the Stripe lane with Stripe's reason; Orb's copies, a queued row, an id the
    /// spool does not hold, and another provider's lane stay as they were; the ledger a
    /// reconcile reads drops them.
    @Test(arguments: LedgerKind.allCases)
    func refusedEventsBecomeDeadLettersOnThatProviderOnly(_ kind: LedgerKind) async throws {
        let config = try stripeWithOrbShadow()
        let pipeline = try UsagePipeline(
            config: config, ledger: try await kind.make("reject"), client: DryRunHTTPClient(keep: 0, secrets: []))
        try await pipeline.record(events(4, prefix: "r"))
        try await pipeline.flush()
        try await pipeline.record(events(1, prefix: "late"))  // still queued
        let reason = RejectionReason(
            code: "meter_event_customer_not_found", message: "No customer cus_x", field: "customer", origin: .provider)
        let changed = try await pipeline.spool.rejectDelivered(
            [("r-1", reason), ("r-3", reason), ("late-0", reason), ("unknown", reason)], provider: "stripe")
        #expect(changed == 2)
        let byLane = Dictionary(uniqueKeysWithValues: try await pipeline.spool.status().map { ($0.lane, $0) })
        #expect(
            byLane["stripe/api_request"]?.delivered == 2
                && byLane["stripe/api_request"]?.dead == ["meter_event_customer_not_found": 2]
                && byLane["stripe/api_request"]?.queued == 1)
        #expect(byLane["orb/api_request"]?.delivered == 4 && byLane["orb/api_request"]?.dead.isEmpty == true)
        let letters = try await pipeline.spool.deadLetters()
        #expect(
            Set(letters.map(\.eventID)) == ["r-1", "r-3"]
                && letters.allSatisfy { $0.lane == "stripe/api_request" && $0.message.contains("No customer cus_x") })
        var ledger: [String] = []
        try await pipeline.spool.ledger(lane: "stripe/api_request") { event, state in
            if state != .dead { ledger.append(event.id) }
        }
        #expect(ledger.sorted() == ["late-0", "r-0", "r-2"])
        // Said twice (webhooks are delivered at least once): nothing more changes.
        #expect(try await pipeline.spool.rejectDelivered([("r-1", reason)], provider: "stripe") == 0)
        #expect(
            try await pipeline.spool.rejectDelivered([("r-0", reason)], provider: "str") == 0,
            "a prefix of a provider name is not that provider")
    }
}
