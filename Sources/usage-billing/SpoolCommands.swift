import ArgumentParser
import Metrics
import Prometheus
import UsageServe
import Foundation
import UsageBillingProviders
import Logging
import ServiceLifecycle
import UsageBilling
import UsageBillingCurl
import UsageRouting
import UsageSpool

/// The config's router, or the error printed and exit 2 (a provider's settings it cannot build).
func makeRouter(_ config: RoutingConfig, client: any HTTPClient) throws -> Router {
    do {
        return try Router(config: config, client: client)
    } catch {
        throw CLIFailure.badInput("\(error)")
    }
}

/// Opens a ledger: a SQLite spool file, or a `postgres://` URL (password from `PGPASSWORD`),
/// printing a clear error and exiting 2 when it is damaged, unreadable or unreachable.
/// `existing`: the command reads or maintains a spool (status, dlq), so a path with no file is a
/// mistake to report, not a new empty spool to create.
func openSpool(
    _ location: String, durability: SpoolDurability = .normal, existing: Bool = false, readOnly: Bool = false
) async throws -> any UsageLedger {
    if (existing || readOnly) && !PostgresLedger.isURL(location) && !FileManager.default.fileExists(atPath: location) {
        throw CLIFailure.badInput(
            "no spool at \(location). Fix: pass --spool with the file events were recorded in (import --spool, worker, or UsagePipeline's spoolPath)"
        )
    }
    do {
        return try await openLedger(location, durability: durability, readOnly: readOnly)
    } catch {
        throw CLIFailure.badInput("\(error)")
    }
}

struct SpoolOption: ParsableArguments {
    @Option(
        help:
            "The spool: a SQLite file, or a ledger shared by a fleet, postgres://USER@HOST:5432/DB?sslmode=require (password in PGPASSWORD)."
    )
    var spool: String = "usage-billing.spool"
}

struct Worker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Deliver what the spool holds: one lane per destination, retries with the same ids, dead letters with reasons.",
        usage: "usage-billing worker [<options>]",
        discussion: """
            Runs until stopped (SIGTERM or SIGINT: the batches in flight finish and are marked, then it exits), or with \
            --until-empty until every queued event is delivered, a duplicate, or a dead letter; it exits 0 only then \
            (3 with a one-line summary when anything recorded is still undelivered, windows it was asked to close included). \
            Lanes keep their names through config edits. It refuses to start (exit 2) while the spool holds undelivered \
            events on a lane the config no longer has, naming each and the fix (`usage-billing lanes reassign` or \
            `lanes drop`). A spool from before lanes had names is mapped to the config's lanes on the first start. \
            Safe to kill at any point: what was marked stays marked, the rest is sent again with the same ids. \
            One worker per spool: while one runs (it holds <spool>.worker-lock), a second exits with an error \
            naming the first one's pid, since two would send the same events twice.

            Examples:
              usage-billing worker -c examples/routing.yaml --spool usage.spool
              usage-billing worker -c routing.yaml --spool usage.spool --until-empty
            """)

    @Option(name: .shortAndLong, help: "The routing config.") var config: String = "routing.yaml"
    @OptionGroup var spoolOption: SpoolOption
    @Flag(help: "Exit once nothing is queued.") var untilEmpty = false
    @Flag(
        help:
            "Emit every aggregation window with new events now, without waiting for it to end (lanes that bill per window)."
    )
    var closeWindows = false
    @Option(
        help:
            "On a shared (postgres://) ledger: how long this worker's hold on a lane lasts unless renewed; a killed worker's lanes move to another after it (1s to 10m)."
    )
    var lease: String = "15s"
    @Option(
        help:
            "Serve GET /metrics (Prometheus text: deliveries, dead letters, hedges, queue depth, latencies) on 127.0.0.1 at this port (0: any free port, printed)."
    )
    var metricsPort: Int?

    func run() async throws {
        guard let leaseTTL = DurationText.parse(lease), leaseTTL >= .seconds(1), leaseTTL <= .seconds(600) else {
            throw CLIFailure.badInput("--lease '\(lease)' is not a duration from 1s to 10m. Fix: e.g. --lease 15s")
        }
        let config = try loadConfig(config)
        let spool = try await openSpool(spoolOption.spool)
        let client = try CurlHTTPClient()
        defer { client.shutdown() }
        let router = try makeRouter(config, client: client)
        var metrics: UsageServices.MetricsEndpoint?
        if let metricsPort {
            guard (0...65_535).contains(metricsPort) else {
                throw CLIFailure.badInput(
                    "--metrics-port \(metricsPort) is out of range. Fix: use 1 to 65535, or 0 for any free port")
            }
            let registry = PrometheusCollectorRegistry()
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
            metrics = .init(port: metricsPort, registry: registry) { port in
                print("usage-billing worker: metrics at http://127.0.0.1:\(port)/metrics")
                fflush(nil)  // every stream: a supervisor or a test reads the port at once
            }
        }
        let group = UsageServices.worker(
            ledger: spool, router: router, leaseTTL: leaseTTL, untilEmpty: untilEmpty, closeWindows: closeWindows,
            metrics: metrics, logger: Logger(label: "usage-billing.worker"))
        do {
            try await group.run()
        } catch {
            // Orphaned lanes, a positional lane that maps to no route, another worker: exit 2.
            throw CLIFailure.from(UsageServices.failure(error))
        }
        let lanes = try await spool.status()
        print(describe(lanes))
        if untilEmpty, let left = undeliveredSummary(lanes, closingWindows: closeWindows) {
            throw CLIFailure.unreachable("\(left)")
        }
    }
}

/// One line on what is recorded and not yet delivered (queued or retrying rows, and with
/// `closingWindows` windows with events not yet billed), or nil when nothing is.
func undeliveredSummary(_ lanes: [LaneStatus], closingWindows: Bool) -> String? {
    let pending = lanes.filter { $0.queued > 0 || (closingWindows && $0.openWindows > 0) }
    guard !pending.isEmpty else { return nil }
    let queued = pending.reduce(0) { $0 + $1.queued }, retrying = pending.reduce(0) { $0 + $1.retrying }
    let windows = closingWindows ? pending.reduce(0) { $0 + $1.openWindows } : 0
    return "not everything recorded was delivered: \(queued) queued (\(retrying) retrying)"
        + (windows > 0 ? " and \(windows) window(s) not yet billed" : "")
        + " on " + pending.map(\.lane).joined(separator: ", ") + "; run the worker again, or see `usage-billing status`"
}

/// `status`'s lines. With `orphans`, a lane among them is marked as one nothing delivers; with
/// `renames`, a positional lane says the lane it becomes at the worker's next start.
func describe(
    _ lanes: [LaneStatus], orphans: Set<String> = [], renames: [String: String] = [:], owners: [String: String] = [:]
) -> String {
    guard !lanes.isEmpty else { return "The spool is empty." }
    let now = Date()
    return lanes.map { s in
        var parts = [
            "queued \(s.queued)", "retrying \(s.retrying)", "delivered \(s.delivered)", "duplicates \(s.duplicates)",
        ]
        let dead = s.dead.values.reduce(0, +)
        parts.append(
            "dead letters \(dead)"
                + (dead > 0
                    ? " (" + s.dead.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
                        + ")" : ""))
        if s.voided > 0 { parts.append("voided \(s.voided) before sending") }
        if let corrections = s.correctionSummary { parts.append("corrections: \(corrections)") }
        if s.aggregated > 0 || s.openWindows > 0 {
            parts.append("aggregated \(s.aggregated) into windows, \(s.openWindows) with events not yet billed")
        }
        if let oldest = s.oldestQueued { parts.append("oldest queued \(Int(now.timeIntervalSince(oldest))) s ago") }
        var name = s.lane
        if orphans.contains(s.lane) {
            name += " (ORPHANED: not in the config; `usage-billing lanes reassign` or `lanes drop`)"
        }
        if let to = renames[s.lane] { name += " (becomes \(to) at the worker's next start)" }
        if let owner = owners[s.lane] { name += " [worker \(owner)]" }
        return "\(name): " + parts.joined(separator: ", ")
    }.joined(separator: "\n") + spread(owners)
}

/// A fleet's spread of lanes over its workers (`Workers: 3 holding 2, 2, 2 lanes`), or nothing
/// when no worker holds a lease.
func spread(_ owners: [String: String]) -> String {
    guard !owners.isEmpty else { return "" }
    var held: [String: Int] = [:]
    for owner in owners.values { held[owner, default: 0] += 1 }
    let lines = held.sorted { $0.key < $1.key }.map { "  \($0.key): \($0.value) lane\($0.value == 1 ? "" : "s")" }
    return
        "\nWorkers: \(held.count) holding \(held.values.sorted(by: >).map(String.init).joined(separator: ", ")) lanes\n"
        + lines.joined(separator: "\n")
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Per lane: queued, retrying, delivered, duplicates, dead letters by reason, oldest queued age.",
        usage: "usage-billing status [<options>]",
        discussion: """
            Lanes are named <provider>/<route id>. With -c, lanes holding undelivered events that the config no longer \
            has are marked ORPHANED (nothing delivers them until `lanes reassign` or `lanes drop`), and the exit \
            status is 1 when there is any.

            Examples:
              usage-billing status --spool usage.spool
              usage-billing status --spool usage.spool -c routing.yaml
              usage-billing status --spool usage.spool --json
              usage-billing status --html status.html --reconcile reconcile.json
            """)
    @OptionGroup var spoolOption: SpoolOption
    @Option(name: .shortAndLong, help: "A routing config: mark the lanes it no longer has.") var config: String?
    @Flag(help: "Print JSON.") var json = false
    @Option(
        help:
            "Also write the status page (lanes, backlog over the last hour, the last reconciliation) to this HTML file."
    )
    var html: String?
    @Option(help: "A reconciliation saved with `reconcile --json`, shown on the --html page.") var reconcile: String?

    func run() async throws {
        if reconcile != nil && html == nil {
            throw CLIFailure.badInput("--reconcile is shown on the status page only. Fix: add --html status.html")
        }
        let saved = try reconcile.map { try savedReconcile($0) }
        let spool = try await openSpool(spoolOption.spool, readOnly: true)
        if let html {
            try writePage(try await statusPage(spool, reconcile: saved).render(), to: html, flag: "--html")
            printError("Wrote the status page to \(html).")
        }
        let lanes = try await spool.status()
        let owners = Dictionary(try await spool.leases().map { ($0.lane, $0.owner) }, uniquingKeysWith: { a, _ in a })
        var check = LaneCheck()
        if let config { check = try await LaneCheck(spool: spool, config: loadConfig(config, needsSecrets: false)) }
        if json {
            print(
                JSONValue.array(
                    lanes.map { s in
                        .object([
                            "lane": .string(s.lane), "queued": .number(Double(s.queued)),
                            "retrying": .number(Double(s.retrying)),
                            "delivered": .number(Double(s.delivered)), "duplicates": .number(Double(s.duplicates)),
                            "aggregated": .number(Double(s.aggregated)), "open_windows": .number(Double(s.openWindows)),
                            "voided": .number(Double(s.voided)),
                            "corrections": .object(
                                Dictionary(
                                    s.corrections.map {
                                        (
                                            $0.key.label.replacingOccurrences(of: " ", with: "_"),
                                            .number(Double($0.value))
                                        )
                                    },
                                    uniquingKeysWith: { a, _ in a })),
                            "dead": .object(s.dead.mapValues { .number(Double($0)) }),
                            "oldest_queued": s.oldestQueued.map { .string(RFC3339.format($0)) } ?? .null,
                            "orphaned": .bool(check.orphans.contains(s.lane)),
                            "worker": owners[s.lane].map { .string($0) } ?? .null,
                        ])
                    }
                ).description)
        } else {
            print(describe(lanes, orphans: check.orphans, renames: check.renames, owners: owners))
            if let problem = check.legacyProblem { printError("error: \(problem)") }
        }
        if !check.orphans.isEmpty || check.legacyProblem != nil { throw ExitCode(ExitCodes.someRejected) }
    }
}

/// Whether a destructive command may go on: `--yes`, or "yes" typed at the terminal. Without a
/// terminal to ask on, exits 2 saying to pass --yes.
func confirmed(_ question: String, action: String, yes: Bool) throws -> Bool {
    if yes { return true }
    guard isatty(STDIN_FILENO) == 1 else {
        throw CLIFailure.badInput("\(action) needs confirmation; pass --yes")
    }
    print("\(question) Type yes: ", terminator: "")
    return readLine() == "yes"
}

struct DLQ: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq",
        abstract: "Dead letters: list, retry, purge, and reject what a provider refused after taking it.",
        subcommands: [DLQList.self, DLQRetry.self, DLQPurge.self, DLQReject.self])
}

struct DLQReject: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reject",
        abstract:
            "Make events a provider refused after taking them dead letters, from its report (Stripe's meter error events).",
        usage: "usage-billing dlq reject --report <file> [<options>]",
        discussion: """
            Stripe answers meter events 200 and validates them later; failures come as a \
            v1.billing.meter.error_report_triggered (or v1.billing.meter.no_meter_found) event. Pass that \
            event's full body (from your webhook, or GET /v2/core/events/{id}): the events it names become \
            dead letters on the provider's lanes with Stripe's code and message, so status, dlq list and \
            reconcile show them. The report names sample events only; the rest it counts are printed. \
            `dlq retry` sends them again under the same identifier, which Stripe may take for a duplicate of \
            the refused event within its 24-hour dedup window: reconcile after retrying.

            Examples:
              usage-billing dlq reject --provider stripe --report evt.json
            """)
    @OptionGroup var spoolOption: SpoolOption
    @Option(
        help:
            "The provider name in your routing config (its lanes are <name>/<route>); default: the one provider kind that has such reports."
    )
    var provider: String?
    @Option(
        name: [.customLong("report"), .customLong("stripe-error-report")],
        help: "A file holding the full body of the provider's report (for Stripe, a meter error event).")
    var report: String

    func run() async throws {
        let offering = ProviderRegistry.standard.names.compactMap(ProviderRegistry.standard.kind).filter {
            $0.tools.rejectionReport != nil
        }
        let name = provider ?? (offering.count == 1 ? offering.first?.name : nil)
        guard let name else {
            throw CLIFailure.badInput(
                "pass --provider: more than one provider kind has rejection reports (\(offering.map(\.name).joined(separator: ", ")))"
            )
        }
        // The provider's name in the config is usually its kind; a renamed one is looked up by kind too.
        let kind = ProviderRegistry.standard.kind(name) ?? (offering.count == 1 ? offering.first : nil)
        guard let parse = kind?.tools.rejectionReport else {
            throw CLIFailure.badInput(
                "--provider \(name) has no rejection reports here. Fix: use one of \(offering.map(\.name).joined(separator: ", "))"
            )
        }
        guard let body = FileManager.default.contents(atPath: report) else {
            throw CLIFailure.badInput(
                "cannot read --report \(report). Fix: save the report's body to a file and pass its path")
        }
        let parsed: RejectionReport
        do {
            parsed = try parse(body)
        } catch {
            throw CLIFailure.badInput("--report \(report): \(error)")
        }
        let changed = try await openSpool(spoolOption.spool, existing: true).rejectDelivered(
            parsed.rejections, provider: name)
        print(
            "\(changed) delivered row(s) of \(parsed.rejections.count) event(s) the report names are now dead letters on \(name)."
        )
        let unnamed = parsed.unattributed.sorted { $0.key < $1.key }
        if !unnamed.isEmpty {
            print(
                "The report counts \(unnamed.map { "\($0.value) \($0.key)" }.joined(separator: ", ")) more it does not name: reconcile \(name) to find their windows."
            )
        }
    }
}

struct DLQList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List dead letters with their reasons.",
        usage: "usage-billing dlq list [<options>]",
        discussion: """
            Examples:
              usage-billing dlq list --spool usage.spool
              usage-billing dlq list --spool usage.spool --reason timestamp_too_old
            """)
    @OptionGroup var spoolOption: SpoolOption
    @Option(help: "Only this reason code.") var reason: String?
    @Option(help: "At most this many.") var limit: Int = 100

    func run() async throws {
        let letters = try await openSpool(spoolOption.spool, readOnly: true).deadLetters(reason: reason, limit: limit)
        if letters.isEmpty { print("No dead letters.") }
        for l in letters { print("\(l.eventID)  \(l.lane)  \(l.code)  after \(l.attempts) attempt(s): \(l.message)") }
    }
}

struct DLQRetry: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retry",
        abstract: "Queue dead letters again (same ids, so nothing bills twice); the worker sends them.",
        discussion: """
            Examples:
              usage-billing dlq retry --spool usage.spool
              usage-billing dlq retry --spool usage.spool --reason rate_limited
            """)
    @OptionGroup var spoolOption: SpoolOption
    @Option(help: "Only this reason code.") var reason: String?

    func run() async throws {
        let count = try await openSpool(spoolOption.spool, existing: true).retryDeadLetters(reason: reason, now: Date())
        print("Queued \(count) dead letter(s) again.")
    }
}

struct DLQPurge: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "purge", abstract: "Delete dead letters for good (asks first, or pass --yes).",
        discussion: """
            Examples:
              usage-billing dlq purge --spool usage.spool --reason unrouted --yes
            """)
    @OptionGroup var spoolOption: SpoolOption
    @Option(help: "Only this reason code.") var reason: String?
    @Flag(help: "Do not ask.") var yes = false

    func run() async throws {
        let spool = try await openSpool(spoolOption.spool, existing: true)
        let count = try await spool.deadLetters(reason: reason, limit: Int.max).count
        guard
            try confirmed(
                "Delete \(count) dead letter(s) for good?", action: "purging \(count) dead letter(s)", yes: yes)
        else {
            print("Nothing deleted.")
            return
        }
        print("Deleted \(try await spool.purgeDeadLetters(reason: reason)) dead letter(s).")
    }
}
