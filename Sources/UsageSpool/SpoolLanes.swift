import Foundation
import GRDB
import UsageBilling

/// A lane the spool holds undelivered work for (queued or retrying rows, windows with events not
/// yet billed, corrections not yet applied at the provider) that the routing config no longer
/// has: nothing delivers it until it is moved (`lanes reassign`) or dead-lettered (`lanes drop`).
public struct OrphanedLane: Sendable, Hashable, CustomStringConvertible {
    public var lane: String
    public var queued: Int
    public var retrying: Int
    public var openWindows: Int
    /// Corrections pending there: the provider still bills those events.
    public var pendingCorrections: Int = 0
    /// When its oldest queued row was recorded.
    public var oldestQueued: Date?

    public var description: String {
        var parts = ["\(queued) queued (\(retrying) retrying)"]
        if openWindows > 0 { parts.append("\(openWindows) window(s) with events not yet billed") }
        if pendingCorrections > 0 {
            parts.append("\(pendingCorrections) correction(s) not yet applied at the provider")
        }
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
            let pending = s.corrections[.pending] ?? 0
            guard s.lane != Spool.unroutedLane, !known.contains(s.lane),
                s.queued > 0 || s.openWindows > 0 || pending > 0
            else { return nil }
            return OrphanedLane(
                lane: s.lane, queued: s.queued, retrying: s.retrying, openWindows: s.openWindows,
                pendingCorrections: pending, oldestQueued: s.oldestQueued)
        }
    }
}

extension Spool {
    func moveTransaction(
        _ moves: [(from: String, to: String)], exclusive: Bool,
        _ check: @Sendable (_ from: String, _ to: String, LaneFacts) throws -> Void
    ) async throws -> [(facts: LaneFacts, alreadyThere: Int)] {
        // a running worker would deliver from a lane half-moved
        let lock = exclusive ? try await WorkerLock.acquire(spoolPath: path) : nil
        defer { lock?.release() }
        return try await pool.write { db in
            try moves.map { from, to in
                func count(_ sql: String) throws -> Int { try Int.fetchOne(db, sql: sql, arguments: [from]) ?? 0 }
                let shared = try Row.fetchOne(
                    db,
                    sql: """
                        SELECT a.customer, a.meter, a.start FROM windows a JOIN windows b
                          ON b.lane = ? AND b.customer = a.customer AND b.meter = a.meter AND b.start = a.start
                        WHERE a.lane = ? LIMIT 1
                        """, arguments: [to, from]
                ).map { WindowKey(customer: $0[0], meter: $0[1], start: $0[2]) }
                let facts = LaneFacts(
                    rows: try count("SELECT COUNT(*) FROM deliveries WHERE lane = ?"),
                    windows: try count("SELECT COUNT(*) FROM windows WHERE lane = ?"),
                    openWindows: try count("SELECT COUNT(*) FROM windows WHERE lane = ? AND dirty = 1"),
                    sharedWindow: shared)
                try check(from, to, facts)
                let already =
                    try Int.fetchOne(
                        db,
                        sql: """
                            SELECT COUNT(*) FROM deliveries a WHERE a.lane = ? AND EXISTS (SELECT 1 FROM deliveries b WHERE b.lane = ? AND b.event = a.event)
                            """, arguments: [from, to]) ?? 0
                try db.execute(
                    sql: """
                        UPDATE deliveries SET state = \(DeliveryState.duplicate.sql), reason_code = ?, reason_message = ?
                        WHERE lane = ? AND state = \(DeliveryState.queued.sql) AND EXISTS (SELECT 1 FROM deliveries b WHERE b.lane = ? AND b.event = deliveries.event)
                        """, arguments: [LedgerEngine.alreadyOnLaneCode, LedgerEngine.alreadyOnLane(to), from, to])
                // An event's corrections go where its row goes (before the rows move, by the same test).
                try db.execute(
                    sql: """
                        UPDATE correction_lanes SET lane = ? WHERE lane = ? AND NOT EXISTS (SELECT 1 FROM deliveries b WHERE b.lane = ? AND b.event = correction_lanes.event)
                        """, arguments: [to, from, to])
                try db.execute(
                    sql: """
                        UPDATE deliveries SET lane = ? WHERE lane = ? AND NOT EXISTS (SELECT 1 FROM deliveries b WHERE b.lane = ? AND b.event = deliveries.event)
                        """, arguments: [to, from, to])
                try db.execute(sql: "UPDATE windows SET lane = ? WHERE lane = ?", arguments: [to, from])
                return (facts, already)
            }
        }
    }
}
