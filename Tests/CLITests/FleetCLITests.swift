import Foundation
import Testing
import UsageBilling
import UsageBillingTesting
import UsageEmulator
import UsageSpool
import UsageTestSupport

/// Many processes on one PostgreSQL ledger: the real binary, a real server, the emulator.
@Suite("Fleet on a shared ledger", .timeLimit(.minutes(5)))
struct FleetCLITests {
    static func config(_ emulator: UsageEmulator, tag: String) throws -> String {
        let e = emulator.endpoints
        return try CLI.temp(
            "fleet-\(tag).yaml",
            """
            version: 1
            providers:
              stripe: { kind: stripe, secret_key: ${STRIPE_SECRET_KEY}, endpoint: "\(e["stripe"]?["endpoint"] ?? "")" }
              chargebee: { kind: chargebee, api_key: ${CHARGEBEE_API_KEY}, site: acme-test, item_price_id: seats-USD-monthly,
                           aggregate: { window: 1d }, endpoint: "\(e["chargebee"]?["endpoint"] ?? "")" }
            routes:
              - { events: [api_request], to: stripe }
              - { events: [seats], to: chargebee }
            customers: { acme: { stripe: cus_acme, chargebee: AzZjGqTQ1xxK0Ezc }, globex: { stripe: cus_globex, chargebee: BxYkHrUR2yyL1Fad } }
            """)
    }

    static func line(_ id: String, _ name: String, _ customer: String, _ quantity: Int, at: Date) -> String {
        #"{"id":"\#(id)","name":"\#(name)","customer":"\#(customer)","timestamp":"\#(RFC3339.format(at))","quantity":\#(quantity)}"#
    }

    /// Two app instances on one ledger: instance 1 records 5 seats for acme and delivers, then
    /// instance 2 records 7 for the same customer and day and delivers. Chargebee bills 12 (on
    /// separate spools it billed 5: the second record carried the same window id).
    @Test func twoInstancesBillTheWindowsTotal() async throws {
        let emulator = try await UsageEmulator.start()
        let ledger = try await PostgresServer.shared().database("twoinstances")
        let config = try Self.config(emulator, tag: "two")
        let now = Date().addingTimeInterval(-120)
        for (instance, seats) in [(1, 5), (2, 7)] {
            let file = try CLI.temp(
                "seats-\(instance).ndjson", Self.line("seats-\(instance)", "seats", "acme", seats, at: now))
            let recorded = try await CLI.run(["import", file, "-c", config, "--spool", ledger])
            #expect(recorded.status == 0, "\(recorded.output)")
            let worker = try await CLI.run([
                "worker", "-c", config, "--spool", ledger, "--until-empty", "--close-windows",
            ])
            #expect(worker.status == 0, "\(worker.output)")
        }
        let billed = await emulator.accepted("chargebee").filter { $0.customer == "AzZjGqTQ1xxK0Ezc" }
        #expect(billed.reduce(Decimal(0)) { $0 + $1.quantity } == 12, "\(billed)")
        let status = try await CLI.run(["status", "--spool", ledger])
        #expect(status.status == 0 && status.output.contains("chargebee/seats: queued 0"), "\(status.output)")
        await emulator.shutdown()
    }

    /// The fleet crash test: 2 recorder processes (with overlapping ids) and 3 worker processes
    /// on one ledger; workers killed with SIGKILL at random points and restarted, the database
    /// restarted once mid-run, the emulator injecting 429s, 5xx and resets. At the end every id
    /// reached Stripe once, Chargebee billed every customer-day the fleet's total, and nothing is
    /// queued.
    @Test func killedWorkersAndARestartedDatabaseLoseNothingAndBillNothingTwice() async throws {
        let emulator = try await UsageEmulator.start(
            faults: ["stripe": .mixed(0.1, timeouts: 0), "chargebee": .mixed(0.1, timeouts: 0)], seed: 7)
        let server = try await PostgresServer.dedicated()  // restarted below: no other test's connections on it
        let ledger = try await server.database("fleet")
        let config = try Self.config(emulator, tag: "crash")
        let n = 400, overlap = 100
        let now = Date().addingTimeInterval(-600)
        // Recorder A takes events 0..<n, B takes overlap..<n+overlap... with the shared part recorded by both.
        func lines(_ range: Range<Int>) -> String {
            range.map { i in
                i % 4 == 3
                    ? Self.line(
                        "fleet-\(i)", "seats", i % 8 == 3 ? "acme" : "globex", i % 3 + 1,
                        at: now.addingTimeInterval(Double(i)))
                    : Self.line(
                        "fleet-\(i)", "api_request", i % 2 == 0 ? "acme" : "globex", i % 5 + 1,
                        at: now.addingTimeInterval(Double(i)))
            }.joined(separator: "\n")
        }
        let fileA = try CLI.temp("fleet-a.ndjson", lines(0..<n)),
            fileB = try CLI.temp("fleet-b.ndjson", lines((n - overlap)..<(2 * n - overlap)))
        let env = ProcessInfo.processInfo.environment.merging(CLI.env) { $1 }
        let dir = FileManager.default.temporaryDirectory.appending(path: "ub-fleet-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        func start(_ args: [String], _ log: String) throws -> ChildProcess {
            try ChildProcess.spawn(
                CLI.binary.path, args, environment: env, directory: CLI.root.path, outputFile: "\(dir)/\(log).log")
        }
        let recorders = try [
            start(["import", fileA, "-c", config, "--spool", ledger], "rec-a"),
            start(["import", fileB, "-c", config, "--spool", ledger], "rec-b"),
        ]
        let workerArgs = ["worker", "-c", config, "--spool", ledger, "--lease", "2s"]
        var workers = try (0..<3).map { try start(workerArgs, "worker-\($0)") }
        var rng = SeededGenerator(seed: UInt64(Date().timeIntervalSince1970))
        var kills = 0
        for round in 0..<8 {
            try await Task.sleep(for: .milliseconds(Int.random(in: 200...600, using: &rng)))
            let victim = Int.random(in: 0..<workers.count, using: &rng)
            workers[victim].kill(SIGKILL)
            _ = await workers[victim].exitStatus()
            kills += 1
            if round == 3 { try await server.restart() }  // every connection drops mid-run
            workers[victim] = try start(workerArgs, "worker-\(victim)-\(round)")
        }
        for recorder in recorders { #expect(await recorder.exitStatus() == 0, "a recorder failed") }
        for worker in workers { worker.kill(SIGKILL); _ = await worker.exitStatus() }
        let last = try await CLI.run([
            "worker", "-c", config, "--spool", ledger, "--until-empty", "--close-windows", "--lease", "2s",
        ])
        #expect(last.status == 0, "\(last.output)")

        let all = 0..<(2 * n - overlap)
        let stripe = await emulator.accepted("stripe")
        let stripeIDs = stripe.compactMap(\.key)
        let expectedStripe = Set(all.filter { $0 % 4 != 3 }.map { "fleet-\($0)" })
        #expect(Set(stripeIDs) == expectedStripe, "every id reached Stripe")
        #expect(stripeIDs.count == expectedStripe.count, "each counted once")
        var seats: [String: Decimal] = [:]
        for i in all where i % 4 == 3 {
            seats[i % 8 == 3 ? "AzZjGqTQ1xxK0Ezc" : "BxYkHrUR2yyL1Fad", default: 0] += Decimal(i % 3 + 1)
        }
        var billed: [String: Decimal] = [:]
        for usage in await emulator.accepted("chargebee") { billed[usage.customer, default: 0] += usage.quantity }
        #expect(billed == seats, "each customer's window billed the fleet's total")
        let status = try await CLI.run(["status", "--spool", ledger, "--json"])
        let lanes = JSONValue.parse(Data(status.output.utf8))?.arrayValue ?? []
        #expect(
            !lanes.isEmpty && lanes.allSatisfy { $0["queued"] == .number(0) && $0["open_windows"] == .number(0) },
            "\(status.output)")
        print(
            "fleet crash test: N=\(all.count) events (\(overlap) recorded by both recorders), 3 workers, SIGKILLs=\(kills), database restarts=1, Stripe ids=\(stripeIDs.count), Chargebee records=\(await emulator.accepted("chargebee").count)"
        )
        await emulator.shutdown()
    }

    /// Lease balancing: 6 lanes and 3 worker processes: each holds 2. One is killed: the other
    /// two take its lanes once its leases and heartbeat lapse. A fourth joins: the two with 3
    /// each hand one off to it. Events recorded throughout reach OpenMeter once each.
    @Test func workersShareTheLanesAndReshareWhenOneDiesOrJoins() async throws {
        let emulator = try await UsageEmulator.start()
        let ledger = try await PostgresServer.shared().database("balance")
        let meters = (0..<6).map { "m\($0)" }
        let config = try CLI.temp(
            "fleet-balance.yaml",
            """
            version: 1
            providers:
              openmeter: { kind: openmeter, api_key: ${OPENMETER_TOKEN}, endpoint: "\(emulator.endpoints["openmeter"]?["endpoint"] ?? "")" }
            routes:
            \(meters.map { "  - { events: [\($0)], to: openmeter }" }.joined(separator: "\n"))
            """)
        let now = Date().addingTimeInterval(-60)
        func record(_ batch: Int) async throws {
            let lines = (0..<120).map { i in Self.line("bal-\(batch)-\(i)", meters[i % 6], "acme", 1, at: now) }.joined(
                separator: "\n")
            let run = try await CLI.run([
                "import", try CLI.temp("balance-\(batch).ndjson", lines), "-c", config, "--spool", ledger,
            ])
            #expect(run.status == 0, "\(run.output)")
        }
        try await record(0)
        let env = ProcessInfo.processInfo.environment.merging(CLI.env) { $1 }
        let dir = FileManager.default.temporaryDirectory.appending(path: "ub-balance-\(UUID().uuidString.prefix(8))")
            .path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        func start(_ name: String) throws -> ChildProcess {
            try ChildProcess.spawn(
                CLI.binary.path, ["worker", "-c", config, "--spool", ledger, "--lease", "2s"], environment: env,
                directory: CLI.root.path, outputFile: "\(dir)/\(name).log")
        }
        let shared = try await PostgresLedger.open(ledger)
        /// Lanes per live worker process (owners are host/pid/run).
        func spread() async throws -> [Int32: Int] {
            var held: [Int32: Int] = [:]
            for lease in try await shared.leases() {
                if let pid = lease.owner.split(separator: "/").dropFirst().first.flatMap({ Int32($0) }) {
                    held[pid, default: 0] += 1
                }
            }
            return held
        }
        func settles(_ expected: [Int32: Int], within seconds: Double) async throws -> (Bool, Double, [Int32: Int]) {
            let started = Date()
            var last: [Int32: Int] = [:]
            while Date().timeIntervalSince(started) < seconds {
                last = try await spread()
                if last == expected { return (true, Date().timeIntervalSince(started), last) }
                try await Task.sleep(for: .milliseconds(100))
            }
            return (false, seconds, last)
        }
        var workers = try (0..<3).map { try start("worker-\($0)") }
        let even = try await settles(Dictionary(uniqueKeysWithValues: workers.map { ($0.pid, 2) }), within: 20)
        #expect(even.0, "3 workers, 6 lanes: 2 each, got \(even.2)")

        let victim = workers.removeFirst()
        victim.kill(SIGKILL)
        _ = await victim.exitStatus()
        try await record(1)
        let afterKill = try await settles(Dictionary(uniqueKeysWithValues: workers.map { ($0.pid, 3) }), within: 15)
        #expect(afterKill.0, "the killed worker's lanes move to the other two: \(afterKill.2)")

        workers.append(try start("worker-3"))
        try await record(2)
        let joined = try await settles(Dictionary(uniqueKeysWithValues: workers.map { ($0.pid, 2) }), within: 20)
        #expect(joined.0, "a fourth worker gets its share: \(joined.2)")
        print(
            "lease balancing: 2 lanes each in \(String(format: "%.1f", even.1)) s; after a SIGKILL 3 each in \(String(format: "%.1f", afterKill.1)) s (lease 2 s); a new worker's share in \(String(format: "%.1f", joined.1)) s"
        )

        let expected = Set((0..<3).flatMap { batch in (0..<120).map { "bal-\(batch)-\($0)" } })
        let delivered = try await eventually(within: .seconds(30)) {
            Set(await emulator.accepted("openmeter").compactMap(\.key)) == expected
        }
        let keys = await emulator.accepted("openmeter").compactMap(\.key)
        #expect(
            delivered && keys.count == expected.count,
            "every id once: \(keys.count) deliveries of \(Set(keys).count) ids, \(expected.count) recorded")
        let status = try await CLI.run(["status", "--spool", ledger])
        #expect(
            status.status == 0 && status.output.contains("Workers: 3 holding 2, 2, 2 lanes"),
            "status shows the spread: \(status.output)")
        for worker in workers { worker.kill(SIGTERM) }
        for worker in workers { #expect(await worker.exitStatus() == 0, "a worker stops cleanly on SIGTERM") }
        await emulator.shutdown()
    }
}

extension FleetCLITests {
    /// The crash test with corrections: one recorder's events are voided and amended (some
    /// twice), in `void` and `amend` processes, while a second recorder records and 3 workers are
    /// SIGKILLed at random on one PostgreSQL ledger. At the end every correction is withheld
    /// (never sent) or applied (cancelled at Stripe), so Stripe holds exactly the ids neither
    /// voided nor amended plus each amend's latest replacement with its quantity, each once;
    /// nothing is queued, and reconcile is clean.
    @Test func voidsWhileWorkersAreKilledAreWithheldOrAppliedAndStripeBillsTheRestOnce() async throws {
        let emulator = try await UsageEmulator.start(faults: ["stripe": .mixed(0.1, timeouts: 0)], seed: 9)
        let ledger = try await PostgresServer.shared().database("fleetvoid")
        let config = try Self.config(emulator, tag: "void")
        let n = 300
        let now = Date().addingTimeInterval(-600)
        func lines(_ range: Range<Int>) -> String {
            range.map { i in
                Self.line(
                    "fv-\(i)", "api_request", i % 2 == 0 ? "acme" : "globex", i % 5 + 1,
                    at: now.addingTimeInterval(Double(i)))
            }.joined(separator: "\n")
        }
        let first = try await CLI.run([
            "import", try CLI.temp("fv-a.ndjson", lines(0..<n)), "-c", config, "--spool", ledger,
        ])
        #expect(first.status == 0, "\(first.output)")
        let env = ProcessInfo.processInfo.environment.merging(CLI.env) { $1 }
        let dir = FileManager.default.temporaryDirectory.appending(path: "ub-fleetvoid-\(UUID().uuidString.prefix(8))")
            .path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        func start(_ args: [String], _ log: String) throws -> ChildProcess {
            try ChildProcess.spawn(
                CLI.binary.path, args, environment: env, directory: CLI.root.path, outputFile: "\(dir)/\(log).log")
        }
        let recorder = try start(
            ["import", try CLI.temp("fv-b.ndjson", lines(n..<(2 * n))), "-c", config, "--spool", ledger], "rec-b")
        let workerArgs = ["worker", "-c", config, "--spool", ledger, "--lease", "2s"]
        var workers = try (0..<3).map { try start(workerArgs, "worker-\($0)") }
        var rng = SeededGenerator(seed: UInt64(Date().timeIntervalSince1970))
        let voided = stride(from: 0, to: n, by: 4).map { "fv-\($0)" }
        let chunks = stride(from: 0, to: voided.count, by: 5).map { Array(voided[$0..<min($0 + 5, voided.count)]) }
        // One amend per round (of events never voided: 2 mod 4); the first three amended again later, superseding the first.
        let amended = stride(from: 2, to: n, by: 28).map { "fv-\($0)" }
        let amends = amended.enumerated().map { ($1, 10 + $0) } + amended.prefix(3).enumerated().map { ($1, 100 + $0) }
        var replacements: [String: (id: String, quantity: Int)] = [:]
        var kills = 0
        for (round, chunk) in chunks.enumerated() {
            let void = try await CLI.run(["void"] + chunk + ["--reason", "fleet", "--spool", ledger])
            #expect(void.status == 0, "\(void.output)")
            if round < amends.count {
                let (id, quantity) = amends[round]
                let amend = try await CLI.run([
                    "amend", id, "--quantity", String(quantity), "--reason", "fleet", "-c", config, "--spool", ledger,
                    "--json",
                ])
                let replacement = JSONValue.parse(Data(amend.output.utf8))?["replacement_id"]?.stringValue
                #expect(amend.status == 0 && replacement != nil, "\(amend.output)")
                if let replacement { replacements[id] = (replacement, quantity) }
            }
            if round % 2 == 1 {
                let victim = Int.random(in: 0..<workers.count, using: &rng)
                workers[victim].kill(SIGKILL)
                _ = await workers[victim].exitStatus()
                kills += 1
                workers[victim] = try start(workerArgs, "worker-\(victim)-\(round)")
            }
            try await Task.sleep(for: .milliseconds(Int.random(in: 20...120, using: &rng)))
        }
        #expect(await recorder.exitStatus() == 0, "the recorder failed")
        for worker in workers { worker.kill(SIGKILL); _ = await worker.exitStatus() }
        let last = try await CLI.run(["worker", "-c", config, "--spool", ledger, "--until-empty", "--lease", "2s"])
        #expect(last.status == 0, "\(last.output)")

        // Stripe holds exactly the events not voided: a withheld void's event never arrived, an
        // applied one's was cancelled (once: a cancel finds it only once), and every other id
        // arrived once.
        #expect(amends.count <= chunks.count && replacements.count == amended.count)
        let usages = await emulator.accepted("stripe")
        let accepted = usages.compactMap(\.key)
        #expect(accepted.count == Set(accepted).count, "an id reached Stripe twice")
        let kept = Set((0..<(2 * n)).map { "fv-\($0)" }).subtracting(voided).subtracting(amended)
        #expect(
            Set(accepted) == kept.union(replacements.values.map(\.id)),
            "Stripe bills exactly the ids neither voided nor amended, and each amend's latest replacement")
        for (id, replacement) in replacements {
            let billed = usages.filter { $0.key == replacement.id }.map(\.quantity)
            #expect(billed == [Decimal(replacement.quantity)], "\(id)'s replacement billed \(billed)")
        }
        let listed = try await CLI.run(["corrections", "--spool", ledger, "--json"])
        var states: [String: String] = [:]
        for correction in JSONValue.parse(Data(listed.output.utf8))?.arrayValue ?? [] {
            if let id = correction["event_id"]?.stringValue {
                states[id] = correction["lanes"]?["stripe/api_request"]?.stringValue
            }
        }
        // Every correction: the voids, the amends, and the voids of the superseded replacements.
        #expect(states.count == voided.count + amended.count + 3, "\(listed.output)")
        // The latest correction of an event amended twice takes back nothing more: its first
        // amend already took the original back.
        var withheld = 0
        for id in states.keys {
            let settled: Set<String> = amended.prefix(3).contains(id) ? ["not needed"] : ["withheld", "applied"]
            #expect(states[id].map(settled.contains) == true, "\(id): \(states[id] ?? "none")")
            if states[id] == "withheld" { withheld += 1 }
        }
        // Reconcile nets the voids on both sides: the ledger counts the events not voided, Stripe
        // holds them.
        let reconcile = try await CLI.run([
            "reconcile", "-c", config, "--spool", ledger, "--from", RFC3339.format(now.addingTimeInterval(-3600)),
            "--to", RFC3339.format(Date().addingTimeInterval(3600)), "--json",
        ])
        #expect(
            reconcile.status == 0 && JSONValue.parse(Data(reconcile.output.utf8))?["clean"] == .bool(true),
            "\(reconcile.output)")
        let status = try await CLI.run(["status", "--spool", ledger, "--json"])
        let lanes = JSONValue.parse(Data(status.output.utf8))?.arrayValue ?? []
        #expect(!lanes.isEmpty && lanes.allSatisfy { $0["queued"] == .number(0) }, "\(status.output)")
        print(
            "fleet void test: \(2 * n) events, \(voided.count) voided in \(chunks.count) void processes, \(amends.count) amends of \(amended.count) events, 3 workers, SIGKILLs=\(kills): \(withheld) withheld, \(states.count - withheld) applied"
        )
        await emulator.shutdown()
    }
}
