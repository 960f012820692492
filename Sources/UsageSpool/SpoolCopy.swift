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
}
