import Foundation
import Logging
import NIOCore
import NIOSSL
import PostgresNIO
import UsageBilling

/// Lanes and their leases on the shared ledger: renames, moves, drops, orphans, and who delivers which lane.
extension PostgresLedger {
    // MARK: Lanes

    func moveTransaction(
        _ moves: [(from: String, to: String)], exclusive: Bool,
        _ check: @Sendable (_ from: String, _ to: String, LaneFacts) throws -> Void
    ) async throws -> [(facts: LaneFacts, alreadyThere: Int)] {
        try await transaction { c in
            if exclusive { try await self.refuseWhileLeased(moves.flatMap { [$0.from, $0.to] }, c) }
            var out: [(facts: LaneFacts, alreadyThere: Int)] = []
            for (from, to) in moves {
                var shared: WindowKey?
                for try await (customer, meter, start) in try await c.query(
                    """
                    SELECT a.customer, a.meter, a.start FROM ub_windows a JOIN ub_windows b
                      ON b.lane = \(to) AND b.customer = a.customer AND b.meter = a.meter AND b.start = a.start
                    WHERE a.lane = \(from) LIMIT 1
                    """, logger: self.logger
                ).decode((String, String, Int64).self) {
                    shared = WindowKey(customer: customer, meter: meter, start: start)
                }
                let facts = LaneFacts(
                    rows: try await self.scalar(c, "SELECT COUNT(*) FROM ub_deliveries WHERE lane = \(from)"),
                    windows: try await self.scalar(c, "SELECT COUNT(*) FROM ub_windows WHERE lane = \(from)"),
                    openWindows: try await self.scalar(
                        c, "SELECT COUNT(*) FROM ub_windows WHERE lane = \(from) AND dirty"),
                    sharedWindow: shared)
                try check(from, to, facts)
                let already = try await self.scalar(
                    c,
                    """
                    SELECT COUNT(*) FROM ub_deliveries a WHERE a.lane = \(from) AND EXISTS (SELECT 1 FROM ub_deliveries b WHERE b.lane = \(to) AND b.event = a.event)
                    """)
                try await c.query(
                    """
                    UPDATE ub_deliveries a SET state = \(unescaped: DeliveryState.duplicate.sql), reason_code = \(LedgerEngine.alreadyOnLaneCode), reason_message = \(LedgerEngine.alreadyOnLane(to))
                    WHERE a.lane = \(from) AND a.state = \(unescaped: DeliveryState.queued.sql) AND EXISTS (SELECT 1 FROM ub_deliveries b WHERE b.lane = \(to) AND b.event = a.event)
                    """, logger: self.logger)
                // An event's corrections go where its row goes (before the rows move, by the same test).
                try await c.query(
                    """
                    UPDATE ub_correction_lanes l SET lane = \(to) WHERE l.lane = \(from) AND NOT EXISTS (SELECT 1 FROM ub_deliveries b WHERE b.lane = \(to) AND b.event = l.event)
                    """, logger: self.logger)
                try await c.query(
                    """
                    UPDATE ub_deliveries a SET lane = \(to) WHERE a.lane = \(from) AND NOT EXISTS (SELECT 1 FROM ub_deliveries b WHERE b.lane = \(to) AND b.event = a.event)
                    """, logger: self.logger)
                try await c.query("UPDATE ub_windows SET lane = \(to) WHERE lane = \(from)", logger: self.logger)
                out.append((facts, already))
            }
            return out
        }
    }

    /// Moving or dropping a lane a worker delivers would race its marks: refused while any of
    /// `lanes` has a lease that has not expired.
    func refuseWhileLeased(_ lanes: [String], _ c: PostgresConnection) async throws {
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

    // MARK: Leases

    /// The ledger is shared: lanes are handed out one by one under leases.
    public func acquireDeliveryLock() async throws -> (any DeliveryLock)? { nil }

    public func acquireLease(lane: String, owner: String, ttl: Duration) async throws -> LaneLease? {
        // Who held the lane before decides what its unconfirmed voids are (settleUnconfirmedVoids).
        var previous: (owner: String, lapsed: Bool)?
        try await run {
            for try await row in try await self.client.query(
                "SELECT owner, expires_at < now() FROM ub_leases WHERE lane = \(lane)", logger: self.logger
            ).decode((String, Bool).self) { previous = row }
        }
        guard let lease = try await takeLease(lane: lane, owner: owner, ttl: ttl) else { return nil }
        switch previous {
        case nil: try await settleUnconfirmedVoids(lane: lane, afterLapsedLease: false)
        case (_, true)?: try await settleUnconfirmedVoids(lane: lane, afterLapsedLease: true)
        case (_, false)?: break  // its own lease, taken again
        }
        return lease
    }

    private func takeLease(lane: String, owner: String, ttl: Duration) async throws -> LaneLease? {
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
