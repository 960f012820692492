import Foundation
import PostgresNIO
import UsageBilling

/// The aggregation windows of the PostgreSQL ledger: folding, emitting, revisions.
extension PostgresLedger {
    /// Every transaction that writes a lane's windows takes this lock first, so folds and
    /// emissions of one lane never interleave, whichever workers run them.
    func lockWindows(_ lane: String, _ c: PostgresConnection) async throws {
        try await c.query("SELECT pg_advisory_xact_lock(hashtextextended(\(lane), 1))", logger: logger)
    }

    public func fold(_ rows: [QueuedDelivery], lane: String, spec: AggregationSpec, now: Date) async throws {
        guard !rows.isEmpty else { return }
        let aggregator = WindowAggregator(spec: spec, namespace: lane)
        try await transaction { c in
            try await self.lockWindows(lane, c)
            // Only rows still queued now, inside the lock: rows two folds were handed count once.
            var live = Set<Int64>()
            for try await seq in try await c.query(
                """
                SELECT seq FROM ub_deliveries WHERE seq = ANY(\(rows.map(\.seq))::int8[]) AND state = \(unescaped: DeliveryState.queued.sql)
                """, logger: self.logger
            ).decode(Int64.self) { live.insert(seq) }
            var keys: [WindowKey] = [], ends: [WindowKey: Int64] = [:]
            var bounds: (start: Date, end: Date)?
            var folding: [(QueuedDelivery, WindowKey)] = []
            for row in rows where live.contains(row.seq) {
                let (key, end) = aggregator.key(for: row.event, reusing: &bounds)
                if ends[key] == nil { keys.append(key); ends[key] = end }
                folding.append((row, key))
            }
            guard !folding.isEmpty else { return }
            var states: [WindowKey: WindowState] = [:]
            let decoder = JSONDecoder()
            for try await (customer, meter, start, state) in try await c.query(
                """
                SELECT w.customer, w.meter, w.start, w.state FROM ub_windows w
                JOIN unnest(\(keys.map(\.customer))::text[], \(keys.map(\.meter))::text[], \(keys.map(\.start))::int8[]) AS k(customer, meter, start)
                  ON w.customer = k.customer AND w.meter = k.meter AND w.start = k.start
                WHERE w.lane = \(lane)
                """, logger: self.logger
            ).decode((String, String, Int64, ByteBuffer).self) {
                states[WindowKey(customer: customer, meter: meter, start: start)] = try decoder.decode(
                    WindowState.self, from: Data(buffer: state))
            }
            for (row, key) in folding {
                var state = states[key] ?? WindowState(end: ends[key] ?? key.start)
                WindowAggregator.fold(row.event, into: &state, formula: spec.formula)
                states[key] = state
            }
            let encoder = JSONEncoder()
            let saved = try keys.map { key in
                ByteBuffer(data: try encoder.encode(states[key] ?? WindowState(end: key.start)))
            }
            try await c.query(
                """
                INSERT INTO ub_windows (lane, customer, meter, start, window_end, dirty, state)
                SELECT \(lane), k.customer, k.meter, k.start, k.window_end, true, k.state
                FROM unnest(\(keys.map(\.customer))::text[], \(keys.map(\.meter))::text[], \(keys.map(\.start))::int8[],
                            \(keys.map { states[$0]?.end ?? $0.start })::int8[], \(saved)::bytea[]) AS k(customer, meter, start, window_end, state)
                ON CONFLICT (lane, customer, meter, start) DO UPDATE SET window_end = EXCLUDED.window_end, dirty = true, state = EXCLUDED.state
                """, logger: self.logger)
            try await c.query(
                """
                UPDATE ub_deliveries SET state = \(unescaped: DeliveryState.aggregated.sql), updated_at = \(now.timeIntervalSince1970) WHERE seq = ANY(\(folding.map(\.0.seq))::int8[]) AND state = \(unescaped: DeliveryState.queued.sql)
                """, logger: self.logger)
        }
    }

    public func closeWindows(lane: String, spec: AggregationSpec, now: Date, all: Bool) async throws -> Int {
        let limit = all ? Int64.max : Int64((now.timeIntervalSince1970 - spec.grace.seconds).rounded(.down))
        let t = now.timeIntervalSince1970
        return try await transaction { c in
            try await self.lockWindows(lane, c)
            let decoder = JSONDecoder(), encoder = JSONEncoder()
            var windows: [(WindowKey, WindowState)] = []
            for try await (customer, meter, start, state) in try await c.query(
                """
                SELECT customer, meter, start, state FROM ub_windows WHERE lane = \(lane) AND dirty AND window_end <= \(limit) ORDER BY start, customer, meter
                """, logger: self.logger
            ).decode((String, String, Int64, ByteBuffer).self) {
                windows.append(
                    (
                        WindowKey(customer: customer, meter: meter, start: start),
                        try decoder.decode(WindowState.self, from: Data(buffer: state))
                    ))
            }
            var queued = 0
            for (key, before) in windows {
                var state = before
                if let record = WindowAggregator.record(for: key, state: &state, spec: spec, namespace: lane) {
                    var inserted = false
                    for try await _ in try await c.query(
                        """
                        WITH ins AS (INSERT INTO ub_events (id, payload, recorded_at) VALUES (\(record.id), \(ByteBuffer(data: PayloadCodec.encode(record))), \(t))
                                     ON CONFLICT (id) DO NOTHING RETURNING key)
                        INSERT INTO ub_deliveries (event, lane, state, recorded_at, updated_at, window_record) SELECT key, \(lane), 0, \(t), \(t), true FROM ins
                        RETURNING seq
                        """, logger: self.logger
                    ).decode(Int64.self) { inserted = true }
                    if inserted { queued += 1 }  // a revision already queued stays as it is
                }
                try await c.query(
                    """
                    UPDATE ub_windows SET dirty = false, state = \(ByteBuffer(data: try encoder.encode(state)))
                    WHERE lane = \(lane) AND customer = \(key.customer) AND meter = \(key.meter) AND start = \(key.start)
                    """, logger: self.logger)
            }
            return queued
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
