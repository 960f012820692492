import ArgumentParser
import Foundation
import UsageBilling
import UsageBillingCurl
import UsageCockpit
import UsageReconciliation
import UsageRouting
import UsageSpool

/// `usage-billing reconcile`: the spool's ledger against what each provider reports.
struct Reconcile: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare what the spool recorded with what each provider reports, per customer, meter and window.",
        usage: "usage-billing reconcile --from <time> --to <time> [<options>]",
        discussion: """
            For each provider (or those in --providers), customer and meter, and each hour or day window in [--from, --to), \
            prints the usage recorded in the spool (dead letters excluded), the total the provider reports through its own \
            read-back API, and the difference; mismatches first. Windows follow each provider: UTC for Stripe, Metronome, \
            OpenMeter, Chargebee and Recurly, the customer's own days for Orb, one total for Paddle's next transaction. \
            A window that ended less than --settle ago and disagrees is "pending"; one whose lane still has queued events \
            says so. Several of your customers billed on one provider id are reported as a mapping problem. \
            Exit 1 on any mismatch beyond --tolerance (or an unreadable provider or a mapping problem), 2 on bad input.

            Examples:
              usage-billing reconcile --from 2026-11-01T00:00:00Z --to 2026-12-01T00:00:00Z
              usage-billing reconcile --from 2026-11-30T00:00:00Z \\
                --to 2026-12-01T00:00:00Z --window hour --providers stripe,orb --json
              usage-billing reconcile --from 2026-11-01T00:00:00Z \\
                --to 2026-12-01T00:00:00Z --html report.html
            """)

    @Option(name: .shortAndLong, help: "The routing config.") var config: String = "routing.yaml"
    @OptionGroup var spoolOption: SpoolOption
    @Option(help: "Start, RFC 3339 (widened down to each provider's window).") var from: String
    @Option(help: "End (exclusive), RFC 3339 (widened up to each provider's window).") var to: String
    @Option(help: "day or hour.") var window: String = "day"
    @Option(help: "Comma-separated provider names from the config (default: every provider in the spool).")
    var providers: String?
    @Option(help: "Comma-separated customer ids (yours, as recorded).") var customers: String?
    @Option(help: "A difference up to this still matches.") var tolerance: String = "0"
    @Option(help: "Windows younger than this are pending, not mismatched (e.g. 30m, 2h).") var settle: String = "0s"
    @Flag(help: "Print JSON.") var json = false
    @Flag(help: "Print CSV.") var csv = false
    @Option(
        help:
            "Also write the report as one self-contained HTML page (charts per provider, mismatches highlighted) to this file."
    )
    var html: String?

    func run() async throws {
        func bad(_ text: String) -> ExitCode {
            printError("error: \(text)")
            return ExitCode(ExitCodes.badInput)
        }
        guard let start = RFC3339.parse(from) else {
            throw bad("--from '\(from)' is not RFC 3339. Fix: e.g. 2026-11-01T00:00:00Z")
        }
        guard let end = RFC3339.parse(to) else {
            throw bad("--to '\(to)' is not RFC 3339. Fix: e.g. 2026-12-01T00:00:00Z")
        }
        guard let granularity = ReadBackGranularity(rawValue: window) else {
            throw bad("--window '\(window)' is not day or hour. Fix: --window day")
        }
        guard let tolerance = Decimal(string: tolerance, locale: Locale(identifier: "en_US_POSIX")), tolerance >= 0
        else {
            throw bad("--tolerance '\(self.tolerance)' is not a number ≥ 0. Fix: e.g. --tolerance 0.5")
        }
        guard let settle = DurationText.parse(settle) else {
            throw bad("--settle '\(self.settle)' is not a duration. Fix: e.g. 30m or 2h")
        }
        guard !(json && csv) else { throw bad("--json and --csv exclude each other. Fix: pick one") }
        guard PostgresLedger.isURL(spoolOption.spool) || FileManager.default.fileExists(atPath: spoolOption.spool)
        else {
            throw bad("no spool at \(spoolOption.spool). Fix: pass --spool with the file the worker delivers from")
        }
        let routing = try loadConfig(config)
        let spool = try await openSpool(spoolOption.spool, readOnly: true)
        let client = try CurlHTTPClient()
        defer { client.shutdown() }
        let options = ReconcileOptions(
            from: start, to: end, granularity: granularity, providers: list(providers), customers: list(customers),
            tolerance: tolerance, settle: settle)
        let report: ReconcileReport
        do {
            report = try await Reconciler(config: routing, spool: spool, client: client).run(options)
        } catch let error as UsageBillingError where error.code == .invalidInput {
            throw bad("\(error)")
        }
        if let html {
            try writePage(report.html(from: start, to: end), to: html, flag: "--html")
            printError("Wrote the report to \(html).")
        }
        if json {
            FileHandle.standardOutput.write(report.json())
            print("")
        } else if csv {
            print(report.csv(), terminator: "")
        } else {
            print(report.table())
        }
        if !report.isClean { throw ExitCode(ExitCodes.someRejected) }
    }

    private func list(_ text: String?) -> [String]? {
        text.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
    }
}
