import ArgumentParser
import Foundation
import UsageBilling
import UsageCockpit
import UsageDemo
import UsageRouting
import UsageSpool

/// `usage-billing demo`: the whole pipeline — routing config, spool, worker, libcurl — against
/// the built-in emulator of all seven providers, then each provider's totals read back through
/// its own API and compared with what was recorded.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run examples/routing.yaml against the built-in provider emulator and check every provider's totals.",
        usage: "usage-billing demo [<options>]",
        discussion: """
            Starts the emulator of Stripe, Orb, Metronome, OpenMeter, Chargebee, Recurly and Paddle on 127.0.0.1 (no \
            account, no network), loads the routing config with placeholder keys and the emulator's endpoints, records the \
            example events into a spool, records them all again (as a retrying client would: nothing may be billed twice), \
            and drains the spool with the delivery worker while the emulator injects 429s, 5xx, resets and lost responses. \
            Then it reads each provider's totals back through that provider's own read-back API and prints them beside \
            what was recorded, per provider, customer and meter. Exits 0 only if they all agree.

            Examples:
              usage-billing demo
              usage-billing demo --faults 0 --seed 7
              usage-billing demo -c my-routing.yaml --events my-events.ndjson
            """)

    @Option(name: .shortAndLong, help: "The routing config.") var config: String = "examples/routing.yaml"
    @Option(help: "NDJSON file of events ({id, name, customer, timestamp, quantity, properties}).") var events: String =
        "examples/events.ndjson"
    @Option(help: "Share of write requests that fail (0…0.5), spread over 429, 5xx, resets and lost responses.")
    var faults: Double = 0.15
    @Option(help: "Seed for the injected faults (the same seed fails the same requests).") var seed: UInt64 = 42
    @Option(help: "Where to write the reconciliation as an HTML page.") var report: String = "demo-report.html"

    func run() async throws {
        guard (0...0.5).contains(faults) else {
            throw CLIFailure.badInput("--faults \(faults) is out of range. Fix: use 0 to 0.5")
        }
        let loaded: [UsageEvent]
        do {
            loaded = try DemoRun.events(at: events)
        } catch {
            throw CLIFailure.badInput("\(error)")
        }
        guard !loaded.isEmpty else {
            throw CLIFailure.badInput("\(events) holds no events; add one JSON event per line")
        }
        let routing = try Self.configWithPlaceholderKeys(config)
        let outcome = try await DemoRun.run(config: routing, events: loaded, faults: faults, seed: seed) { print($0) }
        print("\nSpool drained in \(String(format: "%.2f", outcome.elapsed.seconds)) s:")
        print(describe(outcome.lanes).split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        if let voided = outcome.voided {
            print(
                "\nVoided \(voided.eventID) after delivery (\(voided.reason)); the worker took it back at each provider its own way:"
            )
            for (lane, state) in voided.lanes.sorted(by: { $0.key < $1.key }) {
                print("  \(lane): \(state.label)\(voided.notes[lane].map { " (\($0))" } ?? "")")
            }
        }
        if let amended = outcome.amended {
            let c = amended.correction
            print(
                "Amended \(c.eventID) to \(DecimalFormat.plain(amended.replacement.quantity)) (\(c.reason)): taken back as a void is, and its replacement \(amended.replacement.id) delivered:"
            )
            for (lane, state) in c.lanes.sorted(by: { $0.key < $1.key }) {
                print("  \(lane): \(state.label)\(c.notes[lane].map { " (\($0))" } ?? "")")
            }
        }
        print(
            "The emulator answered \(outcome.requests.values.reduce(0, +)) requests ("
                + outcome.requests.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
                + ") and injected \(outcome.injected) failures.")
        print(
            "\nRecorded (spool ledger) against reported (each provider's read-back API), per provider customer, meter and UTC day:"
        )
        print(outcome.report.table().split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        for (provider, totals) in outcome.lost.sorted(by: { $0.key < $1.key }) {
            print(
                "  \(provider): the events route \(DecimalFormat.plain(totals.expected)) to it, the spool's ledger holds \(DecimalFormat.plain(totals.inLedger))"
            )
        }
        try writePage(
            outcome.report.html(from: outcome.from, to: outcome.to, title: "UsageBilling demo: reconciliation"),
            to: report, flag: "--report")
        print(
            "\nThe report as a page: \(URL(fileURLWithPath: report).standardizedFileURL.path) (open it in a browser).")
        guard outcome.passed else {
            print(
                "\nFAILED: \(outcome.report.mismatches.count) total(s) disagree, \(outcome.lost.count) provider ledger(s) differ from the events, \(outcome.deadLetters) dead letter(s), \(outcome.queued) still queued\(([outcome.voided, outcome.amended?.correction].compactMap { $0 }.allSatisfy { $0.lanes.values.allSatisfy { $0 == .applied } } ? "" : ", a correction not applied everywhere"))."
            )
            throw ExitCode(ExitCodes.someRejected)
        }
        print(
            "\nOK: every provider reports exactly what was recorded (\(outcome.report.rows.count) totals), through \(outcome.injected) injected failures, and nothing was billed twice."
        )
    }

    /// The routing config at `path` with placeholder keys (``DemoRun/configWithPlaceholderKeys(_:)``);
    /// a bad config is a ``CLIFailure`` naming every problem (exit 2).
    static func configWithPlaceholderKeys(_ path: String) throws -> RoutingConfig {
        do {
            let config = try DemoRun.configWithPlaceholderKeys(path)
            for warning in config.warnings { printError("warning: \(warning)") }
            return config
        } catch let issues as ConfigIssues {
            throw CLIFailure(issues, closing: nil)
        } catch {
            throw CLIFailure.badInput("\(error)")
        }
    }
}
