import Foundation
import GRDB
import GRDBSQLite
import UsageBilling

/// The spool's aggregation windows: the store's window transaction (``LedgerStore``), reads.
extension Spool: LedgerStore {
    func windowTransaction(
        lane: String, reading: WindowSelection, now: Date, exclusive: Bool,
        _ decide: @Sendable (WindowSnapshot) throws -> WindowChanges
    ) async throws -> WindowOutcome {
        // a running worker would deliver from a lane half-dropped
        let lock = exclusive ? try await WorkerLock.acquire(spoolPath: path) : nil
        defer { lock?.release() }
        return try await pool.write { db in
            var snapshot = WindowSnapshot()
            let decoder = JSONDecoder(), encoder = JSONEncoder()
            switch reading {
            case .keys(let keys, let rows, let corrections):
                snapshot.pendingCorrections = try Self.pendingCorrections(corrections, lane: lane, db: db)
                // Only rows still queued now, inside the write: a row another fold took first
                // (reads that overlapped, or a worker that bypassed the worker lock) counts once.
                let seqs = "[" + rows.map { String($0) }.joined(separator: ",") + "]"
                snapshot.queued = Set(
                    try Int64.fetchAll(
                        db,
                        sql:
                            "SELECT seq FROM deliveries WHERE seq IN (SELECT value FROM json_each(?)) AND state = \(DeliveryState.queued.sql)",
                        arguments: [seqs]))
                // Cached: a fold reads every window its rows touch (one per customer and meter).
                let select = try db.cachedStatement(
                    sql: "SELECT state FROM windows WHERE lane = ? AND customer = ? AND meter = ? AND start = ?")
                for key in keys {
                    if let data = try Data.fetchOne(select, arguments: [lane, key.customer, key.meter, key.start]) {
                        snapshot.windows.append((key, try decoder.decode(WindowState.self, from: data)))
                    }
                }
            case .unbilled(let limit):
                for row in try Row.fetchAll(
                    db,
                    sql: """
                        SELECT customer, meter, start, state FROM windows WHERE lane = ? AND dirty = 1 AND window_end <= ? ORDER BY start, customer, meter
                        """, arguments: [lane, limit])
                {
                    snapshot.windows.append(
                        (
                            WindowKey(customer: row[0], meter: row[1], start: row[2]),
                            try decoder.decode(WindowState.self, from: row[3] as Data)
                        ))
                }
            }
            let changes = try decide(snapshot)
            let t = now.timeIntervalSince1970
            var outcome = WindowOutcome()
            if let reason = changes.deadLetterQueued {
                try db.execute(
                    sql: """
                        UPDATE deliveries SET state = \(DeliveryState.dead.sql), reason_code = ?, reason_message = ?, updated_at = ? WHERE lane = ? AND state = \(DeliveryState.queued.sql)
                        """, arguments: [reason.code, reason.description, t, lane])
                outcome.deadLettered = db.changesCount
            }
            let recordState = changes.recordReason == nil ? DeliveryState.queued : .dead
            for record in changes.records {
                try db.execute(
                    sql: "INSERT OR IGNORE INTO events (id, payload, recorded_at) VALUES (?, ?, ?)",
                    arguments: [record.id, PayloadCodec.encode(record), t])
                guard db.changesCount > 0 else { continue }  // a revision already recorded stays as it is
                try db.execute(
                    sql: """
                        INSERT INTO deliveries (event, lane, state, recorded_at, updated_at, window_record, reason_code, reason_message)
                        VALUES (?, ?, \(recordState.sql), ?, ?, 1, ?, ?)
                        """,
                    arguments: [
                        db.lastInsertedRowID, lane, t, t, changes.recordReason?.code, changes.recordReason?.description,
                    ])
                outcome.records += 1
            }
            let save = try db.cachedStatement(
                sql:
                    "INSERT OR REPLACE INTO windows (lane, customer, meter, start, window_end, dirty, state) VALUES (?, ?, ?, ?, ?, ?, ?)"
            )
            for (key, state) in changes.save {
                try save.execute(arguments: [
                    lane, key.customer, key.meter, key.start, state.end, changes.dirty ? 1 : 0,
                    try encoder.encode(state),
                ])
            }
            try Self.write(changes.settle, lane: lane, now: t, db: db)
            if !changes.folded.isEmpty {
                let folded = try RawStatement(
                    db,
                    "UPDATE deliveries SET state = \(DeliveryState.aggregated.sql), updated_at = ? WHERE seq IN (SELECT value FROM json_each(?)) AND state = \(DeliveryState.queued.sql)"
                )
                folded.bind(1, t)
                folded.bind(2, "[" + changes.folded.map { String($0) }.joined(separator: ",") + "]")
                try folded.run()
            }
            return outcome
        }
    }

    /// The windows of `lane` (open and emitted), oldest first.
    public func windows(lane: String) throws -> [(key: WindowKey, state: WindowState)] {
        try pool.read { db in
            let decoder = JSONDecoder()
            return try Row.fetchAll(
                db,
                sql: "SELECT customer, meter, start, state FROM windows WHERE lane = ? ORDER BY start, customer, meter",
                arguments: [lane]
            ).map { row in
                (
                    WindowKey(customer: row[0], meter: row[1], start: row[2]),
                    try decoder.decode(WindowState.self, from: row[3] as Data)
                )
            }
        }
    }

    /// When `lane`'s earliest window with new events ends, or nil when none has any.
    public func nextWindowEnd(lane: String) throws -> Date? {
        try pool.read { db in
            try Int64.fetchOne(
                db, sql: "SELECT MIN(window_end) FROM windows WHERE lane = ? AND dirty = 1", arguments: [lane]
            )
            .map { Date(timeIntervalSince1970: TimeInterval($0)) }
        }
    }
}
