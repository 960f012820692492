import Foundation
import Testing
import UsageBilling
import UsageBillingCurl
import UsageBillingProviders
import UsageEmulator
import UsageRouting
import UsageTestSupport

/// `void` and `amend` through the CLI binary, for every provider of the registry, against the
/// emulator: a void before delivery is never sent, a void after it is applied once, an amend
/// after billing is a revision, a void past the provider's time limit (the emulator's clock moved
/// ahead) is a dead letter with the manual fix, and voiding twice sends nothing more.
@Suite("CLI corrections on every provider", .timeLimit(.minutes(5)))
struct CorrectionProviderCLITests {
    struct Run {
        let emulator: UsageEmulator
        let kind: String
        let config: String
        let spool: String

        func cli(_ args: [String]) async throws -> CLI.Result {
            try await CLI.run(
                args + (args.first == "amend" || args.first == "worker" ? ["-c", config] : []) + [
                    "--spool", spool,
                ])
        }

        /// Runs the worker until nothing is queued, and says so if it failed.
        func drain() async throws {
            let worker = try await cli(["worker", "--until-empty"])
            #expect(worker.status == 0, "\(kind): \(worker.output)")
        }

        /// What the provider bills, by what the emulator holds.
        func net() async -> Decimal { await emulator.accepted(kind).reduce(Decimal(0)) { $0 + $1.quantity } }

        /// The lane's state of `id`'s latest correction, and its note.
        func correction(_ id: String) async throws -> (state: String?, note: String?) {
            let listed = try await cli(["corrections", id, "--json"])
            guard case .array(let all)? = JSONValue.parse(Data(listed.output.utf8)), let last = all.last else {
                Issue.record("\(kind): not a JSON list of corrections: \(listed.output)")
                return (nil, nil)
            }
            let lane = "\(kind)/api_request"
            return (last["lanes"]?[lane]?.stringValue, last["notes"]?[lane]?.stringValue)
        }
    }

    // One provider at a time: each case runs a dozen processes, and eight at once starve the
    // suite's timing-sensitive tests.
    @Test(.serialized, arguments: UsageEmulator.kinds)
    func voidAndAmendThroughTheCLI(_ kind: String) async throws {
        let emulator = try await UsageEmulator.start()
        defer { Task { await emulator.shutdown() } }
        let routes = "  - { events: [api_request], to: \(kind) }\n"
        // A provider billed per window gets one-minute windows, so the test can bill one.
        let probe = try RoutingConfig.parse(
            "version: 1\n" + emulator.providersSection() + "routes:\n" + routes, file: "probe.yaml",
            directory: "/tmp", registry: .standard, environment: [:])
        let client = try CurlHTTPClient()
        let windowed =
            try Router(config: probe, client: client).sink(for: Lane(provider: kind, route: "api_request"))?
            .capabilities.aggregation != nil
        client.shutdown()
        let extra = windowed ? [kind: "aggregate: { window: 1m, grace: 1m }"] : [:]
        let run = Run(
            emulator: emulator, kind: kind,
            config: try CLI.temp(
                "corrections-\(kind).yaml",
                "version: 1\n" + emulator.providersSection(extra: extra) + "routes:\n" + routes),
            spool: FileManager.default.temporaryDirectory.appending(
                path: "ub-cli-corrections-\(kind)-\(UUID().uuidString.prefix(8)).spool"
            ).path)

        let minute = (Date().timeIntervalSince1970 / 60).rounded(.down) * 60 - 120
        let quantities = [2, 3, 5, 7]
        let lines = quantities.enumerated().map { i, q in
            let at = RFC3339.format(Date(timeIntervalSince1970: minute + Double(i)))
            return #"{"id":"fix-\#(i)","name":"api_request","customer":"acme","timestamp":"\#(at)","quantity":\#(q)}"#
        }
        let recorded = try await run.cli(
            ["import", try CLI.temp("corrections-\(kind).ndjson", lines.joined(separator: "\n")), "-c", run.config])
        #expect(recorded.status == 0, "\(kind): \(recorded.output)")

        // Before delivery: withheld, never sent.
        let before = try await run.cli(["void", "fix-0", "--reason", "duplicate from a retry loop"])
        #expect(
            before.status == 0 && before.output.contains("\(kind)/api_request: withheld (never sent)"),
            "\(kind): \(before.output)")
        try await run.drain()
        #expect(await run.net() == 15, "\(kind): only the events not voided are billed")
        #expect(await !emulator.accepted(kind).contains { $0.key == "fix-0" }, "\(kind): fix-0 was sent")

        // After delivery: pending, then applied once (or dead with the manual fix); twice is once.
        let after = try await run.cli(["void", "fix-1", "--reason", "test customer"])
        #expect(after.status == 0 && after.output.contains("pending"), "\(kind): \(after.output)")
        try await run.drain()
        let applied = await run.net() == 12
        let requests = emulator.requests(kind)
        let twice = try await run.cli(["void", "fix-1", "--reason", "again"])
        #expect(twice.status == 0 && twice.output.contains("voided already"), "\(kind): \(twice.output)")
        try await run.drain()
        #expect(emulator.requests(kind) == requests, "\(kind): a second void sent something")
        if !applied {
            // The provider takes nothing back: the ledger says so, with what to do by hand, and
            // the provider still bills what it billed.
            #expect(await run.net() == 15, "\(kind): neither applied nor left alone")
            try await Self.expectManualFix(run, "fix-1")
            return
        }

        // Amend after billing: the provider's total becomes the new quantity (a revision).
        let amend = try await run.cli(["amend", "fix-2", "--quantity", "9", "--reason", "metered in the wrong unit"])
        #expect(amend.status == 0 && amend.output.contains("Amended fix-2 to 9"), "\(kind): \(amend.output)")
        try await run.drain()
        #expect(await run.net() == 16, "\(kind): fix-2 billed as 9, not 5")

        // Past the provider's time limit: either still applied (a provider without one) or dead
        // with the manual fix, the provider's total unchanged. Never applied in the ledger only.
        emulator.advanceClock(by: .seconds(70 * 86_400))
        let late = try await run.cli(["void", "fix-3", "--reason", "found at month end"])
        #expect(late.status == 0, "\(kind): \(late.output)")
        try await run.drain()
        let net = await run.net()
        if net != 9 {
            #expect(net == 16, "\(kind): the late void was half applied: \(net)")
            try await Self.expectManualFix(run, "fix-3")
        } else {
            #expect(try await run.correction("fix-3").state == "applied", "\(kind)")
        }
    }

    /// `id`'s void did not reach the provider: the correction or the window's revision is dead,
    /// and what the operator reads says what to do by hand.
    static func expectManualFix(_ run: Run, _ id: String) async throws {
        let (state, note) = try await run.correction(id)
        if state == "dead" {
            #expect(
                note?.contains("By hand") == true || note?.contains("by hand") == true, "\(run.kind): \(note ?? "")")
            return
        }
        // Folded into a window: the window's lowered revision is the dead letter, and the
        // correction's note says where to look.
        #expect(state == "applied", "\(run.kind): \(state ?? "no state")")
        #expect(note?.contains("folded") == true && note?.contains("dlq list") == true, "\(run.kind): \(note ?? "")")
        let letters = try await run.cli(["dlq", "list"])
        #expect(
            letters.output.contains("By hand") || letters.output.contains("by hand"), "\(run.kind): \(letters.output)")
    }
}
