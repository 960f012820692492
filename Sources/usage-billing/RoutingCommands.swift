import ArgumentParser
import Foundation
import UsageBilling
import UsageBillingCurl
import UsageBillingProviders
import UsageRouting
import UsageServe
import UsageSpool

/// Loads a config; an invalid one is a `CLIFailure` naming every issue (exit 2). `needsSecrets`: false
/// for commands that send nothing (recording, status, lane tools), which then run without the
/// providers' secrets in their environment.
func loadConfig(_ path: String, needsSecrets: Bool = true) throws -> RoutingConfig {
    do {
        let config = try RoutingConfig.load(path: path, registry: .standard, secretsNeeded: needsSecrets)
        for warning in config.warnings { printError("warning: \(warning)") }
        return config
    } catch let issues as ConfigIssues {
        throw CLIFailure(issues, closing: "\(issues.issues.count) problem(s) in \(path); nothing was sent.")
    }
}

func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// The exit code for a summary: 2 bad input, 3 undelivered, 1 rejected, 0 ok.
func summaryExitCode(_ summary: ImportSummary) -> Int32 {
    if summary.badLines > 0 { return ExitCodes.badInput }
    if summary.anyUndelivered { return ExitCodes.unreachable }
    if summary.anyRejected { return ExitCodes.someRejected }
    return ExitCodes.ok
}

struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Work with routing config files.", subcommands: [ConfigCheck.self])
}

struct ConfigCheck: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate a routing config and print the resolved routing table, secrets masked.",
        discussion: """
            Every problem is listed with its file, line, key and fix; exit 2 if there is any. \
            Environment variables (${VAR}) must be set, since they are resolved and checked. \
            With --spool, also checks the config against what the spool holds before a deploy: every lane with \
            undelivered events must be one of the config's (exit 2 naming each that is not, and the fix).

            Examples:
              usage-billing config check examples/routing.yaml
              usage-billing config check routing.yaml --spool usage.spool
              STRIPE_SECRET_KEY=sk_test_… usage-billing config check routing.yaml
            """)

    @Argument(help: "The routing config (YAML or JSON).")
    var file: String
    @Option(help: "A spool to check the config's lanes against.") var spool: String?

    func run() async throws {
        let config = try loadConfig(file)
        // OK is said only once everything asked about is: the file, its serve section, and the
        // spool when given.
        var serveLine: String?
        if config.serve != nil {
            do {
                let settings = try ServeSettings.from(config, doors: IngestDoors.standard, requireVariables: false)
                let apis = settings.compat.keys.sorted().map { "/\($0)" }
                serveLine =
                    "Serve: POST /v1/events\(apis.isEmpty ? "" : ", provider APIs " + apis.joined(separator: ", ")); at most \(settings.maxEventsPerRequest) events per request"
            } catch let issues as ConfigIssues {
                throw CLIFailure(
                    issues,
                    closing:
                        "\(issues.issues.count) problem(s) in the serve section of \(file); `serve` would not start with it."
                )
            }
        }
        var spoolLines: [String] = []
        if let spoolPath = spool {
            let spool = try await openSpool(spoolPath, existing: true)
            let check = try await LaneCheck(spool: spool, config: config)
            let problems =
                (check.legacyProblem.map { ["\($0)"] } ?? [])
                + (check.orphaned.isEmpty
                    ? [] : ["\(DeliveryWorker.orphanError(check.orphaned, config: config, spoolPath: spoolPath))"])
            if !problems.isEmpty {
                throw CLIFailure(
                    messages: problems,
                    closing:
                        "\(file) is valid on its own, but not for the spool \(spoolPath): a worker with it would refuse to start (see above).",
                    exitCode: ExitCodes.badInput)
            }
            for (from, to) in check.renames.sorted(by: { $0.key < $1.key }) {
                spoolLines.append("\(spoolPath): positional lane \(from) becomes \(to) at the worker's next start")
            }
            spoolLines.append("\(spoolPath): every lane with undelivered events is in the config")
        }
        print("\(file): OK")
        print(config.describe())
        if let serveLine { print(serveLine) }
        for (path, name) in config.unsetServeVariables.sorted(by: { $0.key < $1.key }) {
            print("Note: \(path) comes from \(name), which is not set here; `serve` needs it.")
        }
        for line in spoolLines { print(line) }
    }
}

/// Options shared by the commands that send.
struct SendOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "The routing config (YAML or JSON).")
    var config: String = "routing.yaml"

    @Flag(help: "Send nothing: show the HTTP requests that would go out, secrets masked.")
    var dryRun = false

    @Option(help: "Attempts per event before giving up (retries use the same ids).")
    var maxAttempts: Int = 6

    func validate() throws {
        guard maxAttempts >= 1 else { throw ValidationError("--max-attempts must be at least 1") }
    }
}

struct Send: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send one event built from flags.",
        usage: "usage-billing send --name <name> --customer <id> [<options>]",
        discussion: """
            Examples:
              usage-billing send --name api_request --customer acme --quantity 150
              usage-billing send --name api_request --customer acme --dry-run
            """)

    @OptionGroup var options: SendOptions
    @Option(help: "The event name.") var name: String
    @Option(help: "Your customer id.") var customer: String
    @Option(help: "The quantity (a decimal number).") var quantity: String = "1"
    @Option(help: "When it happened, RFC 3339 (default: now).") var timestamp: String?
    @Option(help: "The event id (default: a new UUIDv7). Reuse it to resend safely.") var id: String?
    @Option(name: .customLong("property"), help: "A property as key=value (repeatable).") var properties: [String] = []

    /// `text` as one shell word.
    static func shellQuoted(_ text: String) -> String {
        text.allSatisfy { $0.isLetter || $0.isNumber || "-_./:=+@,".contains($0) } && !text.isEmpty
            ? text : "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    func run() async throws {
        guard let q = Decimal(string: quantity, locale: Locale(identifier: "en_US_POSIX")), !q.isNaN else {
            throw CLIFailure.badInput("--quantity '\(quantity)' is not a decimal number; write e.g. 150 or 0.25")
        }
        var date = Date()
        if let timestamp {
            guard let parsed = RFC3339.parse(timestamp) else {
                throw CLIFailure.badInput("--timestamp '\(timestamp)' is not RFC 3339; write e.g. 2026-11-25T12:03:00Z")
            }
            date = parsed
        }
        var props: [String: UsageValue] = [:]
        for p in properties {
            guard let eq = p.firstIndex(of: "="), eq != p.startIndex else {
                throw CLIFailure.badInput("--property '\(p)' is not key=value")
            }
            props[String(p[..<eq])] = .string(String(p[p.index(after: eq)...]))
        }
        let event = UsageEvent(
            id: id ?? EventID.generate(), name: name, customer: customer, timestamp: date, quantity: q,
            properties: props)
        let summary = try await deliver([event], options: options, showRequests: 20)
        print(summary.describe())
        if summary.unfinishedCount > 0 {
            // The same event again, id included: what a safe resend is.
            var line = [
                "usage-billing", "send", "-c", options.config, "--name", name, "--customer", customer, "--quantity",
                DecimalFormat.plain(q),
                "--timestamp", RFC3339.format(date), "--id", event.id,
            ]
            for p in properties { line += ["--property", p] }
            print("Event id \(event.id). To send it again: " + line.map(Self.shellQuoted).joined(separator: " "))
        }
        throw ExitCode(summaryExitCode(summary))
    }
}

struct Import: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send every event of an NDJSON or CSV file, streamed (constant memory).",
        usage: "usage-billing import <file> [<options>]",
        discussion: """
            NDJSON: one event per line ({"id","name","customer","timestamp","quantity","properties"}). \
            CSV: a header with name, customer, timestamp and optionally id, quantity; other columns become properties. \
            Events keep their ids, so running the same import twice bills nothing twice. \
            An event without an id gets one derived from its content (name, customer, timestamp, quantity, \
            properties) and its occurrence among identical events of the file, so a re-import finds the same ids \
            and two identical lines stay two events; the summary says how many got one. With --require-ids such \
            lines are refused instead. \
            Prints a summary per destination: accepted, duplicates, rejected by reason. With --spool: how many \
            were recorded, already recorded, refused (each with its line, name and fix) and dead-lettered; exit 1 \
            if any was refused or dead-lettered, 2 on bad lines (the valid events are recorded either way).

            Examples:
              usage-billing import events.ndjson -c routing.yaml --dry-run
              usage-billing import usage.csv -c routing.yaml
            """)

    @OptionGroup var options: SendOptions
    @Argument(help: "The events file (.ndjson or .csv).") var file: String
    @Option(help: "ndjson or csv (default: from the file name).") var format: String?
    @Option(help: "With --dry-run: how many requests to show.") var showRequests: Int = 3
    @Option(help: "Record into this spool (durably) instead of sending; `usage-billing worker` delivers it.") var spool:
        String?
    @Flag(help: "Refuse events without an id instead of deriving one from their content.") var requireIds = false

    func run() async throws {
        var chosen: EventReader.Format?
        if let format {
            guard let f = EventReader.Format(rawValue: format) else {
                throw CLIFailure.badInput("--format '\(format)' is not ndjson or csv")
            }
            chosen = f
        }
        let reader: EventReader
        do {
            reader = try EventReader(path: file, format: chosen, ids: requireIds ? .require : .derive)
        } catch {
            throw CLIFailure.badInput("\(error)")
        }
        if let spool {
            try await record(reader: reader, config: options.config, spoolPath: spool)
            return
        }
        let summary = try await deliver(reader: reader, options: options, showRequests: showRequests)
        print(summary.describe())
        if reader.derivedIDs > 0 { print(Self.derivedNote(reader.derivedIDs)) }
        throw ExitCode(summaryExitCode(summary))
    }

    static func derivedNote(_ count: Int) -> String {
        "\(count) event(s) had no id and got one derived from their content and occurrence in the file (a re-import finds the same ids); pass --require-ids to refuse such lines."
    }

    /// Records every event into the spool, 1,000 per transaction. Every valid event is recorded;
    /// an unrouted one is refused under `unrouted: reject` (listed with its line) or recorded as
    /// a dead letter under `dead-letter`. Exits 2 on bad lines, else 1 if any event was refused or
    /// dead-lettered.
    func record(reader: EventReader, config path: String, spoolPath: String) async throws {
        let config = try loadConfig(path, needsSecrets: false)
        let spool = try await openSpool(spoolPath)
        let router = try Router(config: config, client: DryRunHTTPClient(keep: 0, secrets: []))
        var tally = RecordTally()
        while case let items = reader.nextNumbered(max: 1_000), !items.isEmpty {
            var entries: [RecordEntry] = []
            for item in items {
                switch item {
                case .failure(let b): tally.bad.append(b)
                case .success(let numbered):
                    do {
                        let entry = try UsagePipeline.entry(numbered.event, router: router)
                        if entry.deadLetter != nil { tally.deadLettered += 1 }
                        entries.append(entry)
                    } catch let error as UsageBillingError {
                        tally.refuse(
                            line: numbered.line, name: numbered.event.name, reason: error.message, fix: error.fix ?? "")
                    }
                }
            }
            // A shared ledger that restarts or drops the connection is waited for (a minute at
            // most): the events keep their ids, so recording them again cannot double them.
            let outageStarted = ContinuousClock.now
            for attempt in 1... {
                do {
                    tally.known += try await spool.record(entries, now: Date()).count
                    break
                } catch let unavailable as LedgerUnavailableError {
                    guard
                        let wait = LedgerUnavailableError.wait(
                            outages: attempt, elapsed: ContinuousClock.now - outageStarted, giveUpAfter: .seconds(60))
                    else {
                        throw CLIFailure(
                            messages: ["\(unavailable)"], closing: tally.notRecorded(after: file),
                            exitCode: ExitCodes.unreachable)
                    }
                    if attempt == 1 { printError("warning: \(unavailable); retrying for up to a minute") }
                    try await Task.sleep(for: wait)
                } catch {
                    throw CLIFailure(
                        messages: ["\(error)"], closing: tally.notRecorded(after: file),
                        exitCode: error is LedgerUnavailableError ? ExitCodes.unreachable : ExitCodes.badInput)
                }
            }
            tally.recorded += entries.count
        }
        // Fold the write-ahead log into the file, so the spool is one file when this process
        // exits (a reader that cannot write the directory opens it as it is).
        try? (spool as? Spool)?.checkpoint()
        print(tally.describe(spoolPath: spoolPath))
        if reader.derivedIDs > 0 { print(Self.derivedNote(reader.derivedIDs)) }
        let check = try await LaneCheck(spool: spool, config: config)
        if !check.orphaned.isEmpty {
            printError(
                "warning: \(DeliveryWorker.orphanError(check.orphaned, config: config, spoolPath: spoolPath)); the worker will not start until then"
            )
        }
        throw ExitCode(tally.exitCode)
    }
}

/// What `import --spool` did: events recorded (new and known), refused, dead-lettered, bad lines.
struct RecordTally {
    var recorded = 0, known = 0, deadLettered = 0
    var bad: [EventReader.BadLine] = []
    /// Refused events (unrouted under `unrouted: reject`): the first ones in full, all counted by name.
    var refused: [(line: Int, name: String, reason: String, fix: String)] = []
    var refusedCount = 0
    var refusedNames: [String: Int] = [:]
    static let shown = 100

    mutating func refuse(line: Int, name: String, reason: String, fix: String) {
        refusedCount += 1
        refusedNames[name, default: 0] += 1
        if refused.count < Self.shown { refused.append((line, name, reason, fix)) }
    }

    var exitCode: Int32 {
        if !bad.isEmpty { return ExitCodes.badInput }
        return refusedCount + deadLettered > 0 ? ExitCodes.someRejected : ExitCodes.ok
    }

    /// What a failed import leaves: how much of `file` was recorded, and how to finish.
    func notRecorded(after file: String) -> String {
        "Recorded \(recorded) events before this; the rest of \(file) was not recorded. Fix the cause and run the same import again: the recorded events keep their ids."
    }

    func describe(spoolPath: String) -> String {
        var parts = ["\(recorded - known) new", "\(known) already recorded"]
        if refusedCount > 0 { parts.append("\(refusedCount) refused (no route, unrouted: reject)") }
        if deadLettered > 0 {
            parts.append(
                "\(deadLettered) dead-lettered (no route, unrouted: dead-letter; `usage-billing dlq list --reason unrouted`)"
            )
        }
        if !bad.isEmpty { parts.append("\(bad.count) bad line(s)") }
        var lines = ["Recorded \(recorded) events in \(spoolPath): " + parts.joined(separator: ", ") + "."]
        for r in refused { lines.append("  refused line \(r.line): '\(r.name)': \(r.reason). Fix: \(r.fix)") }
        if refusedCount > refused.count {
            let names = refusedNames.sorted { $0.key < $1.key }.map { "\($0.key) (\($0.value))" }.joined(
                separator: ", ")
            lines.append("  … \(refusedCount - refused.count) more refused; by name: \(names)")
        }
        for b in bad.prefix(10) { lines.append("  bad \(b)") }
        if bad.count > 10 { lines.append("  … \(bad.count - 10) more bad lines") }
        if refusedCount > 0 {
            lines.append(
                "The refused events were not recorded: add their routes (or set unrouted: dead-letter) and run the same import again; what was recorded keeps its ids."
            )
        }
        return lines.joined(separator: "\n")
    }
}

/// Sends `events` through the config's router (or a dry run) and returns the summary.
func deliver(_ events: [UsageEvent], options: SendOptions, showRequests: Int) async throws -> ImportSummary {
    try await deliver(options: options, showRequests: showRequests) { importer, _ in await importer.run(events) }
}

/// Streams `reader` through the config's router (or a dry run) and returns the summary.
func deliver(reader: EventReader, options: SendOptions, showRequests: Int) async throws -> ImportSummary {
    try await deliver(options: options, showRequests: showRequests) { importer, progress in
        await importer.run(reader) { count in progress?.update(count) }
    }
}

/// Builds the config's router over curl (or a dry run), runs `body` with an importer over it, and
/// prints the dry run's requests.
func deliver(options: SendOptions, showRequests: Int, _ body: (Importer, Progress?) async -> ImportSummary) async throws
    -> ImportSummary
{
    let config = try loadConfig(options.config)
    let dry = options.dryRun ? DryRunHTTPClient(keep: showRequests, secrets: config.secretValues) : nil
    var curl: CurlHTTPClient?
    let client: any HTTPClient
    if let dry {
        client = dry
    } else {
        let real = try CurlHTTPClient()
        curl = real
        client = real
    }
    defer { curl?.shutdown() }
    let router = try makeRouter(config, client: client)
    let importer = Importer(router: router, policy: RetryPolicy(maxAttempts: options.maxAttempts), pace: dry == nil)
    let progress = Progress.forTerminal()
    let summary = await body(importer, progress)
    progress?.finish()
    if let dry {
        print(
            "Dry run: \(dry.requestCount) request(s) would be sent; the first \(min(showRequests, dry.requestCount)):\n"
        )
        print(dry.transcript())
        print("")
    }
    return summary
}

/// A one-line progress display on a terminal (stderr), at most every half second.
final class Progress: Sendable {
    private let started = ContinuousClock.now
    private let last = Locked(ContinuousClock.now - .seconds(1))

    static func forTerminal() -> Progress? { isatty(STDERR_FILENO) == 1 ? Progress() : nil }

    func update(_ count: Int) {
        last.with { last in
            let now = ContinuousClock.now
            guard now - last >= .milliseconds(500) else { return }
            last = now
            let rate = Double(count) / max(0.001, (now - started).seconds)
            FileHandle.standardError.write(Data("\r\(count) events (\(Int(rate))/s)   ".utf8))
        }
    }

    func finish() { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
}
