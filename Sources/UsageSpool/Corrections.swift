import Foundation
import UsageBilling

/// What a correction does to its event.
public enum CorrectionKind: String, Sendable, Hashable {
    /// The event should not have been billed.
    case void
    /// The event should have had another quantity: it leaves its lanes as a void does, and a
    /// replacement event under the correction's id carries the quantity.
    case amend
}

/// Where a correction stands on one lane of its event.
public enum CorrectionLaneState: Int, Sendable, Hashable, CaseIterable {
    /// Taken effect before the event was sent: its row there left the queue as voided, and the
    /// provider never sees it. Becomes ``pending`` if a send that was already under way when
    /// the correction was recorded turns out to have reached the provider.
    case withheld = 0
    /// To be applied at the provider, its own way, once the event's row there has settled.
    case pending = 1
    /// Applied at the provider.
    case applied = 2
    /// The provider cannot take it (past its time limit, or no way to correct): the reason says
    /// what to do by hand.
    case dead = 3
    /// Nothing to correct: the event is a dead letter on this lane.
    case notNeeded = 4

    /// How the state reads in listings.
    public var label: String {
        switch self {
        case .withheld: "withheld"
        case .pending: "pending"
        case .applied: "applied"
        case .dead: "dead"
        case .notNeeded: "not needed"
        }
    }
}

/// A correction as the ledger holds it: a row of its own beside its event (which stays as it was
/// recorded), numbered per event from 1.
public struct CorrectionRecord: Sendable, Hashable {
    public var eventID: String
    public var number: Int
    public var kind: CorrectionKind
    public var reason: String
    public var recordedAt: Date
    /// Each lane of the event, and where the correction stands there.
    public var lanes: [String: CorrectionLaneState]
    /// Per lane, why the correction stands as it does, where there is a reason: a dead one's
    /// cause and manual fix, or a pending one's last failed attempt.
    public var notes: [String: String] = [:]
    /// An amend's new quantity.
    public var quantity: Decimal?

    /// The correction's own id, sent as the provider's idempotency key wherever it takes one.
    public var id: String { Self.id(eventID: eventID, number: number) }

    /// The id of correction `number` of the event `eventID`.
    static func id(eventID: String, number: Int) -> String {
        EventID.derived(from: [eventID, "correction", String(number)])
    }
    /// An amend's replacement event's id (the correction's own id stays the key of the request
    /// that takes the original back, e.g. a compensating event's id, so the two never meet).
    public var replacementID: String { EventID.derived(from: [eventID, "replacement", String(number)]) }

    public init(
        eventID: String, number: Int, kind: CorrectionKind, reason: String, recordedAt: Date,
        lanes: [String: CorrectionLaneState], notes: [String: String] = [:], quantity: Decimal? = nil
    ) {
        self.eventID = eventID
        self.number = number
        self.kind = kind
        self.reason = reason
        self.recordedAt = recordedAt
        self.lanes = lanes
        self.notes = notes
        self.quantity = quantity
    }
}

/// What voiding one event did.
public struct VoidResult: Sendable, Hashable {
    /// The correction that voids the event: the new one, or the earlier one when the event was
    /// already void (voiding twice is voiding once).
    public var correction: CorrectionRecord
    /// Whether it was void before this call.
    public var alreadyVoid: Bool
    /// The id the call named, when it is not the voided event's: an amended event, whose usage
    /// is its latest replacement, so voiding it voids that replacement.
    public var amendedID: String?
}

extension CorrectionRecord {
    /// The correction as `void --json`, `corrections --json` and serve answer it.
    public var json: JSONValue {
        .object([
            "event_id": .string(eventID), "number": .number(Double(number)), "id": .string(id),
            "kind": .string(kind.rawValue), "reason": .string(reason),
            "recorded_at": .string(RFC3339.format(recordedAt)),
            "lanes": .object(lanes.mapValues { .string($0.label) }),
            "notes": .object(notes.mapValues { .string($0) }),
            "quantity": quantity.map { .string(DecimalFormat.plain($0)) } ?? .null,
        ])
    }
}

extension VoidResult {
    /// The correction's ``CorrectionRecord/json`` with `already_void` (and `amended_id` when
    /// the call named an amended event).
    public var json: JSONValue {
        guard case .object(var object) = correction.json else { return correction.json }
        object["already_void"] = .bool(alreadyVoid)
        if let amendedID { object["amended_id"] = .string(amendedID) }
        return .object(object)
    }
}

/// What a correction transaction reads of one event, inside the transaction.
struct CorrectionSnapshot: Sendable {
    struct Row: Sendable {
        var seq: Int64
        var lane: String
        var state: DeliveryState
        var attempts: Int
        /// Whether a send of it was ever noted as starting.
        var sendStarted: Bool
        var isWindowRecord: Bool
    }

    var key: Int64
    var rows: [Row]
    var corrections: [CorrectionRecord]
}

/// What a correction transaction writes.
struct CorrectionChanges: Sendable {
    /// Queued rows that leave the queue as voided (never sent), each with its correction (an
    /// index into ``corrections``) and lane. The store writes each as ``DeliveryState/voided``,
    /// or ``DeliveryState/voidedUnconfirmed`` while a worker holds its lane.
    var voidRows: [(seq: Int64, correction: Int, lane: String)] = []
    /// New corrections, with their events' keys and, per lane, the event's row there.
    var corrections: [(key: Int64, record: CorrectionRecord, seqs: [String: Int64])] = []
    /// Per id of the call, in order: its new correction (an index into ``corrections``), or the
    /// one that voided it before.
    var answers: [Answer] = []

    enum Answer: Sendable {
        case new(Int)
        case already(CorrectionRecord)
    }

    /// A row to void that another writer took out of the queue between the read and the write
    /// (its mark landed first, so its send had started): the correction is pending there.
    mutating func leftTheQueueMeanwhile(_ row: (seq: Int64, correction: Int, lane: String)) {
        corrections[row.correction].record.lanes[row.lane] = .pending
    }

    /// What the call answers, once written.
    var results: [VoidResult] {
        answers.map { answer in
            switch answer {
            case .new(let i): VoidResult(correction: corrections[i].record, alreadyVoid: false, amendedID: nil)
            case .already(let record): VoidResult(correction: record, alreadyVoid: true, amendedID: nil)
            }
        }
    }
}

extension LedgerEngine {
    /// Decides a void of each event in `snapshots` (by id, every id of the call present):
    /// an event already void keeps its correction; otherwise the next number, and per lane:
    /// a row never tried leaves the queue (`withheld`); a row tried, delivered or folded into a
    /// window gets the correction `pending`; a dead row needs none.
    static func void(
        _ ids: [String], snapshots: [String: CorrectionSnapshot], reason: String, now: Date
    ) throws -> CorrectionChanges {
        var changes = CorrectionChanges()
        for id in ids {
            guard let snapshot = snapshots[id] else { continue }
            if let earlier = snapshot.corrections.first(where: { $0.kind == .void }) {
                changes.answers.append(.already(earlier))
                continue
            }
            // The caller voids an amended event's replacement instead; an amend that landed
            // since it looked is refused rather than voiding the wrong event.
            if let amend = snapshot.corrections.last(where: { $0.kind == .amend }) {
                throw UsageBillingError(
                    .invalidInput,
                    "'\(id)' was amended (correction \(amend.number)) while this void was made; its usage is now the replacement event '\(amend.replacementID)'",
                    fix: "run the void again: it then voids the replacement", field: "id")
            }
            try refuseWindowRecord(id, snapshot)
            let record = CorrectionRecord(
                eventID: id, number: (snapshot.corrections.map(\.number).max() ?? 0) + 1, kind: .void,
                reason: reason, recordedAt: Date(timeIntervalSince1970: now.timeIntervalSince1970), lanes: [:])
            changes.answers.append(.new(changes.corrections.count))
            takeOut(snapshot, record, into: &changes)
        }
        return changes
    }

    /// Decides an amend of `id` to `quantity`: the event leaves every lane as a void would
    /// (its first amend), a replacement event under the correction's id carries the quantity,
    /// and the replacement of an earlier amend (`previous`, as the caller read it before the
    /// transaction) is voided: an amend after an amend supersedes it. Amending to the quantity
    /// the latest amend set answers that amend.
    static func amend(
        _ id: String, to quantity: Decimal, previous: String?, snapshots: [String: CorrectionSnapshot],
        reason: String, now: Date
    ) throws -> CorrectionChanges {
        var changes = CorrectionChanges()
        guard let snapshot = snapshots[id] else { return changes }
        if snapshot.corrections.contains(where: { $0.kind == .void }) {
            throw UsageBillingError(
                .invalidInput, "'\(id)' was voided; there is no usage left to amend",
                fix: "record a new event with the right quantity", field: "id")
        }
        try refuseWindowRecord(id, snapshot)
        let latest = snapshot.corrections.filter { $0.kind == .amend }.max { $0.number < $1.number }
        if let latest, latest.quantity == quantity {
            changes.answers.append(.already(latest))
            return changes
        }
        guard latest?.replacementID == previous else {
            throw UsageBillingError(
                .transport, "another correction of '\(id)' landed while this one was being made",
                fix: "run the amend again: it is made against the latest correction")
        }
        let at = Date(timeIntervalSince1970: now.timeIntervalSince1970)
        var record = CorrectionRecord(
            eventID: id, number: (snapshot.corrections.map(\.number).max() ?? 0) + 1, kind: .amend, reason: reason,
            recordedAt: at, lanes: [:], quantity: quantity)
        changes.answers.append(.new(changes.corrections.count))
        if latest == nil {
            takeOut(snapshot, record, into: &changes)
        } else {
            // The event left its lanes with the first amend; the earlier replacement leaves now.
            record.lanes = Dictionary(snapshot.rows.map { ($0.lane, .notNeeded) }, uniquingKeysWith: { a, _ in a })
            changes.corrections.append((snapshot.key, record, [:]))
            if let previous, let replaced = snapshots[previous] {
                let superseded = CorrectionRecord(
                    eventID: previous, number: (replaced.corrections.map(\.number).max() ?? 0) + 1, kind: .void,
                    reason: "superseded by amend \(record.number) of \(id): \(reason)", recordedAt: at, lanes: [:])
                if !replaced.corrections.contains(where: { $0.kind == .void }) {
                    takeOut(replaced, superseded, into: &changes)
                }
            }
        }
        return changes
    }

    private static func refuseWindowRecord(_ id: String, _ snapshot: CorrectionSnapshot) throws {
        if snapshot.rows.contains(where: \.isWindowRecord) {
            throw UsageBillingError(
                .invalidInput,
                "'\(id)' is an aggregation window's record, not an event that was recorded",
                fix: "correct the events the window sums; the window is revised from them")
        }
    }

    /// Adds `record` (its lanes decided here) to `changes`, taking its event out of every lane:
    /// a row never tried leaves the queue (`withheld`); a row tried, delivered or folded into a
    /// window gets the correction `pending`; a dead row needs none.
    private static func takeOut(
        _ snapshot: CorrectionSnapshot, _ record: CorrectionRecord, into changes: inout CorrectionChanges
    ) {
        var record = record
        var seqs: [String: Int64] = [:]
        for row in snapshot.rows {
            seqs[row.lane] = row.seq
            switch row.state {
            case .queued where row.attempts == 0 && !row.sendStarted:
                changes.voidRows.append((row.seq, changes.corrections.count, row.lane))
                record.lanes[row.lane] = .withheld
            case .queued, .delivered, .duplicate, .aggregated:
                record.lanes[row.lane] = .pending
            case .dead, .voided, .voidedUnconfirmed:
                record.lanes[row.lane] = .notNeeded
            }
        }
        changes.corrections.append((snapshot.key, record, seqs))
    }

    /// The refusal of a correction naming ids the ledger does not hold: nothing was written.
    static func unknownEvents(_ ids: [String], ledger: String) -> UsageBillingError {
        let shown = ids.prefix(5).map { "'\($0)'" }.joined(separator: ", ") + (ids.count > 5 ? " …" : "")
        return UsageBillingError(
            .notFound,
            "the ledger \(ledger) holds no event with id \(shown); nothing was corrected",
            fix:
                "check the id (it is the event's `id`, as recorded), and the ledger (--spool): `usage-billing status` shows what it holds",
            field: "id")
    }
}

extension LedgerStore {
    /// Voids the events `ids`, in one transaction: each gets a correction (or keeps the one that
    /// voided it before), rows not yet tried leave the queue, and the other lanes get the
    /// correction pending. An id the ledger does not hold refuses the whole call. An amended
    /// event's usage is its latest replacement: naming it voids that replacement.
    public func void(_ ids: [String], reason: String, now: Date) async throws -> [VoidResult] {
        var amendedBy: [String: String] = [:]  // replacement id → the amended id the call named
        var resolved: [String] = []
        // One read for the whole call; only an amended event's chain is followed further.
        let amended = Set(try await corrections(of: ids).filter { $0.kind == .amend }.map(\.eventID))
        for id in ids {
            var current = id
            // A replacement may itself be amended; each step follows the latest amend.
            for _ in 0..<16 where amended.contains(id) {
                guard
                    let amend = try await corrections(of: [current]).filter({ $0.kind == .amend }).max(by: {
                        $0.number < $1.number
                    })
                else { break }
                current = amend.replacementID
            }
            if current != id { amendedBy[current] = id }
            resolved.append(current)
        }
        var seen = Set<String>()
        let unique = resolved.filter { seen.insert($0).inserted }
        guard !unique.isEmpty else { return [] }
        let amendedFor = amendedBy
        let trimmed = reason.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else {
            throw UsageBillingError(
                .invalidInput, "a correction needs a reason",
                fix: "say why, e.g. --reason \"duplicate from retry loop\"",
                field: "reason")
        }
        let location = self.location
        return try await correctionTransaction(ids: unique, now: now) { snapshots in
            let missing = unique.filter { snapshots[$0] == nil }
            if let replacement = missing.first(where: { amendedFor[$0] != nil }), let amended = amendedFor[replacement]
            {
                throw UsageBillingError(
                    .invalidInput,
                    "'\(amended)' was amended, and its replacement '\(replacement)' is not recorded: the amend did not finish; nothing was voided",
                    fix: "run the same `usage-billing amend \(amended)` again (it records the replacement), then void",
                    field: "id")
            }
            guard missing.isEmpty else { throw LedgerEngine.unknownEvents(missing, ledger: location) }
            return try LedgerEngine.void(unique, snapshots: snapshots, reason: trimmed, now: now)
        }.results.map { result in
            var result = result
            result.amendedID = amendedFor[result.correction.eventID]
            return result
        }
    }
}

/// What amending one event did.
public struct AmendResult: Sendable, Hashable {
    /// The amend: the new one, or the latest when it already set this quantity.
    public var correction: CorrectionRecord
    /// Whether the latest amend already set this quantity (nothing new was recorded).
    public var alreadyAmended: Bool
    /// The event that carries the new quantity: the original's customer, name, timestamp and
    /// properties under the correction's id. Recording it again changes nothing.
    public var replacement: UsageEvent

    /// The correction's ``CorrectionRecord/json`` with `already_amended` and the replacement's id.
    public var json: JSONValue {
        guard case .object(var object) = correction.json else { return correction.json }
        object["already_amended"] = .bool(alreadyAmended)
        object["replacement_id"] = .string(replacement.id)
        return .object(object)
    }
}

extension LedgerStore {
    /// Amends the event `id` to `quantity`, in one transaction (see
    /// ``LedgerEngine/amend(_:to:previous:snapshots:reason:now:)``), and returns the
    /// replacement event, which the caller records on the lanes the config routes it to.
    public func amend(_ id: String, quantity: Decimal, reason: String, now: Date) async throws -> AmendResult {
        let trimmed = reason.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else {
            throw UsageBillingError(
                .invalidInput, "a correction needs a reason",
                fix: "say why, e.g. --reason \"the customer was on the wrong plan\"", field: "reason")
        }
        guard !quantity.isNaN else {
            throw UsageBillingError(
                .invalidInput, "the quantity is not a number", fix: "give a number", field: "quantity")
        }
        let previous = try await corrections(of: [id]).filter { $0.kind == .amend }.max { $0.number < $1.number }?
            .replacementID
        let location = self.location
        let changes = try await correctionTransaction(ids: [id] + (previous.map { [$0] } ?? []), now: now) {
            snapshots in
            guard snapshots[id] != nil else { throw LedgerEngine.unknownEvents([id], ledger: location) }
            return try LedgerEngine.amend(
                id, to: quantity, previous: previous, snapshots: snapshots, reason: trimmed, now: now)
        }
        guard let result = changes.results.first, let original = try await storedEvents(ids: [id])[id] else {
            throw LedgerEngine.unknownEvents([id], ledger: location)
        }
        var replacement = original
        replacement.id = result.correction.replacementID
        replacement.quantity = result.correction.quantity ?? quantity
        return AmendResult(correction: result.correction, alreadyAmended: result.alreadyVoid, replacement: replacement)
    }
}
