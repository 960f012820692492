import Foundation
import StripeUsage
import Testing
import UsageBillingCurl
import UsageBillingProviders
import UsageBillingTesting
import UsageRouting
import UsageSpool

func tempPath(_ name: String) -> String {
    FileManager.default.temporaryDirectory.appending(path: "ub-spool-\(UUID().uuidString)-\(name)").path
}

func routing(_ yaml: String) throws -> RoutingConfig {
    try RoutingConfig.parse(yaml, file: "test.yaml", directory: "/tmp", registry: .standard, environment: [:])
}

func events(_ n: Int, prefix: String = "evt") -> [UsageEvent] {
    let now = Date()
    return (0..<n).map { UsageEvent(id: "\(prefix)-\($0)", name: "api_request", customer: "acme", timestamp: now.addingTimeInterval(-Double(n - $0) - 60),
                                     quantity: Decimal($0 % 5 + 1)) }
}

@Suite("Spool")
struct SpoolTests {
    @Test func recordIsDurableIdempotentAndOneRowPerLane() async throws {
        let config = try routing("""
            version: 1
            providers:
              stripe: { kind: stripe, secret_key: sk_test_REDACTED }
              orb: { kind: orb, api_key: orb_REDACTED }
            routes:
              - { events: [api_request], to: stripe, shadow: orb }
            """)
        let path = tempPath("a.spool")
        let pipeline = try UsagePipeline(config: config, spoolPath: path, client: DryRunHTTPClient(keep: 0, secrets: []))
        let batch = events(3)
        try await pipeline.record(batch)
        try await pipeline.record(batch)  // recorded again: a no-op, not a second charge
        let status = try pipeline.spool.status()
        #expect(status.map(\.lane) == ["orb#0", "stripe#0"])
        #expect(status.allSatisfy { $0.queued == 3 })
        // A second process sees the same durable rows.
        #expect(try Spool(path: path).queuedCount() == 6)
        try await pipeline.flush()
        #expect(try pipeline.spool.status().allSatisfy { $0.queued == 0 && $0.delivered == 3 })
    }

    @Test func commitStatisticsCountCallsAndTransactions() async throws {
        let spool = try Spool(path: tempPath("stats.spool"))
        #expect(spool.commitStatistics == (0, 0))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<20 {
                group.addTask { try await spool.record([Spool.Entry(event: UsageEvent(id: "s-\(i)", name: "api_request", customer: "acme"), lanes: ["a#0"])]) }
            }
            try await group.waitForAll()
        }
        let stats = spool.commitStatistics
        #expect(stats.calls == 20)
        #expect(stats.transactions >= 1 && stats.transactions <= 20)
        #expect(try spool.queuedCount() == 20)
    }

    @Test func unroutedEventsFollowThePolicy() async throws {
        let yaml = """
            version: 1
            providers:
              stripe: { kind: stripe, secret_key: sk_test_REDACTED }
            routes:
              - { events: [api_request], to: stripe }
            """
        let rejecting = try UsagePipeline(config: try routing(yaml), spoolPath: tempPath("r.spool"), client: DryRunHTTPClient(keep: 0, secrets: []))
        await #expect { try await rejecting.record([UsageEvent(name: "gpu_seconds", customer: "acme")]) } throws: {
            ($0 as? UsageBillingError)?.code == .invalidInput
        }
        #expect(try rejecting.spool.queuedCount() == 0)
        let keeping = try UsagePipeline(config: try routing(yaml + "\nunrouted: dead-letter"), spoolPath: tempPath("d.spool"),
                                        client: DryRunHTTPClient(keep: 0, secrets: []))
        try await keeping.record([UsageEvent(id: "u1", name: "gpu_seconds", customer: "acme")])
        #expect(try keeping.spool.deadLetters().map(\.eventID) == ["u1"])
        #expect(try keeping.spool.deadLetters().first?.code == "unrouted")
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
            try await spool.record(events(2_000).map { Spool.Entry(event: $0, lanes: ["stripe#0"]) })
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
