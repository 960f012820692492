import Foundation
import Logging
import NIOCore
import NIOSSL
import PostgresNIO
import UsageBilling

/// Lanes and their leases on the shared ledger: renames, moves, drops, orphans, and who delivers which lane.
extension PostgresLedger {
    // MARK: Lanes

    public func renameLanes(_ renames: [(from: String, to: String)]) async throws {
        try await transaction { c in
            for (from, to) in renames { try await self.move(c, from: from, to: to) }
        }
    }

    public func reassignLane(_ from: String, to: String, targetAggregates: Bool) async throws -> (
        rows: Int, windows: Int, alreadyThere: Int
    ) {
        guard from != to else {
            throw UsageBillingError(
                .invalidInput, "the lanes are the same (\(from))",
                fix: "name the lane the rows are on and the lane to move them to", field: "to")
        }
        return try await transaction { c in
            try await self.refuseWhileLeased([from, to], c)
            let rows = try await self.scalar(c, "SELECT COUNT(*) FROM ub_deliveries WHERE lane = \(from)")
            let windows = try await self.scalar(c, "SELECT COUNT(*) FROM ub_windows WHERE lane = \(from)")
            guard rows + windows > 0 else {
                throw UsageBillingError(
                    .invalidInput, "the ledger has no lane \(from)", fix: "see `usage-billing status` for its lanes",
                    field: "from")
            }
            let open = try await self.scalar(c, "SELECT COUNT(*) FROM ub_windows WHERE lane = \(from) AND dirty")
            if open > 0 && !targetAggregates {
                throw UsageBillingError(
                    .invalidInput,
                    "\(from) has \(open) window(s) with events not yet billed, and \(to) does not bill per window",
                    fix:
                        "move them to a lane whose provider aggregates, or emit them first (put the route back and run `worker --until-empty --close-windows`)",
                    field: "to")
            }
            let already = try await self.move(c, from: from, to: to)
            return (rows - already, windows, already)
        }
    }

    public func dropLane(_ lane: String, now: Date) async throws -> (rows: Int, windows: Int) {
        let reason = RejectionReason(
            code: "lane_removed",
            message: "the routing config no longer has the lane \(lane); dead-lettered by `usage-billing lanes drop`",
            origin: .local)
        let t = now.timeIntervalSince1970
        return try await transaction { c in
            try await self.refuseWhileLeased([lane], c)
            try await self.lockWindows(lane, c)
            let rows = try await self.scalar(
                c,
                """
                WITH changed AS (UPDATE ub_deliveries SET state = \(unescaped: DeliveryState.dead.sql), reason_code = \(reason.code), reason_message = \(reason.description), updated_at = \(t)
                                 WHERE lane = \(lane) AND state = \(unescaped: DeliveryState.queued.sql) RETURNING seq) SELECT COUNT(*) FROM changed
                """)
            let spec = AggregationSpec(window: .fixed(seconds: 3600), report: .increments)
            let decoder = JSONDecoder(), encoder = JSONEncoder()
            var open: [(WindowKey, WindowState)] = []
            for try await (customer, meter, start, state) in try await c.query(
                """
                SELECT customer, meter, start, state FROM ub_windows WHERE lane = \(lane) AND dirty
                """, logger: self.logger
            ).decode((String, String, Int64, ByteBuffer).self) {
                open.append(
                    (
                        WindowKey(customer: customer, meter: meter, start: start),
                        try decoder.decode(WindowState.self, from: Data(buffer: state))
                    ))
            }
            var windows = 0
            for (key, before) in open {
                var state = before
                if let record = WindowAggregator.record(for: key, state: &state, spec: spec, namespace: lane) {
                    windows += try await self.scalar(
                        c,
                        """
                        WITH ins AS (INSERT INTO ub_events (id, payload, recorded_at) VALUES (\(record.id), \(ByteBuffer(data: PayloadCodec.encode(record))), \(t))
                                     ON CONFLICT (id) DO NOTHING RETURNING key),
                             d AS (INSERT INTO ub_deliveries (event, lane, state, recorded_at, updated_at, window_record, reason_code, reason_message)
                                   SELECT key, \(lane), 3, \(t), \(t), true, \(reason.code), \(reason.description) FROM ins RETURNING seq)
                        SELECT COUNT(*) FROM d
                        """)
                }
                try await c.query(
                    """
                    UPDATE ub_windows SET dirty = false, state = \(ByteBuffer(data: try encoder.encode(state)))
                    WHERE lane = \(lane) AND customer = \(key.customer) AND meter = \(key.meter) AND start = \(key.start)
                    """, logger: self.logger)
            }
            return (rows, windows)
        }
    }

    /// Moving or dropping a lane a worker delivers would race its marks: refused while any of
    /// `lanes` has a lease that has not expired.
    private func refuseWhileLeased(_ lanes: [String], _ c: PostgresConnection) async throws {
        for try await (lane, owner) in try await c.query(
            """
            SELECT lane, owner FROM ub_leases WHERE lane = ANY(\(lanes)::text[]) AND expires_at > now() FOR UPDATE
            """, logger: logger
        ).decode((String, String).self) {
            throw UsageBillingError(
                .configuration, "a worker (\(owner)) is delivering lane \(lane) from the ledger \(location)",
                fix: "stop the workers first (a killed worker's lease lapses after its lease time), then run this again"
            )
        }
    }

    /// Moves as the SQLite spool's `move` does (rows of events `to` holds stay, queued ones
    /// marked duplicates); returns how many rows stayed.
    @discardableResult
    private func move(_ c: PostgresConnection, from: String, to: String) async throws -> Int {
        for try await (customer, meter, start) in try await c.query(
            """
            SELECT a.customer, a.meter, a.start FROM ub_windows a JOIN ub_windows b
              ON b.lane = \(to) AND b.customer = a.customer AND b.meter = a.meter AND b.start = a.start
            WHERE a.lane = \(from) LIMIT 1
            """, logger: logger
        ).decode((String, String, Int64).self) {
            throw UsageBillingError(
                .invalidInput,
                "\(from) and \(to) both have a window for customer '\(customer)', meter '\(meter)' starting \(RFC3339.format(Date(timeIntervalSince1970: TimeInterval(start)))); merging them could bill it twice",
                fix:
                    "deliver one lane's windows first (`worker --until-empty --close-windows` with its route in the config), or drop it",
                field: "to")
        }
        let already = try await scalar(
            c,
            """
            SELECT COUNT(*) FROM ub_deliveries a WHERE a.lane = \(from) AND EXISTS (SELECT 1 FROM ub_deliveries b WHERE b.lane = \(to) AND b.event = a.event)
            """)
        let note = "\(to) already holds this event; left here by `lanes reassign`"
        try await c.query(
            """
            UPDATE ub_deliveries a SET state = \(Int16(DeliveryState.duplicate.rawValue)), reason_code = 'already_on_lane', reason_message = \(note)
            WHERE a.lane = \(from) AND a.state = \(Int16(DeliveryState.queued.rawValue)) AND EXISTS (SELECT 1 FROM ub_deliveries b WHERE b.lane = \(to) AND b.event = a.event)
            """, logger: logger)
        try await c.query(
            """
            UPDATE ub_deliveries a SET lane = \(to) WHERE a.lane = \(from) AND NOT EXISTS (SELECT 1 FROM ub_deliveries b WHERE b.lane = \(to) AND b.event = a.event)
            """, logger: logger)
        try await c.query("UPDATE ub_windows SET lane = \(to) WHERE lane = \(from)", logger: logger)
        return already
    }

    // MARK: Leases

    /// The ledger is shared: lanes are handed out one by one under leases.
    public func acquireDeliveryLock() async throws -> (any DeliveryLock)? { nil }

    public func acquireLease(lane: String, owner: String, ttl: Duration) async throws -> LaneLease? {
        try await run {
            for try await (token, expires) in try await self.client.query(
                """
                INSERT INTO ub_leases (lane, owner, token, expires_at) VALUES (\(lane), \(owner), nextval('ub_lease_tokens'), now() + make_interval(secs => \(ttl.seconds)))
                ON CONFLICT (lane) DO UPDATE SET owner = EXCLUDED.owner, token = EXCLUDED.token, expires_at = EXCLUDED.expires_at
                WHERE ub_leases.expires_at < now() OR ub_leases.owner = EXCLUDED.owner
                RETURNING token, extract(epoch FROM expires_at)::float8
                """, logger: self.logger
            ).decode((Int64, Double).self) {
                return LaneLease(
                    lane: lane, owner: owner, token: token, expiresAt: Date(timeIntervalSince1970: expires))
            }
            return nil
        }
    }

    public func renewLease(_ lease: LaneLease, ttl: Duration) async throws -> Bool {
        try await count(
            """
            UPDATE ub_leases SET expires_at = now() + make_interval(secs => \(ttl.seconds)) WHERE lane = \(lease.lane) AND token = \(lease.token) RETURNING token
            """) > 0
    }

    public func releaseLease(_ lease: LaneLease) async throws {
        _ = try await count(
            "DELETE FROM ub_leases WHERE lane = \(lease.lane) AND token = \(lease.token) RETURNING token")
    }

    public func leases() async throws -> [LaneLease] {
        try await run {
            var out: [LaneLease] = []
            for try await (lane, owner, token, expires) in try await self.client.query(
                """
                SELECT lane, owner, token, extract(epoch FROM expires_at)::float8 FROM ub_leases WHERE expires_at > now() ORDER BY lane
                """, logger: self.logger
            ).decode((String, String, Int64, Double).self) {
                out.append(
                    LaneLease(lane: lane, owner: owner, token: token, expiresAt: Date(timeIntervalSince1970: expires)))
            }
            return out
        }
    }

    public func heartbeat(owner: String, ttl: Duration) async throws -> Int {
        try await run {
            var alive = 1
            for try await count in try await self.client.query(
                """
                WITH beat AS (
                    INSERT INTO ub_workers (owner, expires_at) VALUES (\(owner), now() + make_interval(secs => \(ttl.seconds)))
                    ON CONFLICT (owner) DO UPDATE SET expires_at = EXCLUDED.expires_at RETURNING owner),
                gone AS (DELETE FROM ub_workers WHERE expires_at < now() - interval '1 day' RETURNING owner)
                SELECT 1 + count(*) FROM ub_workers WHERE expires_at > now() AND owner <> (SELECT owner FROM beat)
                """, logger: self.logger
            ).decode(Int.self) {
                alive = count
            }
            return alive
        }
    }

    public func signOff(owner: String) async throws {
        _ = try await count("DELETE FROM ub_workers WHERE owner = \(owner) RETURNING owner")
    }
}
