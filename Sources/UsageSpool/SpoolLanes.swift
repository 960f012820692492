import Foundation
import GRDB
import UsageBilling

/// A lane the spool holds undelivered work for (queued or retrying rows, windows with events not
/// yet billed) that the routing config no longer has: nothing delivers it until it is moved
/// (`lanes reassign`) or dead-lettered (`lanes drop`).
public struct OrphanedLane: Sendable, Hashable, CustomStringConvertible {
    public var lane: String
    public var queued: Int
    public var retrying: Int
    public var openWindows: Int
    /// When its oldest queued row was recorded.
    public var oldestQueued: Date?

    public var description: String {
        var parts = ["\(queued) queued (\(retrying) retrying)"]
        if openWindows > 0 { parts.append("\(openWindows) window(s) with events not yet billed") }
        if let oldest = oldestQueued { parts.append("oldest recorded \(RFC3339.format(oldest))") }
        return "\(lane): " + parts.joined(separator: ", ")
    }
}

extension Spool {
    /// The lane dead letters of unrouted events are kept on (`unrouted: dead-letter`); it has no
    /// destination and is never an orphan.
    public static let unroutedLane = "unrouted"

    /// Every lane name the spool has rows or windows for, sorted.
    public func laneNames() throws -> [String] {
        try pool.read { db in
            try String.fetchAll(db, sql: "SELECT lane FROM deliveries UNION SELECT lane FROM windows ORDER BY 1")
        }
    }
}

extension UsageLedger {
    /// Lanes with undelivered work that `known` (the config's lane names) does not have.
    public func orphanedLanes(known: Set<String>) async throws -> [OrphanedLane] {
        try await status().compactMap { s in
            guard s.lane != Spool.unroutedLane, !known.contains(s.lane), s.queued > 0 || s.openWindows > 0 else {
                return nil
            }
            return OrphanedLane(
                lane: s.lane, queued: s.queued, retrying: s.retrying, openWindows: s.openWindows,
                oldestQueued: s.oldestQueued)
        }
    }
}

extension Spool {
    public func renameLanes(_ renames: [(from: String, to: String)]) async throws {
        try await pool.write { db in
            for (from, to) in renames { try Self.move(db, from: from, to: to) }
        }
    }

    /// Moves everything of lane `from` to lane `to`: its rows in every state (so `status`,
    /// `dlq` and `reconcile` read its history under the new name) and its windows. Queued rows
    /// keep their ids, attempts and due times, so a provider that already has one answers it as
    /// a duplicate. `targetAggregates` says whether `to` bills per window: windows with events
    /// not yet billed cannot move to a lane that never emits them.
    /// Takes the worker lock: it refuses while a worker delivers from the spool.
    /// - Returns: the rows and windows moved.
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
        // a running worker would deliver from a lane half-moved
        let lock = try await WorkerLock.acquire(spoolPath: path)
        defer { lock.release() }
        return try await pool.write { db in
            let rows =
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM deliveries WHERE lane = ?", arguments: [from]) ?? 0
            let windows =
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM windows WHERE lane = ?", arguments: [from]) ?? 0
            guard rows + windows > 0 else {
                throw UsageBillingError(
                    .invalidInput, "the spool has no lane \(from)",
                    fix: "see `usage-billing status` for the spool's lanes", field: "from")
            }
            let open =
                try Int.fetchOne(
                    db, sql: "SELECT COUNT(*) FROM windows WHERE lane = ? AND dirty = 1", arguments: [from]) ?? 0
            if open > 0 && !targetAggregates {
                throw UsageBillingError(
                    .invalidInput,
                    "\(from) has \(open) window(s) with events not yet billed, and \(to) does not bill per window",
                    fix:
                        "move them to a lane whose provider aggregates, or emit them first (put the route back and run `worker --until-empty --close-windows`)",
                    field: "to")
            }
            let already = try Self.move(db, from: from, to: to)
            return (rows - already, windows, already)
        }
    }

    /// Dead-letters everything `lane` has not delivered, with reason `lane_removed`: its queued
    /// rows, and a record for each window with events not yet billed (the increment since its
    /// last record). Nothing is deleted: `lanes reassign` and `dlq retry --reason lane_removed`
    /// bring them back. Returns the rows and window records dead-lettered.
    /// Takes the worker lock: it refuses while a worker delivers from the spool.
    @discardableResult
    public func dropLane(_ lane: String, now: Date) async throws -> (rows: Int, windows: Int) {
        let lock = try await WorkerLock.acquire(spoolPath: path)
        defer { lock.release() }
        let reason = RejectionReason(
            code: "lane_removed",
            message: "the routing config no longer has the lane \(lane); dead-lettered by `usage-billing lanes drop`",
            origin: .local)
        return try await pool.write { db in
            let t = now.timeIntervalSince1970
            try db.execute(
                sql: """
                    UPDATE deliveries SET state = \(DeliveryState.dead.sql), reason_code = ?, reason_message = ?, updated_at = ? WHERE lane = ? AND state = \(DeliveryState.queued.sql)
                    """, arguments: [reason.code, reason.description, t, lane])
            let rows = db.changesCount
            // Each open window's unbilled part, as the record the lane would have sent.
            let spec = AggregationSpec(window: .fixed(seconds: 3600), report: .increments)
            let encoder = JSONEncoder(), decoder = JSONDecoder()
            var windows = 0
            for row in try Row.fetchAll(
                db, sql: "SELECT customer, meter, start, state FROM windows WHERE lane = ? AND dirty = 1",
                arguments: [lane])
            {
                let key = WindowKey(customer: row[0], meter: row[1], start: row[2])
                var state = try decoder.decode(WindowState.self, from: row[3] as Data)
                if let record = WindowAggregator.record(for: key, state: &state, spec: spec, namespace: lane) {
                    try db.execute(
                        sql: "INSERT OR IGNORE INTO events (id, payload, recorded_at) VALUES (?, ?, ?)",
                        arguments: [record.id, PayloadCodec.encode(record), t])
                    if db.changesCount > 0 {
                        try db.execute(
                            sql: """
                                INSERT INTO deliveries (event, lane, state, recorded_at, updated_at, window_record, reason_code, reason_message)
                                VALUES (?, ?, 3, ?, ?, 1, ?, ?)
                                """, arguments: [db.lastInsertedRowID, lane, t, t, reason.code, reason.description])
                        windows += 1
                    }
                }
                try db.execute(
                    sql:
                        "UPDATE windows SET dirty = 0, state = ? WHERE lane = ? AND customer = ? AND meter = ? AND start = ?",
                    arguments: [try encoder.encode(state), lane, key.customer, key.meter, key.start])
            }
            return (rows, windows)
        }
    }

    /// Renames `from` to `to` in both tables, inside the caller's transaction.
    /// Moves `from`'s rows and windows to `to`, except rows of events `to` already holds: those
    /// stay on `from`, the queued ones marked duplicates, so no id is ever queued twice on one
    /// lane. Returns how many rows stayed.
    @discardableResult
    private static func move(_ db: Database, from: String, to: String) throws -> Int {
        let clash = try Row.fetchOne(
            db,
            sql: """
                SELECT a.customer, a.meter, a.start FROM windows a JOIN windows b
                  ON b.lane = ? AND b.customer = a.customer AND b.meter = a.meter AND b.start = a.start
                WHERE a.lane = ? LIMIT 1
                """, arguments: [to, from])
        if let clash {
            let customer: String = clash[0], meter: String = clash[1], start: Int64 = clash[2]
            throw UsageBillingError(
                .invalidInput,
                "\(from) and \(to) both have a window for customer '\(customer)', meter '\(meter)' starting \(RFC3339.format(Date(timeIntervalSince1970: TimeInterval(start)))); merging them could bill it twice",
                fix:
                    "deliver one lane's windows first (`worker --until-empty --close-windows` with its route in the config), or drop it",
                field: "to")
        }
        let already =
            try Int.fetchOne(
                db,
                sql: """
                    SELECT COUNT(*) FROM deliveries a WHERE a.lane = ? AND EXISTS (SELECT 1 FROM deliveries b WHERE b.lane = ? AND b.event = a.event)
                    """, arguments: [from, to]) ?? 0
        try db.execute(
            sql: """
                UPDATE deliveries SET state = \(DeliveryState.duplicate.rawValue), reason_code = 'already_on_lane', reason_message = ?
                WHERE lane = ? AND state = \(DeliveryState.queued.rawValue) AND EXISTS (SELECT 1 FROM deliveries b WHERE b.lane = ? AND b.event = deliveries.event)
                """, arguments: ["\(to) already holds this event; left here by `lanes reassign`", from, to])
        try db.execute(
            sql: """
                UPDATE deliveries SET lane = ? WHERE lane = ? AND NOT EXISTS (SELECT 1 FROM deliveries b WHERE b.lane = ? AND b.event = deliveries.event)
                """, arguments: [to, from, to])
        try db.execute(sql: "UPDATE windows SET lane = ? WHERE lane = ?", arguments: [to, from])
        return already
    }
}
