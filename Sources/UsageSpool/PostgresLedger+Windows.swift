import Foundation
import PostgresNIO
import UsageBilling

/// The aggregation windows of the PostgreSQL ledger: folding, emitting, revisions.
extension PostgresLedger: LedgerStore {
    /// Every transaction that writes a lane's windows takes this lock first, so folds and
    /// emissions of one lane never interleave, whichever workers run them.
    func lockWindows(_ lane: String, _ c: PostgresConnection) async throws {
        try await c.query("SELECT pg_advisory_xact_lock(hashtextextended(\(lane), 1))", logger: logger)
    }

    func windowTransaction(
        lane: String, reading: WindowSelection, now: Date, exclusive: Bool,
        _ decide: @Sendable (WindowSnapshot) throws -> WindowChanges
    ) async throws -> WindowOutcome {
        let t = now.timeIntervalSince1970
        return try await transaction { c in
            if exclusive { try await self.refuseWhileLeased([lane], c) }
            try await self.lockWindows(lane, c)
            var snapshot = WindowSnapshot()
            let decoder = JSONDecoder(), encoder = JSONEncoder()
            let windows: PostgresQuery
            switch reading {
            case .keys(let keys, let rows, let corrections):
                snapshot.pendingCorrections = try await self.pendingCorrections(corrections, lane: lane, c)
                // Only rows still queued now, inside the lock: rows two folds were handed count once.
                for try await seq in try await c.query(
                    """
                    SELECT seq FROM ub_deliveries WHERE seq = ANY(\(rows)::int8[]) AND state = \(unescaped: DeliveryState.queued.sql)
                    """, logger: self.logger
                ).decode(Int64.self) { snapshot.queued.insert(seq) }
                windows = """
                    SELECT w.customer, w.meter, w.start, w.state FROM ub_windows w
                    JOIN unnest(\(keys.map(\.customer))::text[], \(keys.map(\.meter))::text[], \(keys.map(\.start))::int8[]) AS k(customer, meter, start)
                      ON w.customer = k.customer AND w.meter = k.meter AND w.start = k.start
                    WHERE w.lane = \(lane)
                    """
            case .unbilled(let limit):
                windows = """
                    SELECT customer, meter, start, state FROM ub_windows WHERE lane = \(lane) AND dirty AND window_end <= \(limit) ORDER BY start, customer, meter
                    """
            }
            for try await (customer, meter, start, state) in try await c.query(windows, logger: self.logger).decode(
                (String, String, Int64, ByteBuffer).self)
            {
                snapshot.windows.append(
                    (
                        WindowKey(customer: customer, meter: meter, start: start),
                        try decoder.decode(WindowState.self, from: Data(buffer: state))
                    ))
            }
            let changes = try decide(snapshot)
            var outcome = WindowOutcome()
            if let reason = changes.deadLetterQueued {
                outcome.deadLettered = try await self.scalar(
                    c,
                    """
                    WITH changed AS (UPDATE ub_deliveries SET state = \(unescaped: DeliveryState.dead.sql), reason_code = \(reason.code), reason_message = \(reason.description), updated_at = \(t)
                                     WHERE lane = \(lane) AND state = \(unescaped: DeliveryState.queued.sql) RETURNING seq) SELECT COUNT(*) FROM changed
                    """)
            }
            let recordState = changes.recordReason == nil ? DeliveryState.queued : .dead
            for record in changes.records {
                // a revision already recorded stays as it is
                outcome.records += try await self.scalar(
                    c,
                    """
                    WITH ins AS (INSERT INTO ub_events (id, payload, recorded_at) VALUES (\(record.id), \(ByteBuffer(data: PayloadCodec.encode(record))), \(t))
                                 ON CONFLICT (id) DO NOTHING RETURNING key),
                         d AS (INSERT INTO ub_deliveries (event, lane, state, recorded_at, updated_at, window_record, reason_code, reason_message)
                               SELECT key, \(lane), \(unescaped: recordState.sql), \(t), \(t), true, \(changes.recordReason?.code), \(changes.recordReason?.description) FROM ins RETURNING seq)
                    SELECT COUNT(*) FROM d
                    """)
            }
            if !changes.save.isEmpty {
                let keys = changes.save.map(\.key)
                let saved = try changes.save.map { ByteBuffer(data: try encoder.encode($0.state)) }
                try await c.query(
                    """
                    INSERT INTO ub_windows (lane, customer, meter, start, window_end, dirty, state)
                    SELECT \(lane), k.customer, k.meter, k.start, k.window_end, \(changes.dirty), k.state
                    FROM unnest(\(keys.map(\.customer))::text[], \(keys.map(\.meter))::text[], \(keys.map(\.start))::int8[],
                                \(changes.save.map(\.state.end))::int8[], \(saved)::bytea[]) AS k(customer, meter, start, window_end, state)
                    ON CONFLICT (lane, customer, meter, start) DO UPDATE SET window_end = EXCLUDED.window_end, dirty = EXCLUDED.dirty, state = EXCLUDED.state
                    """, logger: self.logger)
            }
            try await self.write(changes.settle, lane: lane, now: t, c)
            if !changes.folded.isEmpty {
                try await c.query(
                    """
                    UPDATE ub_deliveries SET state = \(unescaped: DeliveryState.aggregated.sql), updated_at = \(t) WHERE seq = ANY(\(changes.folded)::int8[]) AND state = \(unescaped: DeliveryState.queued.sql)
                    """, logger: self.logger)
            }
            return outcome
        }
    }

    public func windows(lane: String) async throws -> [(key: WindowKey, state: WindowState)] {
        try await run {
            let decoder = JSONDecoder()
            var out: [(key: WindowKey, state: WindowState)] = []
            for try await (customer, meter, start, state) in try await self.client.query(
                """
                SELECT customer, meter, start, state FROM ub_windows WHERE lane = \(lane) ORDER BY start, customer, meter
                """, logger: self.logger
            ).decode((String, String, Int64, ByteBuffer).self) {
                out.append(
                    (
                        WindowKey(customer: customer, meter: meter, start: start),
                        try decoder.decode(WindowState.self, from: Data(buffer: state))
                    ))
            }
            return out
        }
    }

    public func nextWindowEnd(lane: String) async throws -> Date? {
        try await first("SELECT MIN(window_end) FROM ub_windows WHERE lane = \(lane) AND dirty", as: Int64?.self)
            .flatMap { $0 }.map { Date(timeIntervalSince1970: TimeInterval($0)) }
    }

    public func nextDue(lane: String) async throws -> Date? {
        try await first(
            "SELECT MIN(next_attempt_at) FROM ub_deliveries WHERE lane = \(lane) AND state = \(unescaped: DeliveryState.queued.sql)",
            as: Double?.self
        )
        .flatMap { $0 }.map(Date.init(timeIntervalSince1970:))
    }

    public func oldestQueued(lane: String) async throws -> Date? {
        try await first(
            "SELECT recorded_at FROM ub_deliveries WHERE lane = \(lane) AND state = \(unescaped: DeliveryState.queued.sql) ORDER BY seq LIMIT 1",
            as: Double.self
        )
        .map(Date.init(timeIntervalSince1970:))
    }
}
