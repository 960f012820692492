import Foundation
import UsageBilling

/// Where recorded events wait for their destinations: every event once (by id), one row per
/// destination lane, the lanes' aggregation windows and dead letters. Two implementations pass
/// one test suite: ``Spool`` (SQLite, one file, the embedded default: one host, one worker at a
/// time) and ``PostgresLedger`` (one database shared by a fleet of recorders and workers, each
/// lane delivered by one worker at a time under a lease).
///
/// ``openLedger(_:durability:)`` picks one by the location's form: a `postgres://` URL or a file
/// path.
public protocol UsageLedger: AnyObject, Sendable {
    /// Where it is, for messages and logs: the file, or the URL without its password.
    var location: String { get }

    /// Records entries durably, one row per lane, in one transaction: an event id already
    /// recorded (by any process) changes nothing. Returns the ids of `entries` that were
    /// recorded before (their stored events stay as they are), in the entries' order.
    @discardableResult
    func record(_ entries: [RecordEntry], now: Date) async throws -> [String]
    /// The stored events with these ids (those the ledger has).
    func storedEvents(ids: [String]) async throws -> [String: UsageEvent]
    /// Up to `limit` queued rows of `lane` due at `now`, in `seq` order after `after`;
    /// `windowRecords` limits them to raw events (false) or window records (true).
    func due(lane: String, limit: Int, now: Date, windowRecords: Bool?, after: Int64) async throws -> [QueuedDelivery]
    /// Records outcomes for rows. With a lease (``PostgresLedger``) the marks are written only while
    /// it is still the lane's current lease, else ``LeaseLostError`` and nothing changes.
    func mark(_ marks: [(seq: Int64, mark: DeliveryMark)], now: Date, lease: LaneLease?) async throws
    /// Durably notes that a send of these rows is starting (look-before-resend providers).
    func markSending(_ seqs: [Int64], now: Date) async throws
    /// Folds raw rows into their windows and marks them aggregated, once.
    func fold(_ rows: [QueuedDelivery], lane: String, spec: AggregationSpec, now: Date) async throws
    /// Emits a record per window with new events that has ended plus the grace period (or all).
    func closeWindows(lane: String, spec: AggregationSpec, now: Date, all: Bool) async throws -> Int
    /// The lane's windows, oldest first.
    func windows(lane: String) async throws -> [(key: WindowKey, state: WindowState)]
    /// When the lane's earliest window with new events ends.
    func nextWindowEnd(lane: String) async throws -> Date?
    /// When the lane's next queued row is due.
    func nextDue(lane: String) async throws -> Date?
    /// When the lane's oldest queued row was recorded: how far behind the lane is (the first
    /// entry of its queued rows' index, not a scan).
    func oldestQueued(lane: String) async throws -> Date?
    /// Queued rows of one lane, or of all when `lane` is nil.
    func queuedCount(lane: String?) async throws -> Int
    /// Whether the lane has a queued row: what a worker waiting for another's lease asks each
    /// second, without counting a backlog that another worker is marking.
    func hasQueued(lane: String) async throws -> Bool
    /// Counts per lane.
    func status() async throws -> [LaneStatus]
    /// Per lane, how many rows were queued at each of `instants` (ascending): rows recorded by
    /// then that were still queued, or left the queue (delivered, duplicate, dead, folded) later.
    /// One pass over the rows queued now or that left the queue since the first instant.
    func backlogHistory(at instants: [Date]) async throws -> [String: [Int]]
    /// Every lane name with rows or windows, sorted.
    func laneNames() async throws -> [String]
    /// Every raw event recorded for `lane` with its state there.
    func ledger(lane: String, _ visit: (UsageEvent, DeliveryState) throws -> Void) async throws
    /// Dead letters, oldest first.
    func deadLetters(reason: String?, limit: Int) async throws -> [DeadLetter]
    /// Makes delivered rows of `provider`'s lanes dead letters (Stripe's asynchronous refusals).
    func rejectDelivered(_ rejections: [(identifier: String, reason: RejectionReason)], provider: String, now: Date)
        async throws -> Int
    /// Queues dead letters again.
    func retryDeadLetters(reason: String?, now: Date) async throws -> Int
    /// Deletes dead letters.
    func purgeDeadLetters(reason: String?) async throws -> Int
    /// Renames lanes in one transaction (positional lanes of an old spool).
    func renameLanes(_ renames: [(from: String, to: String)]) async throws
    /// Moves everything of one lane to another (see ``LedgerStore/reassignLane(_:to:targetAggregates:)``),
    /// except rows of events the target already holds (`alreadyThere`: left on `from`, queued
    /// ones marked duplicates), so no id is queued twice on one lane.
    func reassignLane(_ from: String, to: String, targetAggregates: Bool) async throws -> (
        rows: Int, windows: Int, alreadyThere: Int
    )
    /// Voids the events `ids` (see ``LedgerStore/void(_:reason:now:)``).
    func void(_ ids: [String], reason: String, now: Date) async throws -> [VoidResult]
    /// Amends one event's quantity (see ``LedgerStore/amend(_:quantity:reason:now:)``); the
    /// caller records the replacement it returns.
    func amend(_ id: String, quantity: Decimal, reason: String, now: Date) async throws -> AmendResult
    /// Confirms the lane's voids made while this worker held it (``DeliveryState/voidedUnconfirmed``):
    /// called when the lane has nothing in flight and no mark unwritten. With a lease
    /// (``PostgresLedger``), only while it is still the lane's.
    func confirmVoids(lane: String, lease: LaneLease?) async throws
    /// The corrections of the events `ids` (every correction when nil), oldest first.
    func corrections(of ids: [String]?) async throws -> [CorrectionRecord]
    /// Up to `limit` corrections pending on `lane` and due at `now` whose event's row there has
    /// settled (it is no longer queued), oldest first.
    func dueCorrections(lane: String, now: Date, limit: Int) async throws -> [DueCorrection]
    /// Writes what came of corrections on `lane`, each only while it is still pending there;
    /// with a lease, only while it is still the lane's (else ``LeaseLostError``).
    func settleCorrections(_ settlements: [CorrectionSettlement], lane: String, now: Date, lease: LaneLease?)
        async throws
    /// When the next correction pending on `lane` whose row has settled is due; nil: none.
    func nextCorrectionDue(lane: String) async throws -> Date?
    /// Dead-letters a lane's undelivered work with reason `lane_removed`.
    func dropLane(_ lane: String, now: Date) async throws -> (rows: Int, windows: Int, corrections: Int)

    /// What one worker holds for the whole run before it delivers anything, or nil when the
    /// ledger hands out lanes one by one (``acquireLease(lane:owner:ttl:)``). The SQLite spool
    /// takes a file lock: one worker per spool.
    func acquireDeliveryLock() async throws -> (any DeliveryLock)?
    /// Takes `lane` for `owner` until `ttl` from now: a lease with a token newer than any before
    /// it, or nil while another owner's lease has not expired.
    func acquireLease(lane: String, owner: String, ttl: Duration) async throws -> LaneLease?
    /// Extends a lease; false when it is no longer the lane's lease (expired and taken).
    func renewLease(_ lease: LaneLease, ttl: Duration) async throws -> Bool
    /// Gives a lease up, so another worker can take the lane at once.
    func releaseLease(_ lease: LaneLease) async throws
    /// Who holds which lane's lease now (empty for the SQLite spool, which has none).
    func leases() async throws -> [LaneLease]
    /// Marks worker `owner` alive until `ttl` from now and returns how many workers are alive,
    /// this one included: what a fleet's workers divide the lanes by (``LaneShare``). A ledger
    /// one worker holds (the SQLite spool) answers 1.
    func heartbeat(owner: String, ttl: Duration) async throws -> Int
    /// Forgets worker `owner` (it stops), so the others' share grows at once.
    func signOff(owner: String) async throws

    /// Up to `limit` events after `afterKey` in the ledger's order, each with all its rows
    /// (``copyLedger(from:to:batch:progress:)``).
    func exportEntries(afterKey: Int64, limit: Int) async throws -> [LedgerEntry]
    /// Writes the events this ledger does not have, each with all its rows, in one
    /// transaction; returns how many. Events it has stay as they are.
    func importEntries(_ entries: [LedgerEntry]) async throws -> Int
    /// Every window.
    func exportWindows() async throws -> [LedgerWindow]
    /// Writes the windows this ledger does not have; returns how many.
    func importWindows(_ windows: [LedgerWindow]) async throws -> Int
    /// Every correction, with its lanes.
    func exportCorrections() async throws -> [LedgerCorrection]
    /// Writes the corrections this ledger does not have, of events it holds, in one
    /// transaction; returns how many.
    func importCorrections(_ corrections: [LedgerCorrection]) async throws -> Int
}

/// Held for a worker's whole run; released when it returns.
public protocol DeliveryLock: Sendable {
    func release()
}

/// One worker's right to deliver one lane until `expiresAt`. `token` grows with every new lease
/// of any lane, so marks written under an older one (a worker that stalled past its lease while
/// another took the lane) are refused: fencing.
public struct LaneLease: Sendable, Hashable {
    public var lane: String
    public var owner: String
    public var token: Int64
    public var expiresAt: Date

    public init(lane: String, owner: String, token: Int64, expiresAt: Date) {
        self.lane = lane
        self.owner = owner
        self.token = token
        self.expiresAt = expiresAt
    }
}

/// A lease that is no longer the lane's: another worker took it after it expired. The marks
/// were not written; the rows go again under the new owner, with the same ids.
public struct LeaseLostError: Error, CustomStringConvertible {
    public var lane: String
    public var token: Int64
    public var description: String {
        "the lease on lane \(lane) (token \(token)) was taken by another worker after it expired; nothing was marked and the rows go again with the same ids. Fix: if this repeats, the worker stalls longer than the lease: give it more CPU or a longer lease"
    }
}

extension UsageLedger {
    @discardableResult
    public func record(_ entries: [RecordEntry]) async throws -> [String] { try await record(entries, now: Date()) }
    public func due(lane: String, limit: Int, now: Date, windowRecords: Bool? = nil) async throws -> [QueuedDelivery] {
        try await due(lane: lane, limit: limit, now: now, windowRecords: windowRecords, after: 0)
    }
    public func mark(_ marks: [(seq: Int64, mark: DeliveryMark)], now: Date = Date()) async throws {
        try await mark(marks, now: now, lease: nil)
    }
    public func fold(_ rows: [QueuedDelivery], lane: String, spec: AggregationSpec) async throws {
        try await fold(rows, lane: lane, spec: spec, now: Date())
    }
    @discardableResult
    public func closeWindows(lane: String, spec: AggregationSpec, now: Date) async throws -> Int {
        try await closeWindows(lane: lane, spec: spec, now: now, all: false)
    }
    public func queuedCount() async throws -> Int { try await queuedCount(lane: nil) }
    public func hasQueued(lane: String) async throws -> Bool { try await queuedCount(lane: lane) > 0 }
    public func deadLetters() async throws -> [DeadLetter] { try await deadLetters(reason: nil, limit: 100) }
    public func retryDeadLetters() async throws -> Int { try await retryDeadLetters(reason: nil, now: Date()) }
    public func purgeDeadLetters() async throws -> Int { try await purgeDeadLetters(reason: nil) }
    public func dropLane(_ lane: String) async throws -> (rows: Int, windows: Int, corrections: Int) {
        try await dropLane(lane, now: Date())
    }
    public func rejectDelivered(_ rejections: [(identifier: String, reason: RejectionReason)], provider: String)
        async throws -> Int
    {
        try await rejectDelivered(rejections, provider: provider, now: Date())
    }
}

/// Opens the ledger at `location`: a `postgres://` (or `postgresql://`) URL opens
/// ``PostgresLedger`` (password from the URL or `PGPASSWORD`, never printed), anything else is
/// a SQLite spool file.
///
/// `readOnly`: for commands that only read (status, dead-letter lists, reconciliation); a spool
/// file is then opened without writing anything, so it works on a read-only copy.
public func openLedger(_ location: String, durability: SpoolDurability = .normal, readOnly: Bool = false) async throws
    -> any UsageLedger
{
    if PostgresLedger.isURL(location) { return try await PostgresLedger.open(location) }
    return try Spool(path: location, durability: durability, readOnly: readOnly)
}

/// The SQL both ledgers share for ``UsageLedger/backlogHistory(at:)``: the instants inline as
/// numbers (never text from outside), joined with the rows that were queued at each.
enum BacklogHistorySQL {
    static func query(table: String, instants: [Date]) -> String {
        let values = instants.enumerated().map {
            "(\($0.offset), \(String(format: "%.6f", $0.element.timeIntervalSince1970)))"
        }.joined(separator: ", ")
        let since = String(format: "%.6f", instants.first?.timeIntervalSince1970 ?? 0)
        return """
            WITH b(i, t) AS (VALUES \(values))
            SELECT d.lane, b.i, COUNT(*) FROM \(table) d JOIN b ON d.recorded_at <= b.t AND (d.state = \(DeliveryState.queued.sql) OR d.updated_at > b.t)
            WHERE d.state = \(DeliveryState.queued.sql) OR d.updated_at > \(since)
            GROUP BY d.lane, b.i
            """
    }

    /// Rows of (lane, instant index, count) as one series per lane, zeros where none.
    static func series(_ rows: [(String, Int, Int)], points: Int) -> [String: [Int]] {
        var out: [String: [Int]] = [:]
        for (lane, index, count) in rows where (0..<points).contains(index) {
            out[lane, default: Array(repeating: 0, count: points)][index] = count
        }
        return out
    }
}

/// One event to record and the lanes it goes to; `deadLetter` records it straight as dead on a
/// lane (an unrouted event kept under the `dead-letter` policy). What every ledger records.
public struct RecordEntry: Sendable {
    public var event: UsageEvent
    public var lanes: [String]
    public var deadLetter: (lane: String, reason: RejectionReason)?

    public init(event: UsageEvent, lanes: [String], deadLetter: (lane: String, reason: RejectionReason)? = nil) {
        self.event = event
        self.lanes = lanes
        self.deadLetter = deadLetter
    }
}

/// What became of one delivery row, as every ledger marks it.
public enum DeliveryMark: Sendable {
    case delivered, duplicate
    case dead(RejectionReason)
    /// Still queued: try again at `at`.
    case retry(at: Date, reason: String)
}

/// The state of one event at one destination lane.
public enum DeliveryState: Int, Sendable, CaseIterable {
    case queued = 0, delivered = 1, duplicate = 2, dead = 3
    /// A raw event folded into an aggregation window of its lane; the window's record (a row of
    /// its own) carries it to the provider.
    case aggregated = 4
    /// Voided before it was sent (``CorrectionLaneState/withheld``) while no worker held the
    /// lane, or confirmed since by the worker that holds it: never sent.
    case voided = 5
    /// Voided while a worker held the lane, which may have had it in flight: confirmed
    /// (``voided``) once that worker's lane is idle, or queued again with the correction pending
    /// if that worker died (the next one to take the lane cannot know what it had sent).
    case voidedUnconfirmed = 6
}

extension DeliveryState {
    /// Whether the row was voided before it was sent (confirmed or not).
    public var isVoided: Bool { self == .voided || self == .voidedUnconfirmed }

    /// The state as it stands in a statement's text (`state = \(DeliveryState.queued.sql)`): a
    /// literal, never a bound parameter, so the partial indexes on `state = 0` keep matching.
    var sql: String { String(rawValue) }
}
