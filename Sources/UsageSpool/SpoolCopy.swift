import Foundation
import GRDB
import UsageBilling

/// The spool's side of ``copyLedger(from:to:batch:progress:)``.
extension Spool {
    public func exportEntries(afterKey: Int64, limit: Int) async throws -> [LedgerEntry] {
        try await pool.read { db in
            // The batch's key range first, then its events with their rows (the rows table has
            // no index on the event: one scan of it per batch, and a copy runs once).
            guard
                let upper = try Int64.fetchOne(
                    db, sql: "SELECT MAX(key) FROM (SELECT key FROM events WHERE key > ? ORDER BY key LIMIT ?)",
                    arguments: [afterKey, limit])
            else { return [] }
            var entries: [LedgerEntry] = []
            var byKey: [Int64: Int] = [:]
            for row in try Row.fetchAll(
                db, sql: "SELECT key, payload, recorded_at FROM events WHERE key > ? AND key <= ? ORDER BY key",
                arguments: [afterKey, upper])
            {
                let key: Int64 = row[0]
                byKey[key] = entries.count
                entries.append(
                    LedgerEntry(key: key, event: try PayloadCodec.decode(row[1] as Data), recordedAt: row[2], rows: []))
            }
            for row in try Row.fetchAll(
                db,
                sql: """
                    SELECT event, lane, state, attempts, next_attempt_at, first_attempt_at, reason_code, reason_message, window_record, recorded_at, updated_at
                    FROM deliveries WHERE event > ? AND event <= ? ORDER BY seq
                    """, arguments: [afterKey, upper])
            {
                guard let index = byKey[row[0]] else { continue }
                entries[index].rows.append(
                    LedgerEntry.Row(
                        lane: row[1], state: row[2], attempts: row[3], nextAttemptAt: row[4], firstAttemptAt: row[5],
                        reasonCode: row[6], reasonMessage: row[7], windowRecord: (row[8] as Int) != 0,
                        recordedAt: row[9], updatedAt: row[10]))
            }
            return entries
        }
    }

    public func importEntries(_ entries: [LedgerEntry]) async throws -> Int {
        try await pool.write { db in
            var copied = 0
            let event = try db.cachedStatement(
                sql: "INSERT OR IGNORE INTO events (id, payload, recorded_at) VALUES (?, ?, ?)")
            let row = try db.cachedStatement(
                sql: """
                    INSERT INTO deliveries (event, lane, state, attempts, next_attempt_at, first_attempt_at, reason_code, reason_message, window_record, recorded_at, updated_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """)
            for entry in entries {
                try event.execute(arguments: [entry.event.id, PayloadCodec.encode(entry.event), entry.recordedAt])
                guard db.changesCount > 0 else { continue }  // the target has it, rows and all
                let key = db.lastInsertedRowID
                for r in entry.rows {
                    try row.execute(arguments: [
                        key, r.lane, r.state, r.attempts, r.nextAttemptAt, r.firstAttemptAt, r.reasonCode,
                        r.reasonMessage,
                        r.windowRecord ? 1 : 0, r.recordedAt, r.updatedAt,
                    ])
                }
                copied += 1
            }
            return copied
        }
    }

    public func exportWindows() async throws -> [LedgerWindow] {
        try await pool.read { db in
            try Row.fetchAll(
                db,
                sql:
                    "SELECT lane, customer, meter, start, window_end, dirty, state FROM windows ORDER BY lane, start, customer, meter"
            ).map {
                LedgerWindow(
                    lane: $0[0], key: WindowKey(customer: $0[1], meter: $0[2], start: $0[3]), end: $0[4],
                    dirty: ($0[5] as Int) != 0, state: $0[6])
            }
        }
    }

    public func importWindows(_ windows: [LedgerWindow]) async throws -> Int {
        try await pool.write { db in
            var copied = 0
            let insert = try db.cachedStatement(
                sql:
                    "INSERT OR IGNORE INTO windows (lane, customer, meter, start, window_end, dirty, state) VALUES (?, ?, ?, ?, ?, ?, ?)"
            )
            for w in windows {
                try insert.execute(arguments: [
                    w.lane, w.key.customer, w.key.meter, w.key.start, w.end, w.dirty ? 1 : 0, w.state,
                ])
                copied += db.changesCount
            }
            return copied
        }
    }

    public func exportCorrections() async throws -> [LedgerCorrection] {
        try await pool.read { db in
            var out: [LedgerCorrection] = []
            var index: [String: Int] = [:]
            for row in try Row.fetchAll(
                db,
                sql: """
                    SELECT e.id, c.number, c.kind, c.reason, c.recorded_at, c.quantity
                    FROM corrections c JOIN events e ON e.key = c.event ORDER BY c.event, c.number
                    """)
            {
                index["\(row[0] as String)\u{1F}\(row[1] as Int)"] = out.count
                out.append(
                    LedgerCorrection(
                        eventID: row[0], number: row[1], kind: row[2], reason: row[3], recordedAt: row[4],
                        quantity: row[5], lanes: []))
            }
            for row in try Row.fetchAll(
                db,
                sql: """
                    SELECT e.id, l.number, l.lane, l.state, l.reason_code, l.reason_message, l.updated_at, l.attempts, l.next_attempt_at
                    FROM correction_lanes l JOIN events e ON e.key = l.event ORDER BY l.event, l.number, l.lane
                    """)
            {
                guard let i = index["\(row[0] as String)\u{1F}\(row[1] as Int)"] else { continue }
                out[i].lanes.append(
                    LedgerCorrection.Lane(
                        lane: row[2], state: row[3], reasonCode: row[4], reasonMessage: row[5], updatedAt: row[6],
                        attempts: row[7], nextAttemptAt: row[8]))
            }
            return out
        }
    }

    public func importCorrections(_ corrections: [LedgerCorrection]) async throws -> Int {
        guard !corrections.isEmpty else { return 0 }
        return try await pool.write { db in
            var copied = 0
            let correction = try db.cachedStatement(
                sql: """
                    INSERT OR IGNORE INTO corrections (event, number, kind, reason, recorded_at, quantity)
                    SELECT key, ?, ?, ?, ?, ? FROM events WHERE id = ?
                    """)
            let lane = try db.cachedStatement(
                sql: """
                    INSERT INTO correction_lanes (event, number, lane, state, reason_code, reason_message, updated_at, attempts, next_attempt_at, seq)
                    SELECT e.key, ?, ?, ?, ?, ?, ?, ?, ?,
                        (SELECT MIN(d.seq) FROM deliveries d WHERE d.event = e.key AND d.lane = ? AND d.window_record = 0)
                    FROM events e WHERE e.id = ?
                    """)
            for c in corrections {
                try correction.execute(arguments: [c.number, c.kind, c.reason, c.recordedAt, c.quantity, c.eventID])
                guard db.changesCount > 0 else { continue }  // the target has it, or not its event
                for l in c.lanes {
                    try lane.execute(arguments: [
                        c.number, l.lane, l.state, l.reasonCode, l.reasonMessage, l.updatedAt, l.attempts,
                        l.nextAttemptAt, l.lane, c.eventID,
                    ])
                }
                copied += 1
            }
            return copied
        }
    }
}
