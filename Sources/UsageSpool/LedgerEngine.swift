import Foundation
import UsageBilling

/// The transactional primitives a ledger's storage implements, so that the algorithms over them
/// (folding raw rows into windows, emitting window records, dropping and moving lanes) are
/// written once, in the extension below. A store is only its SQL: what it reads and writes in one
/// transaction, and how it keeps workers out (``Spool``'s file lock, ``PostgresLedger``'s
/// leases).
protocol LedgerStore: UsageLedger {
    /// In one transaction holding the lane's windows against other folds and emissions: reads
    /// what `reading` selects, asks `decide` what to change, writes that. With `exclusive`, it
    /// refuses while a worker delivers the lane (nothing may move under a worker's marks).
    func windowTransaction(
        lane: String, reading: WindowSelection, now: Date, exclusive: Bool,
        _ decide: @Sendable (WindowSnapshot) throws -> WindowChanges
    ) async throws -> WindowOutcome

    /// In one transaction, for each move in order: reads `from`'s facts, lets `check` refuse the
    /// move (nothing of any move is written then), and moves `from`'s rows and windows to `to`,
    /// except rows of events `to` already holds: those stay on `from`, the queued ones marked
    /// duplicates (``LedgerEngine/alreadyOnLane(_:)``), so no id is ever queued twice on one lane.
    /// Returns each move's facts and how many rows stayed.
    func moveTransaction(
        _ moves: [(from: String, to: String)], exclusive: Bool,
        _ check: @Sendable (_ from: String, _ to: String, LaneFacts) throws -> Void
    ) async throws -> [(facts: LaneFacts, alreadyThere: Int)]

    /// In one transaction: reads each of the events `ids` the ledger holds (its rows and its
    /// corrections), lets `decide` refuse (nothing is written then) or say what to change, and
    /// writes that. A row is voided only if still queued and untried when written: one another
    /// writer marked since the read gets its correction pending instead
    /// (``CorrectionChanges/leftTheQueueMeanwhile(_:)``). Returns the changes as written.
    func correctionTransaction(
        ids: [String], now: Date, _ decide: @Sendable ([String: CorrectionSnapshot]) throws -> CorrectionChanges
    ) async throws -> CorrectionChanges
}

/// Which windows a ``LedgerStore/windowTransaction(lane:reading:now:exclusive:_:)`` reads.
enum WindowSelection: Sendable {
    /// The windows with these keys (those that exist), which of the raw rows `rows` are
    /// still queued (a row another fold took first counts once), and which of `corrections`
    /// are still pending on the lane (a void folded once).
    case keys([WindowKey], rows: [Int64], corrections: [CorrectionRef] = [])
    /// Every window with events not yet billed that ends at or before `endingBy` (Unix seconds),
    /// ordered by start, customer, meter.
    case unbilled(endingBy: Int64)
}

/// What a window transaction read.
struct WindowSnapshot: Sendable {
    var queued: Set<Int64> = []
    var pendingCorrections: Set<CorrectionRef> = []
    var windows: [(key: WindowKey, state: WindowState)] = []
}

/// What a window transaction writes.
struct WindowChanges: Sendable {
    /// Windows to save (created or replaced), each marked as having events not yet billed or not.
    var save: [(key: WindowKey, state: WindowState)] = []
    var dirty: Bool
    /// Window records to record, each with a row of its own on the lane: queued, or dead with
    /// `recordReason`. A record whose id the ledger holds (a revision already recorded) stays.
    var records: [UsageEvent] = []
    var recordReason: RejectionReason? = nil
    /// Raw rows to mark aggregated, those still queued.
    var folded: [Int64] = []
    /// When set, every queued row of the lane becomes a dead letter with this reason.
    var deadLetterQueued: RejectionReason? = nil
    /// Corrections of the lane to settle (voids folded into their windows).
    var settle: [CorrectionSettlement] = []
}

/// What a window transaction wrote.
struct WindowOutcome: Sendable {
    /// Window records recorded (not those it already held).
    var records = 0
    /// Queued rows dead-lettered.
    var deadLettered = 0
}

/// What a move is judged by, read inside its transaction.
struct LaneFacts: Sendable {
    /// Rows on the lane in any state.
    var rows: Int
    var windows: Int
    /// Windows with events not yet billed.
    var openWindows: Int
    /// A window the target lane has too (same customer, meter and start), if any.
    var sharedWindow: WindowKey?
}

/// The texts the algorithms write into rows, the same on every ledger.
enum LedgerEngine {
    static let alreadyOnLaneCode = "already_on_lane"

    static func alreadyOnLane(_ to: String) -> String {
        "\(to) already holds this event; left here by `lanes reassign`"
    }

    static func laneRemoved(_ lane: String) -> RejectionReason {
        RejectionReason(
            code: "lane_removed",
            message: "the routing config no longer has the lane \(lane); dead-lettered by `usage-billing lanes drop`",
            origin: .local)
    }

    static func correctionLaneRemoved(_ lane: String) -> RejectionReason {
        RejectionReason(
            code: "lane_removed",
            message:
                "the routing config no longer has the lane \(lane), so the correction was not applied there; dropped by `usage-billing lanes drop`. By hand: correct the event at the provider, or credit the customer",
            origin: .local)
    }

    /// Each window's record (when it has new events) and its state after it, in the snapshot's
    /// order.
    static func emit(_ snapshot: WindowSnapshot, spec: AggregationSpec, lane: String, into changes: inout WindowChanges)
    {
        for (key, before) in snapshot.windows {
            var state = before
            if let record = WindowAggregator.record(for: key, state: &state, spec: spec, namespace: lane) {
                changes.records.append(record)
            }
            changes.save.append((key, state))
        }
    }

    static func sharedWindow(_ from: String, _ to: String, _ key: WindowKey) -> UsageBillingError {
        UsageBillingError(
            .invalidInput,
            "\(from) and \(to) both have a window for customer '\(key.customer)', meter '\(key.meter)' starting \(RFC3339.format(Date(timeIntervalSince1970: TimeInterval(key.start)))); merging them could bill it twice",
            fix:
                "deliver one lane's windows first (`worker --until-empty --close-windows` with its route in the config), or drop it",
            field: "to")
    }
}

extension LedgerStore {
    /// Folds raw rows of `lane` into its windows and marks them `aggregated`, in one transaction,
    /// so a crash either folds a row once or not at all.
    public func fold(_ rows: [QueuedDelivery], lane: String, spec: AggregationSpec, now: Date) async throws {
        guard !rows.isEmpty else { return }
        let aggregator = WindowAggregator(spec: spec, namespace: lane)
        var keys: [WindowKey] = [], ends: [WindowKey: Int64] = [:], keyed: [(QueuedDelivery, WindowKey)] = []
        var bounds: (start: Date, end: Date)?
        for row in rows {
            let (key, end) = aggregator.key(for: row.event, reusing: &bounds)
            if ends[key] == nil {
                keys.append(key)
                ends[key] = end
            }
            keyed.append((row, key))
        }
        let windowEnds = ends, folding = keyed, formula = spec.formula
        _ = try await windowTransaction(
            lane: lane, reading: .keys(keys, rows: rows.map(\.seq)), now: now, exclusive: false
        ) { snapshot in
            var states = Dictionary(snapshot.windows.map { ($0.key, $0.state) }, uniquingKeysWith: { a, _ in a })
            var changes = WindowChanges(dirty: true)
            var touched: [WindowKey] = [], seen = Set<WindowKey>()
            for (row, key) in folding where snapshot.queued.contains(row.seq) {
                var state = states[key] ?? WindowState(end: windowEnds[key] ?? key.start)
                if seen.insert(key).inserted { touched.append(key) }
                WindowAggregator.fold(row.event, into: &state, formula: formula)
                states[key] = state
                changes.folded.append(row.seq)
            }
            changes.save = touched.compactMap { key in states[key].map { (key, $0) } }
            return changes
        }
    }

    /// Emits a record for every window of `lane` with new events whose end plus the grace period
    /// has passed (or every such window, `all`): the record is recorded as an event with a queued
    /// row of its own, and the window's emitted revision is saved, in one transaction. Returns
    /// how many records were queued.
    @discardableResult
    public func closeWindows(lane: String, spec: AggregationSpec, now: Date, all: Bool) async throws -> Int {
        let limit = all ? Int64.max : Int64((now.timeIntervalSince1970 - spec.grace.seconds).rounded(.down))
        return try await windowTransaction(lane: lane, reading: .unbilled(endingBy: limit), now: now, exclusive: false)
        {
            var changes = WindowChanges(dirty: false)
            LedgerEngine.emit($0, spec: spec, lane: lane, into: &changes)
            return changes
        }.records
    }

    /// Dead-letters everything `lane` has not delivered, with reason `lane_removed`: its queued
    /// rows, and a record for each window with events not yet billed (the increment since its
    /// last record); its corrections not yet applied are dead with the same reason and the manual
    /// fix. Nothing is deleted: `lanes reassign` and `dlq retry --reason lane_removed` bring the
    /// rows back. Refused while a worker delivers the lane. Returns the rows and window records
    /// dead-lettered, and the corrections left dead.
    @discardableResult
    public func dropLane(_ lane: String, now: Date) async throws -> (rows: Int, windows: Int, corrections: Int) {
        let dropped = try await dropRows(lane, now: now)
        // Every row is settled now (delivered, duplicate, dead), so every pending correction is due.
        let reason = LedgerEngine.correctionLaneRemoved(lane)
        var corrections = 0
        var settled = Set<CorrectionRef>()
        while true {
            let due = try await dueCorrections(lane: lane, now: .distantFuture, limit: 500)
            // A settlement is written only while pending; one that comes back was not (a worker
            // took the lane meanwhile, which the exclusive drop refuses): stop rather than spin.
            let refs = due.map { CorrectionRef(eventKey: $0.eventKey, number: $0.number) }
            guard !due.isEmpty, settled.isDisjoint(with: refs) else { break }
            settled.formUnion(refs)
            try await settleCorrections(
                due.map {
                    CorrectionSettlement(
                        eventKey: $0.eventKey, number: $0.number, state: .dead, reason: reason, retryAt: nil,
                        attempted: false)
                }, lane: lane, now: now, lease: nil)
            corrections += due.count
        }
        return (dropped.rows, dropped.windows, corrections)
    }

    private func dropRows(_ lane: String, now: Date) async throws -> (rows: Int, windows: Int) {
        let reason = LedgerEngine.laneRemoved(lane)
        // The lane's config is gone; the records only need ids and increments, which any spec gives.
        let spec = AggregationSpec(window: .fixed(seconds: 3600), report: .increments)
        let outcome = try await windowTransaction(
            lane: lane, reading: .unbilled(endingBy: .max), now: now, exclusive: true
        ) {
            var changes = WindowChanges(dirty: false, recordReason: reason, deadLetterQueued: reason)
            LedgerEngine.emit($0, spec: spec, lane: lane, into: &changes)
            return changes
        }
        return (outcome.deadLettered, outcome.records)
    }

    /// Moves everything of lane `from` to lane `to`: its rows in every state (so `status`,
    /// `dlq` and `reconcile` read its history under the new name) and its windows. Queued rows
    /// keep their ids, attempts and due times, so a provider that already has one answers it as
    /// a duplicate. `targetAggregates` says whether `to` bills per window: windows with events
    /// not yet billed cannot move to a lane that never emits them. Refused while a worker
    /// delivers either lane.
    /// - Returns: the rows and windows moved, and the rows left because `to` holds their events.
    /// - Throws: `.invalidInput` when `from` has nothing, when both lanes have a window for the
    ///   same customer, meter and start, or when open windows would move to a lane without windows.
    @discardableResult
    public func reassignLane(_ from: String, to: String, targetAggregates: Bool) async throws -> (
        rows: Int, windows: Int, alreadyThere: Int
    ) {
        guard from != to else {
            throw UsageBillingError(
                .invalidInput, "the lanes are the same (\(from))",
                fix: "name the lane the rows are on and the lane to move them to", field: "to")
        }
        let location = self.location
        let moved = try await moveTransaction([(from, to)], exclusive: true) { from, to, facts in
            guard facts.rows + facts.windows > 0 else {
                throw UsageBillingError(
                    .invalidInput, "the ledger \(location) has no lane \(from)",
                    fix: "see `usage-billing status` for its lanes", field: "from")
            }
            if facts.openWindows > 0 && !targetAggregates {
                throw UsageBillingError(
                    .invalidInput,
                    "\(from) has \(facts.openWindows) window(s) with events not yet billed, and \(to) does not bill per window",
                    fix:
                        "move them to a lane whose provider aggregates, or emit them first (put the route back and run `worker --until-empty --close-windows`)",
                    field: "to")
            }
            if let shared = facts.sharedWindow { throw LedgerEngine.sharedWindow(from, to, shared) }
        }
        guard let only = moved.first else { return (0, 0, 0) }
        return (only.facts.rows - only.alreadyThere, only.facts.windows, only.alreadyThere)
    }

    /// Renames lanes in one transaction (positional lanes of an old spool), as ``reassignLane(_:to:targetAggregates:)``
    /// moves them.
    public func renameLanes(_ renames: [(from: String, to: String)]) async throws {
        _ = try await moveTransaction(renames, exclusive: false) { from, to, facts in
            if let shared = facts.sharedWindow { throw LedgerEngine.sharedWindow(from, to, shared) }
        }
    }
}
