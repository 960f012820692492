import ArgumentParser
import Foundation
import UsageBilling
import UsageRouting
import UsageSpool

struct VoidCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "void",
        abstract: "Void recorded events: they should not have been billed.",
        usage: "usage-billing void <id>... --reason <text> [--spool <spool>]",
        discussion: """
            The ledger keeps each event and records the void as a correction of its own, with the reason. \
            On a lane where the event has not been sent yet it is withheld: the provider never sees it. \
            Where the provider has it already, the correction is pending, and the worker applies it the \
            provider's own way (a cancel, a deprecation, a compensating event, or a lowered window; each \
            provider's README, section Corrections, says which and for how long). Where the provider cannot \
            take it, the correction is dead and `corrections` says what to do by hand. Voiding an event twice \
            voids it once. An id the ledger does not hold refuses the whole command (exit 2), and nothing is \
            voided.

            Examples:
              usage-billing void evt_123 --reason "retry loop" --spool usage.spool
              usage-billing void evt_1 evt_2 --reason "test customer" --json
            """)
    @Argument(help: "The ids of the events to void, as recorded.") var ids: [String] = []
    @Option(help: "Why: kept with the correction, shown by `corrections`.") var reason: String?
    @OptionGroup var spoolOption: SpoolOption
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        guard !ids.isEmpty else {
            throw CLIFailure.badInput("name at least one event id. Fix: usage-billing void <id>... --reason <text>")
        }
        guard let reason, !reason.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw CLIFailure.badInput(
                "a void needs a reason. Fix: add --reason \"…\" (kept with the correction, e.g. \"duplicate from a retry loop\")"
            )
        }
        let spool = try await openSpool(spoolOption.spool, existing: true)
        let results: [VoidResult]
        do {
            results = try await spool.void(ids, reason: reason, now: Date())
        } catch {
            throw CLIFailure.from(error)
        }
        if json {
            print(
                JSONValue.array(results.map { $0.json }).description)
            return
        }
        for result in results {
            let c = result.correction
            print(
                result.alreadyVoid
                    ? "\(c.eventID) was voided already (correction \(c.number), \(RFC3339.format(c.recordedAt)): \(c.reason)); nothing changed."
                    : "Voided \(c.eventID) (correction \(c.number), id \(c.id))."
                        + (result.amendedID.map { " It is the replacement that carries amended \($0)'s usage." } ?? ""))
            print(describeLanes(c))
        }
    }
}

struct AmendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "amend",
        abstract: "Amend a recorded event's quantity: it should have been billed differently.",
        usage: "usage-billing amend <id> --quantity <q> --reason <text> [-c <config>]",
        discussion: """
            The event leaves its lanes as a void does (withheld where it was not sent yet; taken back at the \
            provider where it was), and a replacement event with the new quantity is recorded under the \
            correction's id, on the lanes the config routes it to: the worker delivers it like any event. \
            An amend after an amend supersedes it (the earlier replacement is voided); amending again to \
            the same quantity changes nothing. `corrections` lists it.

            Examples:
              usage-billing amend evt_123 --quantity 120 --reason "metered twice"
              usage-billing amend evt_123 --quantity 0 --reason "free tier" --json
            """)
    @Argument(help: "The id of the event to amend, as recorded.") var id: String
    @Option(help: "The quantity it should have had.") var quantity: String?
    @Option(help: "Why: kept with the correction, shown by `corrections`.") var reason: String?
    @Option(name: .shortAndLong, help: "The routing config: where the replacement goes.") var config: String =
        "routing.yaml"
    @OptionGroup var spoolOption: SpoolOption
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        guard let text = quantity, let quantity = DecimalFormat.parseExactly(text) else {
            throw CLIFailure.badInput(
                "--quantity \(quantity.map { "'\($0)' is not a number" } ?? "is required"). Fix: give the quantity the event should have had, e.g. --quantity 120"
            )
        }
        guard let reason, !reason.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw CLIFailure.badInput(
                "an amend needs a reason. Fix: add --reason \"…\" (kept with the correction, e.g. \"metered twice\")")
        }
        let config = try loadConfig(config, needsSecrets: false)
        let spool = try await openSpool(spoolOption.spool, existing: true)
        let result: AmendResult
        do {
            result = try await spool.amend(id, quantity: quantity, reason: reason, now: Date())
            let router = try Router(config: config, client: DryRunHTTPClient(keep: 0, secrets: []))
            _ = try await spool.record([try UsagePipeline.entry(result.replacement, router: router)], now: Date())
        } catch {
            throw CLIFailure.from(error)
        }
        if json {
            print(result.json.description)
            return
        }
        let c = result.correction
        print(
            result.alreadyAmended
                ? "\(c.eventID) was amended to \(DecimalFormat.plain(quantity)) already (correction \(c.number)); nothing changed."
                : "Amended \(c.eventID) to \(DecimalFormat.plain(quantity)) (correction \(c.number)); the replacement \(result.replacement.id) is queued."
        )
        print(describeLanes(c))
    }
}

struct CorrectionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "corrections",
        abstract: "List corrections: each event's voids, with the reason and where each stands per lane.",
        usage: "usage-billing corrections [<id>...] [--spool <spool>] [--json]",
        discussion: """
            Per lane: withheld (voided before it was sent; the provider never saw it), pending (the provider \
            has the event; the worker applies the correction), applied, dead (the provider cannot take it: \
            the line below says why and what to do by hand), or not needed (a dead letter there).

            Examples:
              usage-billing corrections --spool usage.spool
              usage-billing corrections evt_123 --spool usage.spool --json
            """)
    @Argument(help: "Only these events' corrections.") var ids: [String] = []
    @OptionGroup var spoolOption: SpoolOption
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let spool = try await openSpool(spoolOption.spool, readOnly: true)
        let records: [CorrectionRecord]
        do {
            records = try await spool.corrections(of: ids.isEmpty ? nil : ids)
        } catch {
            throw CLIFailure.from(error)
        }
        if json {
            print(JSONValue.array(records.map { $0.json }).description)
            return
        }
        if records.isEmpty {
            print(ids.isEmpty ? "No corrections." : "No corrections of \(ids.joined(separator: ", ")).")
            return
        }
        for c in records {
            let to = c.quantity.map { " to \(DecimalFormat.plain($0)) (replacement \(c.replacementID))" } ?? ""
            print("\(c.eventID) \(c.kind.rawValue)\(to) #\(c.number) at \(RFC3339.format(c.recordedAt)): \(c.reason)")
            print(describeLanes(c))
        }
    }
}

/// A correction's lanes, one line each, with what the state means for the reader.
private func describeLanes(_ c: CorrectionRecord) -> String {
    guard !c.lanes.isEmpty else { return "  (the event has no lanes: it was never routed)" }
    return c.lanes.sorted { $0.key < $1.key }.map { lane, state in
        let meaning =
            switch state {
            case .withheld: "never sent"
            case .pending: "the provider has it; the worker applies the correction"
            case .applied: c.notes[lane] == nil ? "applied at the provider" : "applied"
            case .dead: "the provider cannot take it"
            case .notNeeded: "a dead letter there; nothing to correct"
            }
        let note = c.notes[lane].map { "\n      \($0)" } ?? ""
        return "  \(lane): \(state.label) (\(meaning))\(note)"
    }.joined(separator: "\n")
}
