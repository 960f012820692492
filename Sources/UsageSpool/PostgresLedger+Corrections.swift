import Foundation
import PostgresNIO
import UsageBilling

/// The PostgreSQL ledger's corrections: the store's correction transaction (``LedgerStore``)
/// and reads.
extension PostgresLedger {
    /// Schema version 3. The trigger keeps a voided row honest whoever marks it: a send already
    /// under way when the row was voided may have reached the provider, so its mark makes the
    /// correction pending there, and a retry queues the row again (same id).
    static let correctionsSchema = [
        """
        CREATE TABLE ub_corrections (event bigint NOT NULL REFERENCES ub_events (key), number integer NOT NULL,
            kind text NOT NULL, reason text NOT NULL, recorded_at double precision NOT NULL, PRIMARY KEY (event, number))
        """,
        """
        CREATE TABLE ub_correction_lanes (event bigint NOT NULL, number integer NOT NULL, lane text NOT NULL,
            state smallint NOT NULL, reason_code text, reason_message text, updated_at double precision NOT NULL,
            PRIMARY KEY (event, number, lane))
        """,
        "CREATE INDEX ub_correction_lanes_pending ON ub_correction_lanes (lane, event) WHERE state = 1",
        """
        CREATE FUNCTION ub_voided_row_attempted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.state = 5 THEN NEW.state := 0; END IF;
            UPDATE ub_correction_lanes SET state = 1, updated_at = NEW.updated_at
                WHERE event = NEW.event AND lane = NEW.lane AND state = 0;
            RETURN NEW;
        END $$
        """,
        """
        CREATE TRIGGER ub_voided_row_attempted BEFORE UPDATE OF attempts ON ub_deliveries
            FOR EACH ROW WHEN (OLD.state = 5 AND NEW.attempts > OLD.attempts) EXECUTE FUNCTION ub_voided_row_attempted()
        """,
    ]

    /// Schema version 4: a void made while a worker held the lane (state 6) is confirmed by that
    /// worker (state 5), or queued again by the next one if its lease lapsed; a mark on either
    /// means the send had started.
    static let unconfirmedVoidsSchema = [
        "DROP TRIGGER ub_voided_row_attempted ON ub_deliveries",
        """
        CREATE OR REPLACE FUNCTION ub_voided_row_attempted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.state IN (5, 6) THEN NEW.state := 0; END IF;
            UPDATE ub_correction_lanes SET state = 1, updated_at = NEW.updated_at
                WHERE event = NEW.event AND lane = NEW.lane AND state = 0;
            RETURN NEW;
        END $$
        """,
        """
        CREATE TRIGGER ub_voided_row_attempted BEFORE UPDATE OF attempts ON ub_deliveries
            FOR EACH ROW WHEN (OLD.state IN (5, 6) AND NEW.attempts > OLD.attempts) EXECUTE FUNCTION ub_voided_row_attempted()
        """,
        "CREATE INDEX ub_deliveries_voided_unconfirmed ON ub_deliveries (lane) WHERE state = 6",
    ]

    /// Schema version 5: each correction lane names its event's row there (the row it waits
    /// for to settle), and counts its attempts at the provider and when the next is due.
    static let correctionDeliverySchema = [
        """
        ALTER TABLE ub_correction_lanes ADD COLUMN seq bigint, ADD COLUMN attempts integer NOT NULL DEFAULT 0,
            ADD COLUMN next_attempt_at double precision NOT NULL DEFAULT 0
        """,
        "ALTER TABLE ub_corrections ADD COLUMN quantity text",
        """
        UPDATE ub_correction_lanes l SET seq = (SELECT min(d.seq) FROM ub_deliveries d
            WHERE d.event = l.event AND d.lane = l.lane AND NOT d.window_record)
        """,
    ]

    func correctionTransaction(
        ids: [String], now: Date, _ decide: @Sendable ([String: CorrectionSnapshot]) throws -> CorrectionChanges
    ) async throws -> CorrectionChanges {
        let t = now.timeIntervalSince1970
        return try await transaction { c in
            // One correction of an event at a time, fleet-wide: two processes voiding one event
            // at once would both number theirs 1.
            for id in ids.sorted() {
                try await c.query("SELECT pg_advisory_xact_lock(hashtextextended(\(id), 2))", logger: self.logger)
            }
            let snapshots = try await self.correctionSnapshots(ids, c)
            var changes = try decide(snapshots)
            if !changes.voidRows.isEmpty {
                // A worker holding a row's lane may have read it and be sending it: those voids
                // stay unconfirmed until it confirms them (``confirmVoids(lane:lease:)``) or the
                // next worker to take the lane finds its lease lapsed.
                var held = Set<String>()
                for try await lane in try await c.query(
                    """
                    SELECT lane FROM ub_leases WHERE lane = ANY(\(Array(Set(changes.voidRows.map(\.lane))))::text[]) AND expires_at > now()
                    """, logger: self.logger
                ).decode(String.self) { held.insert(lane) }
                let unconfirmed = changes.voidRows.filter { held.contains($0.lane) }.map(\.seq)
                // A worker's mark may land between the read and this write: the rows it took out
                // of the queue are not voided here, and their corrections become pending.
                var voided = Set<Int64>()
                for try await seq in try await c.query(
                    """
                    UPDATE ub_deliveries
                    SET state = CASE WHEN seq = ANY(\(unconfirmed)::int8[]) THEN \(unescaped: DeliveryState.voidedUnconfirmed.sql) ELSE \(unescaped: DeliveryState.voided.sql) END,
                        updated_at = \(t)
                    WHERE seq = ANY(\(changes.voidRows.map(\.seq))::int8[]) AND state = \(unescaped: DeliveryState.queued.sql)
                      AND attempts = 0 AND first_attempt_at IS NULL
                    RETURNING seq
                    """, logger: self.logger
                ).decode(Int64.self) { voided.insert(seq) }
                for row in changes.voidRows where !voided.contains(row.seq) { changes.leftTheQueueMeanwhile(row) }
            }
            for (key, record, seqs) in changes.corrections {
                try await c.query(
                    """
                    INSERT INTO ub_corrections (event, number, kind, reason, recorded_at, quantity)
                    VALUES (\(key), \(record.number), \(record.kind.rawValue), \(record.reason), \(t),
                            \(record.quantity.map { DecimalFormat.plain($0) }))
                    """, logger: self.logger)
                let lanes = record.lanes.sorted { $0.key < $1.key }
                try await c.query(
                    """
                    INSERT INTO ub_correction_lanes (event, number, lane, state, updated_at, seq)
                    SELECT \(key), \(record.number), l.lane, l.state, \(t), l.seq
                    FROM unnest(\(lanes.map(\.key))::text[], \(lanes.map { Int16($0.value.rawValue) })::int2[],
                        \(lanes.map { seqs[$0.key] ?? 0 })::int8[]) AS l(lane, state, seq)
                    """, logger: self.logger)
            }
            return changes
        }
    }

    public func confirmVoids(lane: String, lease: LaneLease?) async throws {
        _ = try await run {
            try await self.client.query(
                """
                UPDATE ub_deliveries SET state = \(unescaped: DeliveryState.voided.sql)
                WHERE lane = \(lane) AND state = \(unescaped: DeliveryState.voidedUnconfirmed.sql)
                  AND (NOT \(lease != nil) OR EXISTS (SELECT 1 FROM ub_leases WHERE lane = \(lane) AND token = \(lease?.token ?? 0)))
                """, logger: self.logger)
        }
    }

    /// Run by a worker that just took `lane`'s lease: after a lease that lapsed (its worker died
    /// or stalled, perhaps with voided rows in flight) the unconfirmed voids are queued again
    /// (they go with the same ids, which the provider drops as repeats) with their corrections
    /// pending; after none (the last holder stopped cleanly, confirming what it held) they are
    /// confirmed.
    func settleUnconfirmedVoids(lane: String, afterLapsedLease: Bool) async throws {
        let t = Date().timeIntervalSince1970
        _ = try await transaction { c in
            if afterLapsedLease {
                try await c.query(
                    """
                    UPDATE ub_correction_lanes l SET state = \(Int16(CorrectionLaneState.pending.rawValue)), updated_at = \(t)
                    FROM ub_deliveries d
                    WHERE d.lane = \(lane) AND d.state = \(unescaped: DeliveryState.voidedUnconfirmed.sql)
                      AND l.event = d.event AND l.lane = d.lane AND l.state = \(Int16(CorrectionLaneState.withheld.rawValue))
                    """, logger: self.logger)
            }
            try await c.query(
                """
                UPDATE ub_deliveries SET state = \(unescaped: afterLapsedLease ? DeliveryState.queued.sql : DeliveryState.voided.sql)
                WHERE lane = \(lane) AND state = \(unescaped: DeliveryState.voidedUnconfirmed.sql)
                """, logger: self.logger)
        }
    }

    /// Each of the events `ids` the ledger holds, with its rows (one scan of the deliveries: they
    /// have no index by event, which recording would pay for) and its corrections.
    func correctionSnapshots(_ ids: [String], _ c: PostgresConnection) async throws -> [String: CorrectionSnapshot] {
        var byKey: [Int64: (id: String, snapshot: CorrectionSnapshot)] = [:]
        for try await (key, id) in try await c.query(
            "SELECT key, id FROM ub_events WHERE id = ANY(\(ids)::text[])", logger: logger
        ).decode((Int64, String).self) {
            byKey[key] = (id, CorrectionSnapshot(key: key, rows: [], corrections: []))
        }
        guard !byKey.isEmpty else { return [:] }
        let keys = Array(byKey.keys)
        for try await (key, seq, lane, state, attempts, started, record) in try await c.query(
            """
            SELECT event, seq, lane, state, attempts, first_attempt_at IS NOT NULL, window_record FROM ub_deliveries
            WHERE event = ANY(\(keys)::int8[]) ORDER BY seq
            """, logger: logger
        ).decode((Int64, Int64, String, Int16, Int32, Bool, Bool).self) {
            byKey[key]?.snapshot.rows.append(
                CorrectionSnapshot.Row(
                    seq: seq, lane: lane, state: DeliveryState(rawValue: Int(state)) ?? .queued,
                    attempts: Int(attempts),
                    sendStarted: started, isWindowRecord: record))
        }
        let keyOfID = Dictionary(uniqueKeysWithValues: byKey.map { ($0.value.id, $0.key) })
        for record in try await correctionRecords(keys: keys, c) {
            if let key = keyOfID[record.eventID] { byKey[key]?.snapshot.corrections.append(record) }
        }
        return Dictionary(uniqueKeysWithValues: byKey.values.map { ($0.id, $0.snapshot) })
    }

    /// The corrections of the events with these keys (every correction when nil), oldest first.
    func correctionRecords(keys: [Int64]?, _ c: PostgresConnection) async throws -> [CorrectionRecord] {
        let filter: PostgresQuery =
            if let keys {
                "SELECT c.event, e.id, c.number, c.kind, c.reason, c.recorded_at, c.quantity FROM ub_corrections c JOIN ub_events e ON e.key = c.event WHERE c.event = ANY(\(keys)::int8[])"
            } else {
                "SELECT c.event, e.id, c.number, c.kind, c.reason, c.recorded_at, c.quantity FROM ub_corrections c JOIN ub_events e ON e.key = c.event"
            }
        var records: [Int64: [CorrectionRecord]] = [:]
        for try await (key, id, number, kind, reason, at, quantity) in try await c.query(filter, logger: logger).decode(
            (Int64, String, Int32, String, String, Double, String?).self)
        {
            records[key, default: []].append(
                CorrectionRecord(
                    eventID: id, number: Int(number), kind: CorrectionKind(rawValue: kind) ?? .void, reason: reason,
                    recordedAt: Date(timeIntervalSince1970: at), lanes: [:],
                    quantity: quantity.flatMap { Decimal(string: $0) }))
        }
        let events = Array(records.keys)
        for try await (key, number, lane, state, note) in try await c.query(
            "SELECT event, number, lane, state, reason_message FROM ub_correction_lanes WHERE event = ANY(\(events)::int8[])",
            logger: logger
        ).decode((Int64, Int32, String, Int16, String?).self) {
            if let i = records[key]?.firstIndex(where: { $0.number == Int(number) }) {
                records[key]?[i].lanes[lane] = CorrectionLaneState(rawValue: Int(state)) ?? .pending
                if let note { records[key]?[i].notes[lane] = note }
            }
        }
        return records.values.flatMap { $0 }.sorted {
            ($0.recordedAt, $0.eventID, $0.number) < ($1.recordedAt, $1.eventID, $1.number)
        }
    }

    public func corrections(of ids: [String]?) async throws -> [CorrectionRecord] {
        try await transaction { c in
            guard let ids else { return try await self.correctionRecords(keys: nil, c) }
            var keys: [Int64] = []
            for try await key in try await c.query(
                "SELECT key FROM ub_events WHERE id = ANY(\(ids)::text[])", logger: self.logger
            ).decode(Int64.self) { keys.append(key) }
            return try await self.correctionRecords(keys: keys, c)
        }
    }
}

/// The PostgreSQL ledger's side of delivering corrections.
extension PostgresLedger {
    public func dueCorrections(lane: String, now: Date, limit: Int) async throws -> [DueCorrection] {
        try await run {
            var out: [DueCorrection] = []
            for try await (key, number, kind, attempts, recordedAt, state, updatedAt, payload) in try await self.client
                .query(
                    """
                    SELECT cl.event, cl.number, c.kind, cl.attempts, c.recorded_at, d.state, d.updated_at, e.payload
                    FROM ub_correction_lanes cl
                    JOIN ub_corrections c ON c.event = cl.event AND c.number = cl.number
                    JOIN ub_deliveries d ON d.seq = cl.seq
                    JOIN ub_events e ON e.key = cl.event
                    WHERE cl.lane = \(lane) AND cl.state = \(Int16(CorrectionLaneState.pending.rawValue))
                      AND cl.next_attempt_at <= \(now.timeIntervalSince1970)
                      AND d.state NOT IN (\(unescaped: DeliveryState.queued.sql), \(unescaped: DeliveryState.voidedUnconfirmed.sql))
                    ORDER BY cl.event, cl.number LIMIT \(limit)
                    """, logger: self.logger
                ).decode((Int64, Int32, String, Int32, Double, Int16, Double, ByteBuffer).self)
            {
                out.append(
                    DueCorrection(
                        eventKey: key, number: Int(number), kind: CorrectionKind(rawValue: kind) ?? .void,
                        event: try PayloadCodec.decode(Data(buffer: payload)),
                        rowState: DeliveryState(rawValue: Int(state)) ?? .queued,
                        rowUpdatedAt: Date(timeIntervalSince1970: updatedAt), attempts: Int(attempts),
                        recordedAt: Date(timeIntervalSince1970: recordedAt)))
            }
            return out
        }
    }

    /// Written only while `lease` is still the lane's (as marks are): a worker that lost the
    /// lane writes nothing, and the next holder applies the correction again under its id.
    public func settleCorrections(_ settlements: [CorrectionSettlement], lane: String, now: Date, lease: LaneLease?)
        async throws
    {
        guard !settlements.isEmpty else { return }
        let held = try await transaction { c in
            if let lease {
                var holds = false
                for try await _ in try await c.query(
                    "SELECT 1 FROM ub_leases WHERE lane = \(lane) AND token = \(lease.token) FOR SHARE",
                    logger: self.logger)
                { holds = true }
                guard holds else { return false }
            }
            try await self.write(settlements, lane: lane, now: now.timeIntervalSince1970, c)
            return true
        }
        if !held, let lease { throw LeaseLostError(lane: lease.lane, token: lease.token) }
    }

    public func nextCorrectionDue(lane: String) async throws -> Date? {
        try await run {
            var due: Double?
            for try await value in try await self.client.query(
                """
                SELECT MIN(cl.next_attempt_at) FROM ub_correction_lanes cl JOIN ub_deliveries d ON d.seq = cl.seq
                WHERE cl.lane = \(lane) AND cl.state = \(Int16(CorrectionLaneState.pending.rawValue))
                  AND d.state NOT IN (\(unescaped: DeliveryState.queued.sql), \(unescaped: DeliveryState.voidedUnconfirmed.sql))
                """, logger: self.logger
            ).decode(Double?.self) { due = value }
            return due.map { Date(timeIntervalSince1970: $0) }
        }
    }

    /// Writes settlements, each only while its correction is still pending on the lane.
    func write(_ settlements: [CorrectionSettlement], lane: String, now t: Double, _ c: PostgresConnection) async throws
    {
        guard !settlements.isEmpty else { return }
        try await c.query(
            """
            UPDATE ub_correction_lanes l SET state = s.state, reason_code = NULLIF(s.code, ''), reason_message = NULLIF(s.message, ''),
                attempts = l.attempts + s.attempted, next_attempt_at = s.retry_at, updated_at = \(t)
            FROM unnest(\(settlements.map(\.eventKey))::int8[], \(settlements.map { Int32($0.number) })::int4[],
                        \(settlements.map { Int16($0.state.rawValue) })::int2[], \(settlements.map { $0.reason?.code ?? "" })::text[],
                        \(settlements.map { $0.reason?.description ?? "" })::text[], \(settlements.map { $0.attempted ? Int32(1) : 0 })::int4[],
                        \(settlements.map { $0.retryAt?.timeIntervalSince1970 ?? 0 })::float8[])
                AS s(event, number, state, code, message, attempted, retry_at)
            WHERE l.event = s.event AND l.number = s.number AND l.lane = \(lane) AND l.state = \(Int16(CorrectionLaneState.pending.rawValue))
            """, logger: logger)
    }

    /// Which of `corrections` are still pending on `lane`.
    func pendingCorrections(_ corrections: [CorrectionRef], lane: String, _ c: PostgresConnection) async throws
        -> Set<CorrectionRef>
    {
        guard !corrections.isEmpty else { return [] }
        var pending = Set<CorrectionRef>()
        for try await (key, number) in try await c.query(
            """
            SELECT l.event, l.number FROM ub_correction_lanes l
            JOIN unnest(\(corrections.map(\.eventKey))::int8[], \(corrections.map { Int32($0.number) })::int4[]) AS r(event, number)
              ON l.event = r.event AND l.number = r.number
            WHERE l.lane = \(lane) AND l.state = \(Int16(CorrectionLaneState.pending.rawValue))
            """, logger: logger
        ).decode((Int64, Int32).self) { pending.insert(CorrectionRef(eventKey: key, number: Int(number))) }
        return pending
    }
}
