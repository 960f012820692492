import ArgumentParser
import Foundation
import UsageBilling
import UsageRouting
import UsageSpool

/// What a spool holds against a config's lanes: positional lanes and what they become, lanes
/// with undelivered work the config does not have, and why positional lanes cannot be mapped.
struct LaneCheck {
    var renames: [String: String] = [:]
    var orphaned: [OrphanedLane] = []
    var legacyProblem: UsageBillingError?
    var orphans: Set<String> { Set(orphaned.map(\.lane)) }

    init() {}

    init(spool: any UsageLedger, config: RoutingConfig) async throws {
        do {
            renames = Dictionary(
                try await spool.legacyLaneRenames(for: config), uniquingKeysWith: { first, _ in first })
        } catch let error as UsageBillingError {
            legacyProblem = error
        }
        // A positional lane that maps is not an orphan: the worker renames it first.
        orphaned = try await spool.orphanedLanes(known: Set(config.lanes.map(\.name)).union(renames.keys))
    }
}

struct Lanes: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Move or dead-letter the events of a lane the routing config no longer has.",
        discussion: """
            A lane is one provider on one route, named <provider>/<route id>: the route's `id:`, or its event \
            patterns (and a hash of its cohort). Reordering routes, inserting routes, adding a cutover or editing a \
            route's mapping keeps every lane. Removing a route, renaming a provider or changing a route's patterns \
            without an `id:` leaves its undelivered events on a lane the config no longer has: `worker` refuses to \
            start and `status -c` marks it ORPHANED until you move or drop them here.
            """,
        subcommands: [LanesReassign.self, LanesDrop.self])
}

struct LanesReassign: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reassign",
        abstract: "Move everything of one lane (queued rows, open windows, history) to a lane of the config.",
        usage: "usage-billing lanes reassign <from> <to> [<options>]",
        discussion: """
            The rows keep their ids, so a provider that already has one answers it as a duplicate. An event the \
            target lane already holds is not queued there again: its row stays where it was (marked a duplicate) and \
            is reported as already there. Refuses a target of another provider kind (its provider never had these \
            events, so they would be billed there as new) unless --to-other-provider is given; refuses while a \
            worker runs on the spool, when both lanes have a window for the same customer, meter and start, and when \
            open windows would move to a lane that does not bill per window. Then run the worker.

            Examples:
              usage-billing lanes reassign stripe/api_request stripe-live/api_request
              usage-billing lanes reassign 'stripe#0' stripe/api-requests
            """)
    @Argument(help: "The lane the events are on (see `usage-billing status`).") var from: String
    @Argument(help: "A lane of the config (see `usage-billing config check`).") var to: String
    @Option(name: .shortAndLong, help: "The routing config.") var config: String = "routing.yaml"
    @OptionGroup var spoolOption: SpoolOption
    @Flag(help: "Move to a lane of another provider kind: its provider bills the events as new.") var toOtherProvider =
        false

    func run() async throws {
        let config = try loadConfig(config, needsSecrets: false)
        let spool = try await openSpool(spoolOption.spool, existing: true)
        let table: LaneTable
        do {
            table = try LaneTable(config: config, client: DryRunHTTPClient(keep: 0, secrets: []))
        } catch {
            throw CLIFailure.badInput("\(error)")
        }
        guard let target = table[to] else {
            throw CLIFailure.badInput(
                "\(to) is not a lane of \(config.file). Fix: use one of \(table.lanes.map(\.name).joined(separator: ", "))"
            )
        }
        let fromKind = Lane(name: from).flatMap { config.kindName(ofProvider: $0.provider) }
        let toKind = config.providers[target.lane.provider]?.kind.name
        if !toOtherProvider && fromKind != toKind {
            let same = DeliveryWorker.reassignTarget(for: from, config: config)
            let why =
                fromKind.map { "\(from) holds events for provider kind \($0) and \(to) is \(toKind ?? "another kind")" }
                ?? "the kind of \(from)'s provider cannot be told from its name, and \(to) is \(toKind ?? "another kind")"
            throw CLIFailure.badInput(
                "\(why): moving them would bill them at a provider that never had them. Fix: "
                    + (same.map {
                        "move them to \($0) (`usage-billing lanes reassign \(from) \($0) -c \(config.file) --spool \(spool.location)`), "
                    } ?? "")
                    + "dead-letter them (`usage-billing lanes drop \(from) --yes --spool \(spool.location)`), or pass --to-other-provider if billing them at \(to) is what you want"
            )
        }
        do {
            let moved = try await spool.reassignLane(
                from, to: to, targetAggregates: target.sink.capabilities.aggregation != nil)
            print(
                "Moved \(moved.rows) row(s) and \(moved.windows) window(s) from \(from) to \(to)"
                    + (moved.alreadyThere > 0
                        ? "; \(moved.alreadyThere) row(s) were already there (their events are on \(to)), left on \(from) as duplicates"
                        : "")
                    + "; `usage-billing worker -c \(config.file) --spool \(spool.location)` delivers what is queued.")
        } catch {
            throw CLIFailure.badInput("\(error)")
        }
    }
}

struct LanesDrop: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drop",
        abstract: "Dead-letter a lane's undelivered events (reason lane_removed); nothing is deleted.",
        discussion: """
            Its queued rows, and a record per window with events not yet billed, become dead letters with reason \
            lane_removed: `dlq list --reason lane_removed` shows them, and `lanes reassign` then \
            `dlq retry --reason lane_removed` brings them back. Asks first, or pass --yes. Refuses while a worker runs.

            Examples:
              usage-billing lanes drop orb/api_request --yes --spool usage.spool
            """)
    @Argument(help: "The lane (see `usage-billing status`).") var lane: String
    @OptionGroup var spoolOption: SpoolOption
    @Flag(help: "Do not ask.") var yes = false

    func run() async throws {
        let spool = try await openSpool(spoolOption.spool, existing: true)
        guard let status = try await spool.status().first(where: { $0.lane == lane }) else {
            throw CLIFailure.badInput(
                "the spool has no lane \(lane). Fix: see `usage-billing status --spool \(spool.location)` for its lanes"
            )
        }
        let what = "\(status.queued) queued row(s) and \(status.openWindows) open window(s) of \(lane)"
        guard try confirmed("Dead-letter \(what)?", action: "dead-lettering \(what)", yes: yes) else {
            print("Nothing changed.")
            return
        }
        do {
            let dropped = try await spool.dropLane(lane, now: Date())
            print(
                "Dead-lettered \(dropped.rows) row(s) and \(dropped.windows) window record(s) of \(lane) (reason lane_removed)."
                    + (dropped.corrections > 0
                        ? " \(dropped.corrections) correction(s) not yet applied there are dead: correct them at the provider by hand (`usage-billing corrections` lists them)."
                        : ""))
        } catch {
            throw CLIFailure.badInput("\(error)")
        }
    }
}

struct SpoolCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spool", abstract: "Work with spools and shared ledgers.", subcommands: [SpoolCopy.self])
}

struct SpoolCopy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "copy",
        abstract:
            "Copy a spool into a shared PostgreSQL ledger (or back): every event with all its rows, and every window.",
        discussion: """
            Events keep their ids, rows their states (queued, retrying, delivered, dead letters with reasons), windows \
            their values. An event the target has already is left as it is, so an interrupted copy is resumed by running \
            it again: nothing is lost or doubled. Stop every worker on both first (it refuses while one holds a lane or \
            the spool's lock); then point the workers at the target.

            Examples:
              usage-billing spool copy usage.spool postgres://billing@db:5432/usage
              usage-billing spool copy 'postgres://billing@db:5432/usage' usage-copy.spool
            """)
    @Argument(help: "The spool or ledger to copy from.") var from: String
    @Argument(help: "The spool or ledger to copy into (created if it is a new file).") var to: String

    func run() async throws {
        let source = try await openSpool(from, existing: true)
        let target = try await openSpool(to)
        let report: LedgerCopyReport
        do {
            report = try await copyLedger(from: source, to: target) { progress in
                if isatty(STDERR_FILENO) == 1 {
                    FileHandle.standardError.write(
                        Data("\r\(progress.events) events read, \(progress.copied) copied   ".utf8))
                }
            }
        } catch {
            if isatty(STDERR_FILENO) == 1 { printError("") }  // past the progress line
            throw error is LedgerUnavailableError ? CLIFailure.unreachable("\(error)") : CLIFailure.badInput("\(error)")
        }
        if isatty(STDERR_FILENO) == 1 { printError("") }
        print(
            "Copied \(report.copied) of \(report.events) event(s) (the rest were there already), \(report.windows) window(s) and \(report.corrections) correction(s) from \(source.location) to \(target.location)."
        )
        print(describe(try await target.status()))
    }
}
