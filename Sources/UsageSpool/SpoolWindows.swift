import Foundation
import GRDB
import GRDBSQLite
import UsageBilling

/// The spool's aggregation windows: folds, emitted records, reads.
extension Spool {
    /// Folds raw rows of `lane` into its windows and marks them `aggregated`, in one transaction,
    /// so a crash either folds a row once or not at all.
    public func fold(_ rows: [QueuedDelivery], lane: String, spec: AggregationSpec, now: Date = Date()) async throws {
        guard !rows.isEmpty else { return }
        let aggregator = WindowAggregator(spec: spec, namespace: lane)
        try await pool.write { db in
            var touched: [WindowKey: WindowState] = [:]
            let encoder = JSONEncoder(), decoder = JSONDecoder()
            var bounds: (start: Date, end: Date)?
            // Cached statements: a fold reads and writes every window its rows touch (a window
            // per customer and meter), and parsing these per window cost a fifth of the fold.
            let select = try db.cachedStatement(
                sql: "SELECT state FROM windows WHERE lane = ? AND customer = ? AND meter = ? AND start = ?")
            // Only rows still queued now, inside the write: a row another fold took first
            // (reads that overlapped, or a worker that bypassed the worker lock) counts once.
            let seqs = "[" + rows.map { String($0.seq) }.joined(separator: ",") + "]"
            let live = Set(
                try Int64.fetchAll(
                    db,
                    sql:
                        "SELECT seq FROM deliveries WHERE seq IN (SELECT value FROM json_each(?)) AND state = \(DeliveryState.queued.sql)",
                    arguments: [seqs]))
            for row in rows where live.contains(row.seq) {
                let (key, end) = aggregator.key(for: row.event, reusing: &bounds)
                var state: WindowState
                if let known = touched[key] {
                    state = known
                } else if let data = try Data.fetchOne(select, arguments: [lane, key.customer, key.meter, key.start]) {
                    state = try decoder.decode(WindowState.self, from: data)
                } else {
                    state = WindowState(end: end)
                }
                WindowAggregator.fold(row.event, into: &state, formula: spec.formula)
                touched[key] = state
            }
            let save = try db.cachedStatement(
                sql:
                    "INSERT OR REPLACE INTO windows (lane, customer, meter, start, window_end, dirty, state) VALUES (?, ?, ?, ?, ?, 1, ?)"
            )
            for (key, state) in touched {
                try save.execute(arguments: [
                    lane, key.customer, key.meter, key.start, state.end, try encoder.encode(state),
                ])
            }
            let folded = try RawStatement(
                db,
                "UPDATE deliveries SET state = \(DeliveryState.aggregated.sql), updated_at = ? WHERE seq IN (SELECT value FROM json_each(?)) AND state = \(DeliveryState.queued.sql)"
            )
            folded.bind(1, now.timeIntervalSince1970)
            folded.bind(2, seqs)
            try folded.run()
        }
    }

    /// Emits a record for every window of `lane` with new events whose end plus the grace period
    /// has passed (or every such window, `all`): the record is recorded as an event with a queued
    /// row of its own, and the window's emitted revision is saved, in one transaction. Returns
    /// how many records were queued.
    @discardableResult
    public func closeWindows(lane: String, spec: AggregationSpec, now: Date, all: Bool = false) async throws -> Int {
        let limit = all ? Int64.max : Int64((now.timeIntervalSince1970 - spec.grace.seconds).rounded(.down))
        return try await pool.write { db in
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT customer, meter, start, state FROM windows WHERE lane = ? AND dirty = 1 AND window_end <= ? ORDER BY start, customer, meter
                    """, arguments: [lane, limit])
            let encoder = JSONEncoder(), decoder = JSONDecoder()
            let t = now.timeIntervalSince1970
            var queued = 0
            for row in rows {
                let key = WindowKey(customer: row[0], meter: row[1], start: row[2])
                var state = try decoder.decode(WindowState.self, from: row[3] as Data)
                if let record = WindowAggregator.record(for: key, state: &state, spec: spec, namespace: lane) {
                    try db.execute(
                        sql: "INSERT OR IGNORE INTO events (id, payload, recorded_at) VALUES (?, ?, ?)",
                        arguments: [record.id, PayloadCodec.encode(record), t])
                    if db.changesCount > 0 {  // a revision already queued stays as it is
                        try db.execute(
                            sql: """
                                INSERT INTO deliveries (event, lane, state, recorded_at, updated_at, window_record) VALUES (?, ?, 0, ?, ?, 1)
                                """, arguments: [db.lastInsertedRowID, lane, t, t])
                        queued += 1
                    }
                }
                try db.execute(
                    sql:
                        "UPDATE windows SET dirty = 0, state = ? WHERE lane = ? AND customer = ? AND meter = ? AND start = ?",
                    arguments: [try encoder.encode(state), lane, key.customer, key.meter, key.start])
            }
            return queued
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
