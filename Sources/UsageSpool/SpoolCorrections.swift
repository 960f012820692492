import Foundation
import GRDB
import UsageBilling

/// The spool's corrections: the store's correction transaction (``LedgerStore``) and reads.
extension Spool {
    func correctionTransaction(
        ids: [String], now: Date, _ decide: @Sendable ([String: CorrectionSnapshot]) throws -> CorrectionChanges
    ) async throws -> CorrectionChanges {
        try await pool.write { [path] db in
            // A running worker may have read a row it is about to send: its voids stay unconfirmed
            // until it confirms them (``confirmVoids(lane:lease:)``) or a later worker finds it
            // died. Asked inside the write: a worker starting now writes (its recovery) before it
            // reads, so it waits for this transaction and then does not see these rows queued.
            let state: DeliveryState = WorkerLock.holder(spoolPath: path) == nil ? .voided : .voidedUnconfirmed
            let snapshots = try Self.correctionSnapshots(ids, db: db)
            var changes = try decide(snapshots)
            let t = now.timeIntervalSince1970
            for row in changes.voidRows {
                try db.execute(
                    sql: """
                        UPDATE deliveries SET state = \(state.sql), updated_at = ? WHERE seq = ? AND state = \(DeliveryState.queued.sql) AND attempts = 0 AND first_attempt_at IS NULL
                        """, arguments: [t, row.seq])
                if db.changesCount == 0 { changes.leftTheQueueMeanwhile(row) }
            }
            for (key, record, seqs) in changes.corrections {
                try db.execute(
                    sql:
                        "INSERT INTO corrections (event, number, kind, reason, recorded_at, quantity) VALUES (?, ?, ?, ?, ?, ?)",
                    arguments: [
                        key, record.number, record.kind.rawValue, record.reason, t,
                        record.quantity.map { DecimalFormat.plain($0) },
                    ])
                for (lane, state) in record.lanes {
                    try db.execute(
                        sql:
                            "INSERT INTO correction_lanes (event, number, lane, state, updated_at, seq) VALUES (?, ?, ?, ?, ?, ?)",
                        arguments: [key, record.number, lane, state.rawValue, t, seqs[lane]])
                }
            }
            return changes
        }
    }

    /// Under the file lock every lane is this worker's.
    public func confirmVoids(lane: String, lease: LaneLease?) async throws {
        try await pool.write { db in
            try db.execute(
                sql: """
                    UPDATE deliveries SET state = \(DeliveryState.voided.sql) WHERE lane = ? AND state = \(DeliveryState.voidedUnconfirmed.sql)
                    """, arguments: [lane])
        }
    }

    /// Run by a worker that just took the file lock: a void the worker before it never confirmed
    /// may have been in flight when it died, so its row is queued again (it goes with the same
    /// id, and the provider drops a repeat) and its correction is pending there.
    func recoverUnconfirmedVoids() async throws {
        try await pool.write { db in
            try db.execute(
                sql: """
                    UPDATE correction_lanes SET state = \(CorrectionLaneState.pending.rawValue), updated_at = ?
                    WHERE state = \(CorrectionLaneState.withheld.rawValue) AND EXISTS (
                        SELECT 1 FROM deliveries d WHERE d.event = correction_lanes.event AND d.lane = correction_lanes.lane
                        AND d.state = \(DeliveryState.voidedUnconfirmed.sql))
                    """, arguments: [Date().timeIntervalSince1970])
            try db.execute(
                sql: """
                    UPDATE deliveries SET state = \(DeliveryState.queued.sql) WHERE state = \(DeliveryState.voidedUnconfirmed.sql)
                    """)
        }
    }

    /// Each of the events `ids` the spool holds, with its rows (one scan of the deliveries: they
    /// have no index by event, which recording would pay for) and its corrections.
    static func correctionSnapshots(_ ids: [String], db: Database) throws -> [String: CorrectionSnapshot] {
        var byKey: [Int64: (id: String, snapshot: CorrectionSnapshot)] = [:]
        for id in ids {
            if let key = try Int64.fetchOne(db, sql: "SELECT key FROM events WHERE id = ?", arguments: [id]) {
                byKey[key] = (id, CorrectionSnapshot(key: key, rows: [], corrections: []))
            }
        }
        guard !byKey.isEmpty else { return [:] }
        let keys = "[" + byKey.keys.map(String.init).joined(separator: ",") + "]"
        for row in try Row.fetchAll(
            db,
            sql: """
                SELECT event, seq, lane, state, attempts, first_attempt_at IS NOT NULL, window_record FROM deliveries
                WHERE event IN (SELECT value FROM json_each(?)) ORDER BY seq
                """, arguments: [keys])
        {
            let key: Int64 = row[0]
            byKey[key]?.snapshot.rows.append(
                CorrectionSnapshot.Row(
                    seq: row[1], lane: row[2], state: DeliveryState(rawValue: row[3]) ?? .queued, attempts: row[4],
                    sendStarted: row[5], isWindowRecord: row[6]))
        }
        for (key, entry) in byKey {
            byKey[key]?.snapshot.corrections = try corrections(event: key, id: entry.id, db: db)
        }
        return Dictionary(uniqueKeysWithValues: byKey.values.map { ($0.id, $0.snapshot) })
    }

    static func corrections(event key: Int64, id: String, db: Database) throws -> [CorrectionRecord] {
        var lanes: [Int: [String: CorrectionLaneState]] = [:], notes: [Int: [String: String]] = [:]
        for row in try Row.fetchAll(
            db, sql: "SELECT number, lane, state, reason_message FROM correction_lanes WHERE event = ?",
            arguments: [key])
        {
            lanes[row[0], default: [:]][row[1]] = CorrectionLaneState(rawValue: row[2]) ?? .pending
            if let note: String = row[3] { notes[row[0], default: [:]][row[1]] = note }
        }
        return try Row.fetchAll(
            db,
            sql: "SELECT number, kind, reason, recorded_at, quantity FROM corrections WHERE event = ? ORDER BY number",
            arguments: [key]
        ).map { row in
            CorrectionRecord(
                eventID: id, number: row[0], kind: CorrectionKind(rawValue: row[1]) ?? .void, reason: row[2],
                recordedAt: Date(timeIntervalSince1970: row[3]), lanes: lanes[row[0]] ?? [:],
                notes: notes[row[0]] ?? [:], quantity: (row[4] as String?).flatMap { Decimal(string: $0) })
        }
    }

    public func corrections(of ids: [String]?) async throws -> [CorrectionRecord] {
        try await pool.read { db in
            let events: [(Int64, String)]
            if let ids {
                events = try ids.compactMap { id in
                    try Int64.fetchOne(db, sql: "SELECT key FROM events WHERE id = ?", arguments: [id]).map { ($0, id) }
                }
            } else {
                events = try Row.fetchAll(
                    db,
                    sql:
                        "SELECT DISTINCT c.event, e.id FROM corrections c JOIN events e ON e.key = c.event ORDER BY c.event"
                ).map { ($0[0], $0[1]) }
            }
            return try events.flatMap { try Self.corrections(event: $0.0, id: $0.1, db: db) }
                .sorted { ($0.recordedAt, $0.eventID, $0.number) < ($1.recordedAt, $1.eventID, $1.number) }
        }
    }
}

/// The spool's side of delivering corrections (``CorrectionDelivery``).
extension Spool {
    // The worker's reads are synchronous, as on the rest of its path: an async read waits for a
    // reader on another thread and is resumed on the cooperative pool, which synchronous reads
    // waiting for readers there can exhaust.
    public func dueCorrections(lane: String, now: Date, limit: Int) throws -> [DueCorrection] {
        try pool.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT cl.event, cl.number, c.kind, cl.attempts, c.recorded_at, d.state, d.updated_at, e.payload
                    FROM correction_lanes cl
                    JOIN corrections c ON c.event = cl.event AND c.number = cl.number
                    JOIN deliveries d ON d.seq = cl.seq
                    JOIN events e ON e.key = cl.event
                    WHERE cl.lane = ? AND cl.state = \(CorrectionLaneState.pending.rawValue) AND cl.next_attempt_at <= ?
                      AND d.state NOT IN (\(DeliveryState.queued.sql), \(DeliveryState.voidedUnconfirmed.sql))
                    ORDER BY cl.event, cl.number LIMIT ?
                    """, arguments: [lane, now.timeIntervalSince1970, limit]
            ).map { row in
                DueCorrection(
                    eventKey: row[0], number: row[1], kind: CorrectionKind(rawValue: row[2]) ?? .void,
                    event: try PayloadCodec.decode(row[7] as Data),
                    rowState: DeliveryState(rawValue: row[5]) ?? .queued,
                    rowUpdatedAt: Date(timeIntervalSince1970: row[6]), attempts: row[3],
                    recordedAt: Date(timeIntervalSince1970: row[4]))
            }
        }
    }

    /// Under the file lock every lane is this worker's.
    public func settleCorrections(_ settlements: [CorrectionSettlement], lane: String, now: Date, lease: LaneLease?)
        async throws
    {
        guard !settlements.isEmpty else { return }
        try await pool.write { db in try Self.write(settlements, lane: lane, now: now.timeIntervalSince1970, db: db) }
    }

    public func nextCorrectionDue(lane: String) throws -> Date? {
        try pool.read { db in
            try Double.fetchOne(
                db,
                sql: """
                    SELECT MIN(cl.next_attempt_at) FROM correction_lanes cl JOIN deliveries d ON d.seq = cl.seq
                    WHERE cl.lane = ? AND cl.state = \(CorrectionLaneState.pending.rawValue) AND d.state NOT IN (\(DeliveryState.queued.sql), \(DeliveryState.voidedUnconfirmed.sql))
                    """, arguments: [lane]
            ).map { Date(timeIntervalSince1970: $0) }
        }
    }

    /// Writes settlements, each only while its correction is still pending on the lane.
    static func write(_ settlements: [CorrectionSettlement], lane: String, now t: Double, db: Database) throws {
        for s in settlements {
            try db.execute(
                sql: """
                    UPDATE correction_lanes SET state = ?, reason_code = ?, reason_message = ?,
                        attempts = attempts + ?, next_attempt_at = ?, updated_at = ?
                    WHERE event = ? AND number = ? AND lane = ? AND state = \(CorrectionLaneState.pending.rawValue)
                    """,
                arguments: [
                    s.state.rawValue, s.reason?.code, s.reason?.description, s.attempted ? 1 : 0,
                    s.retryAt?.timeIntervalSince1970 ?? 0, t, s.eventKey, s.number, lane,
                ])
        }
    }

    /// Which of `corrections` are still pending on `lane`.
    static func pendingCorrections(_ corrections: [CorrectionRef], lane: String, db: Database) throws -> Set<
        CorrectionRef
    > {
        try Set(
            corrections.filter { ref in
                try Bool.fetchOne(
                    db,
                    sql: """
                        SELECT 1 FROM correction_lanes WHERE event = ? AND number = ? AND lane = ? AND state = \(CorrectionLaneState.pending.rawValue)
                        """, arguments: [ref.eventKey, ref.number, lane]) != nil
            })
    }
}
