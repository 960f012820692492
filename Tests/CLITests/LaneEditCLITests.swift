import Foundation
import Testing
import UsageBilling
import UsageBillingTesting
import UsageEmulator
import UsageSpool
import UsageTestSupport

/// Events recorded under one routing config, then the config edited while they sit in the spool,
/// then the worker: the real binary, a real spool, and the emulator's ledger as the judge.
@Suite("Config edits while events are queued", .timeLimit(.minutes(3)))
struct LaneEditCLITests {
    /// An edit of the routing config, and what must become of the 3 `api_request` and 3
    /// `storage_gb` events recorded before it.
    struct Edit: Sendable, CustomTestStringConvertible {
        var name: String
        /// Config B's providers and routes; `{stripe}`, `{openmeter}`, `{orb}` are the emulator's endpoints.
        var routes: String
        var providers = Self.providers
        /// Where each kind of event must end: provider kind and meter.
        var apiRequests: (kind: String, meter: String)? = ("stripe", "api_request")
        var storage: (kind: String, meter: String)? = ("openmeter", "storage_gb")
        /// The worker refuses these lanes; the commands that resolve it, then the worker delivers.
        var orphaned: [String] = []
        /// The lane of the same provider kind the fix suggests moving them to; nil: only `lanes drop`.
        var suggested: String?
        var resolve: [[String]] = []
        var testDescription: String { name }

        static let providers = """
              stripe: { kind: stripe, secret_key: ${STRIPE_SECRET_KEY}, endpoint: "{stripe}" }
              openmeter: { kind: openmeter, api_key: ${OPENMETER_TOKEN}, endpoint: "{openmeter}" }
              orb: { kind: orb, api_key: ${ORB_API_KEY}, endpoint: "{orb}" }
            """
        static let original = """
              - { events: [api_request], to: stripe }
              - { events: ["storage_*"], to: openmeter }
            """
    }

    static let tomorrow = RFC3339.format(Date().addingTimeInterval(86_400))
    static let edits: [Edit] = [
        Edit(
            name: "swap two routes",
            routes: """
                  - { events: ["storage_*"], to: openmeter }
                  - { events: [api_request], to: stripe }
                """),
        Edit(
            name: "insert a route first",
            routes: """
                  - { events: [gpu_seconds], to: orb }
                  - { events: [api_request], to: stripe }
                  - { events: ["storage_*"], to: openmeter }
                """),
        Edit(
            name: "add a cutover pair",
            routes: """
                  - { events: ["storage_*"], to: openmeter }
                  - { events: [api_request], to: orb, from: "\(tomorrow)" }
                  - { events: [api_request], to: stripe, shadow: orb, until: "\(tomorrow)" }
                """),
        Edit(
            name: "change a route's event_name override",
            routes: """
                  - { events: [api_request], to: stripe, stripe: { event_name: api_calls } }
                  - { events: ["storage_*"], to: openmeter }
                """, apiRequests: ("stripe", "api_calls")),
        Edit(
            name: "rename a provider key",
            routes: """
                  - { events: [api_request], to: stripe_live }
                  - { events: ["storage_*"], to: openmeter }
                """,
            providers: """
                  stripe_live: { kind: stripe, secret_key: ${STRIPE_SECRET_KEY}, endpoint: "{stripe}" }
                  openmeter: { kind: openmeter, api_key: ${OPENMETER_TOKEN}, endpoint: "{openmeter}" }
                """, orphaned: ["stripe/api_request"], suggested: "stripe_live/api_request",
            resolve: [["lanes", "reassign", "stripe/api_request", "stripe_live/api_request"]]),
        Edit(
            name: "remove a route",
            routes: """
                  - { events: [api_request], to: stripe }
                """, storage: nil, orphaned: ["openmeter/storage_*"],
            resolve: [["lanes", "drop", "openmeter/storage_*", "--yes"]]),
        Edit(
            name: "remove a route, move its events to another provider",
            routes: """
                  - { events: [api_request], to: stripe }
                  - { id: storage, events: ["storage_*"], to: orb }
                """, storage: ("orb", "storage_gb"), orphaned: ["openmeter/storage_*"],
            resolve: [["lanes", "reassign", "openmeter/storage_*", "orb/storage", "--to-other-provider"]]),
    ]

    static func config(_ providers: String, _ routes: String, _ emulator: UsageEmulator, tag: String) throws -> String {
        var text = "version: 1\nproviders:\n\(providers)\nroutes:\n\(routes)\n"
        for kind in ["stripe", "openmeter", "orb"] {
            text = text.replacingOccurrences(of: "{\(kind)}", with: emulator.endpoints[kind]?["endpoint"] ?? "")
        }
        return try CLI.temp("\(tag).yaml", text)
    }

    @Test(arguments: edits)
    func eventsRecordedBeforeAnEditAreDeliveredAfterIt(_ edit: Edit) async throws {
        let emulator = try await UsageEmulator.start()
        let a = try Self.config(Edit.providers, Edit.original, emulator, tag: "edit-a")
        let b = try Self.config(edit.providers, edit.routes, emulator, tag: "edit-b")
        let spool = FileManager.default.temporaryDirectory.appending(path: "ub-cli-edit-\(UUID().uuidString).spool")
            .path
        let now = Date()
        let lines = (0..<6).map { i in
            #"{"id":"edit-\#(i)","name":"\#(i < 3 ? "api_request" : "storage_gb")","customer":"acme","timestamp":"\#(RFC3339.format(now.addingTimeInterval(-Double(i) - 60)))","quantity":\#(i + 1)}"#
        }
        let events = try CLI.temp("edit.ndjson", lines.joined(separator: "\n"))
        let recorded = try await CLI.run(["import", events, "-c", a, "--spool", spool])
        #expect(recorded.status == 0, "\(recorded.output)")

        if !edit.orphaned.isEmpty {
            // Refused loudly, before anything is sent: the worker, config check and status all say so.
            let refused = try await CLI.run(["worker", "-c", b, "--spool", spool, "--until-empty"])
            #expect(refused.status == 2, "\(refused.output)")
            for lane in edit.orphaned {
                #expect(
                    refused.output.contains("\(lane): 3 queued") && refused.output.contains("lanes drop \(lane)"),
                    "\(refused.output)")
                if let target = edit.suggested {
                    #expect(refused.output.contains("lanes reassign \(lane) \(target)"), "\(refused.output)")
                } else {
                    #expect(
                        !refused.output.contains("lanes reassign"),
                        "no lane of the same provider kind: no move suggested: \(refused.output)")
                }
            }
            #expect(
                emulator.requests("stripe") + emulator.requests("openmeter") + emulator.requests("orb") == 0,
                "nothing was sent")
            let check = try await CLI.run(["config", "check", b, "--spool", spool])
            #expect(check.status == 2 && edit.orphaned.allSatisfy { check.output.contains($0) }, "\(check.output)")
            let status = try await CLI.run(["status", "--spool", spool, "-c", b])
            #expect(
                status.status == 1 && edit.orphaned.allSatisfy { status.output.contains("\($0) (ORPHANED") },
                "\(status.output)")
            for command in edit.resolve {
                let r = try await CLI.run(command + (command[1] == "reassign" ? ["-c", b] : []) + ["--spool", spool])
                #expect(r.status == 0, "\(command): \(r.output)")
            }
        } else {
            let check = try await CLI.run(["config", "check", b, "--spool", spool])
            #expect(check.status == 0, "\(check.output)")
        }
        let worker = try await CLI.run(["worker", "-c", b, "--spool", spool, "--until-empty"])
        #expect(worker.status == 0, "\(worker.output)")

        // The emulator's ledger: each event once, at the provider and meter the edit calls for.
        var seen: [String: (kind: String, meter: String)] = [:]
        for kind in ["stripe", "openmeter", "orb"] {
            for usage in await emulator.accepted(kind) {
                guard let key = usage.key else { continue }
                #expect(seen[key] == nil, "\(key) billed twice")
                seen[key] = (kind, usage.meter)
            }
        }
        for i in 0..<6 {
            let expected = i < 3 ? edit.apiRequests : edit.storage
            let got = seen["edit-\(i)"]
            #expect(
                got?.kind == expected?.kind && got?.meter == expected?.meter,
                "edit-\(i): \(String(describing: got)), expected \(String(describing: expected))")
        }
        if edit.storage == nil {
            let letters = try await CLI.run(["dlq", "list", "--spool", spool, "--reason", "lane_removed"])
            #expect(
                (3..<6).allSatisfy { letters.output.contains("edit-\($0)  openmeter/storage_*  lane_removed") },
                "\(letters.output)")
        }
        await emulator.shutdown()
    }

    /// A void recorded under one config and still pending at the provider when the config is
    /// edited: applied after the edit wherever the event's lane lives on (its provider renamed:
    /// the void follows the rows `lanes reassign` moves). A lane removed with a void pending on it
    /// is refused like a lane with queued events, and `lanes drop` leaves the void dead with the
    /// manual fix: never silently left behind.
    @Test(.serialized, arguments: edits)
    func aVoidPendingAcrossAnEditIsAppliedOrRefusedLoudly(_ edit: Edit) async throws {
        let emulator = try await UsageEmulator.start()
        let a = try Self.config(Edit.providers, Edit.original, emulator, tag: "void-edit-a")
        let b = try Self.config(edit.providers, edit.routes, emulator, tag: "void-edit-b")
        let spool = FileManager.default.temporaryDirectory.appending(
            path: "ub-cli-void-edit-\(UUID().uuidString).spool"
        )
        .path
        let now = Date()
        let lines = (0..<6).map { i in
            #"{"id":"ve-\#(i)","name":"\#(i < 3 ? "api_request" : "storage_gb")","customer":"acme","timestamp":"\#(RFC3339.format(now.addingTimeInterval(-Double(i) - 60)))","quantity":\#(i + 1)}"#
        }
        #expect(
            try await CLI.run([
                "import", try CLI.temp("ve.ndjson", lines.joined(separator: "\n")), "-c", a, "--spool", spool,
            ]).status == 0)
        #expect(try await CLI.run(["worker", "-c", a, "--spool", spool, "--until-empty"]).status == 0)
        let voided = try await CLI.run(["void", "ve-1", "ve-4", "--reason", "test customer", "--spool", spool])
        #expect(voided.status == 0 && voided.output.contains("pending"), "\(voided.output)")

        // The storage lane survives every edit but the removals; its pending void then refuses.
        let stranded = edit.storage == nil || edit.storage?.kind != "openmeter"
        let orphaned = edit.orphaned.filter { $0.hasPrefix("stripe/") } + (stranded ? ["openmeter/storage_*"] : [])
        if !orphaned.isEmpty {
            let refused = try await CLI.run(["worker", "-c", b, "--spool", spool, "--until-empty"])
            #expect(
                refused.status == 2 && orphaned.allSatisfy { refused.output.contains("\($0): 0 queued") }
                    && refused.output.contains("1 correction(s) not yet applied at the provider"), "\(refused.output)")
            let status = try await CLI.run(["status", "--spool", spool, "-c", b])
            #expect(status.status == 1 && orphaned.allSatisfy { status.output.contains("\($0) (ORPHANED") })
            for lane in orphaned {
                let command =
                    lane.hasPrefix("stripe/")
                    ? ["lanes", "reassign", lane, edit.suggested ?? "", "-c", b] : ["lanes", "drop", lane, "--yes"]
                let resolved = try await CLI.run(command + ["--spool", spool])
                #expect(resolved.status == 0, "\(command): \(resolved.output)")
                if command[1] == "drop" {
                    #expect(
                        resolved.output.contains("1 correction(s) not yet applied there are dead"), "\(resolved.output)"
                    )
                }
            }
        }
        let worker = try await CLI.run(["worker", "-c", b, "--spool", spool, "--until-empty"])
        #expect(worker.status == 0, "\(worker.output)")
        let cancelled = await !emulator.accepted("stripe").contains { $0.key == "ve-1" }
        if edit.apiRequests?.meter != "api_request" {
            // The cancel goes out under the lane's current event name, and Stripe ignores a
            // cancel for a name the identifier was not sent under (README: Fixing wrong usage).
            withKnownIssue("a void is sent with the route's event name as the config has it now") {
                #expect(cancelled, "the void reached Stripe")
            }
        } else {
            #expect(cancelled, "the void reached Stripe")
        }
        let storage = try await CLI.run(["corrections", "ve-4", "--spool", spool])
        if stranded {
            #expect(storage.output.contains("dead") && storage.output.contains("By hand"), "\(storage.output)")
            #expect(await emulator.accepted("openmeter").reduce(Decimal(0)) { $0 + $1.quantity } == 15)
        } else {
            #expect(storage.output.contains("applied"), "\(storage.output)")
            #expect(await emulator.accepted("openmeter").reduce(Decimal(0)) { $0 + $1.quantity } == 10)
        }
        await emulator.shutdown()
    }

    /// `--until-empty` with rows the worker could not deliver (a provider that answers 503 to
    /// everything, retried until the run is stopped) exits non-zero with a one-line summary.
    @Test func untilEmptyNeverExitsZeroWithRowsLeft() async throws {
        let emulator = try await UsageEmulator.start()
        var down = FaultPlan()
        down.unavailable = 1
        emulator.setFaults("openmeter", down)
        let config = try Self.config(Edit.providers, Edit.original, emulator, tag: "left")
        let spool = FileManager.default.temporaryDirectory.appending(path: "ub-cli-left-\(UUID().uuidString).spool")
            .path
        let events = try CLI.temp(
            "left.ndjson",
            #"{"id":"left-1","name":"storage_gb","customer":"acme","timestamp":"\#(RFC3339.format(Date()))","quantity":1}"#
        )
        let recorded = try await CLI.run(["import", events, "-c", config, "--spool", spool])
        #expect(recorded.status == 0, "\(recorded.output)")
        let worker = try ChildProcess.spawn(
            CLI.binary.path, ["worker", "-c", config, "--spool", spool, "--until-empty"],
            environment: ProcessInfo.processInfo.environment.merging(CLI.env) { $1 }, outputFile: spool + ".log")
        #expect(try await eventually { emulator.requests("openmeter") > 0 })
        worker.kill(SIGTERM)  // graceful: the lane stops with its row still queued
        let status = await worker.exitStatus()
        let log = (try? String(contentsOfFile: spool + ".log", encoding: .utf8)) ?? ""
        #expect(status == 3, "\(log)")
        #expect(
            log.contains("not everything recorded was delivered: 1 queued") && log.contains("openmeter/storage_*"),
            "\(log)")
        await emulator.shutdown()
    }
}

@Suite("Spools from before lanes had names", .timeLimit(.minutes(2)))
struct LegacyLaneCLITests {
    /// A spool as the previous release wrote it (positional lanes `stripe#0`, `openmeter#1`, rows
    /// delivered, dead and queued) keeps every row and delivers the queued ones after the upgrade,
    /// under the config it was recorded with; a config whose routes were edited since refuses and
    /// changes nothing.
    @Test func positionalLanesAreRenamedByTheConfigTheyWereRecordedWith() async throws {
        let emulator = try await UsageEmulator.start()
        let a = try LaneEditCLITests.config(
            LaneEditCLITests.Edit.providers, LaneEditCLITests.Edit.original, emulator, tag: "legacy-a")
        let swapped = try LaneEditCLITests.config(
            LaneEditCLITests.Edit.providers,
            """
              - { events: ["storage_*"], to: openmeter }
              - { events: [api_request], to: stripe }
            """, emulator, tag: "legacy-b")
        let path = FileManager.default.temporaryDirectory.appending(path: "ub-cli-legacy-\(UUID().uuidString).spool")
            .path
        let now = Date()
        do {
            let spool = try Spool(path: path)
            let event = { (i: Int) in
                UsageEvent(
                    id: "old-\(i)", name: i < 4 ? "api_request" : "storage_gb", customer: "acme",
                    timestamp: now.addingTimeInterval(-Double(i) - 60), quantity: 1)
            }
            try await spool.record(
                (0..<8).map { RecordEntry(event: event($0), lanes: [$0 < 4 ? "stripe#0" : "openmeter#1"]) })
            let first = try await spool.due(lane: "stripe#0", limit: 2, now: now)
            try await spool.mark(
                [
                    (first[0].seq, .delivered),
                    (first[1].seq, .dead(RejectionReason(code: "http_400", message: "refused", origin: .provider))),
                ], now: now)
        }
        let refused = try await CLI.run(["worker", "-c", swapped, "--spool", path, "--until-empty"])
        #expect(
            refused.status == 2 && refused.output.contains("stripe#0")
                && refused.output.contains("does not send to stripe")
                && refused.output.contains("openmeter#1") && refused.output.contains("does not send to openmeter"),
            "\(refused.output)")
        #expect(try Spool(path: path).laneNames() == ["openmeter#1", "stripe#0"], "a refused mapping changes nothing")

        let check = try await CLI.run(["config", "check", a, "--spool", path])
        #expect(
            check.status == 0 && check.output.contains("positional lane stripe#0 becomes stripe/api_request"),
            "\(check.output)")
        let worker = try await CLI.run(["worker", "-c", a, "--spool", path, "--until-empty"])
        #expect(worker.status == 0, "\(worker.output)")
        let lanes = Dictionary(uniqueKeysWithValues: try Spool(path: path).status().map { ($0.lane, $0) })
        #expect(lanes.keys.sorted() == ["openmeter/storage_*", "stripe/api_request"])
        #expect(
            lanes["stripe/api_request"]?.delivered == 3 && lanes["stripe/api_request"]?.dead == ["http_400": 1]
                && lanes["stripe/api_request"]?.queued == 0)
        #expect(lanes["openmeter/storage_*"]?.delivered == 4 && lanes["openmeter/storage_*"]?.queued == 0)
        let stripe = Set(await emulator.accepted("stripe").compactMap(\.key)),
            openMeter = Set(await emulator.accepted("openmeter").compactMap(\.key))
        #expect(
            stripe == ["old-2", "old-3"] && openMeter == ["old-4", "old-5", "old-6", "old-7"], "\(stripe) \(openMeter)")
        await emulator.shutdown()
    }
}
