import Foundation
import Logging
import NIOCore
import NIOSSL
import PostgresNIO
import UsageBilling

/// Events new to the ledger and their rows, in recording order, in one statement prepared once
/// per connection (every `record` group runs it): an id any process recorded before is skipped,
/// concurrent recorders of one id included. Returns the ids it inserted.
struct RecordStatement: PostgresPreparedStatement {
    typealias Row = String
    static let name = "ub_record_v1"
    static let sql = """
        WITH ins AS (
            INSERT INTO ub_events (id, payload, recorded_at)
            SELECT u.id, u.payload, $3::float8 FROM unnest($1::text[], $2::bytea[]) WITH ORDINALITY AS u(id, payload, ord) ORDER BY u.ord
            ON CONFLICT (id) DO NOTHING RETURNING key, id),
        rows AS (
            INSERT INTO ub_deliveries (event, lane, state, reason_code, reason_message, recorded_at, updated_at)
            SELECT ins.key, d.lane, d.state, NULLIF(d.code, ''), NULLIF(d.message, ''), $3::float8, $3::float8
            FROM unnest($4::text[], $5::text[], $6::int2[], $7::text[], $8::text[]) WITH ORDINALITY AS d(id, lane, state, code, message, ord)
            JOIN ins ON ins.id = d.id ORDER BY d.ord)
        SELECT id FROM ins
        """
    let ids: [String], payloads: [ByteBuffer], at: Double
    let rowIDs: [String], lanes: [String], states: [Int16], codes: [String], messages: [String]

    func makeBindings() throws -> PostgresBindings {
        var b = PostgresBindings(capacity: 8)
        b.append(ids)
        b.append(payloads)
        b.append(at)
        b.append(rowIDs)
        b.append(lanes)
        b.append(states)
        b.append(codes)
        b.append(messages)
        return b
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(String.self) }
}

/// A lane's due rows after a seq, oldest first: prepared once per connection (the worker runs it
/// for every read-ahead).
struct DueStatement: PostgresPreparedStatement {
    typealias Row = (Int64, ByteBuffer, Int, Double?, Bool)
    static let name = "ub_due_v1"
    // `$4` null: raw rows and window records alike.
    static let sql = """
        SELECT d.seq, e.payload, d.attempts, d.first_attempt_at, d.window_record FROM ub_deliveries d JOIN ub_events e ON e.key = d.event
        WHERE d.lane = $1 AND d.state = \(DeliveryState.queued.sql) AND d.seq > $2 AND d.next_attempt_at <= $3 AND ($4::boolean IS NULL OR d.window_record = $4)
        ORDER BY d.seq LIMIT $5
        """
    let lane: String, after: Int64, now: Double, windowRecords: Bool?, limit: Int

    func makeBindings() throws -> PostgresBindings {
        var b = PostgresBindings(capacity: 5)
        b.append(lane)
        b.append(after)
        b.append(now)
        b.append(windowRecords)
        b.append(limit)
        return b
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

/// Every mark of a batch (or of the marks a lane held) in one statement, so one round trip and
/// one transaction, prepared once per connection: planning it each time cost more than running
/// it for a few hundred rows. Fencing: the lease row is read FOR SHARE, so a takeover (which
/// rewrites it) waits for these marks, and every UPDATE applies only while the token is still
/// the caller's; the statement returns whether it was.
struct MarkStatement: PostgresPreparedStatement {
    typealias Row = Bool
    static let name = "ub_mark_v1"
    static let sql = """
        WITH lease AS (SELECT 1 FROM ub_leases WHERE lane = $1 AND token = $2 FOR SHARE),
        ok AS (SELECT (NOT $3::boolean) OR EXISTS (SELECT 1 FROM lease) AS ok),
        delivered AS (
            UPDATE ub_deliveries SET state = \(DeliveryState.delivered.sql), attempts = attempts + 1, first_attempt_at = COALESCE(first_attempt_at, $4::float8),
            reason_code = NULL, reason_message = NULL, updated_at = $4::float8
            WHERE seq = ANY($5::int8[]) AND (SELECT ok FROM ok) RETURNING 1),
        duplicates AS (
            UPDATE ub_deliveries SET state = \(DeliveryState.duplicate.sql), attempts = attempts + 1, first_attempt_at = COALESCE(first_attempt_at, $4::float8),
            reason_code = NULL, reason_message = NULL, updated_at = $4::float8
            WHERE seq = ANY($6::int8[]) AND (SELECT ok FROM ok) RETURNING 1),
        dead AS (
            UPDATE ub_deliveries d SET state = \(DeliveryState.dead.sql), attempts = d.attempts + 1, first_attempt_at = COALESCE(d.first_attempt_at, $4::float8),
            reason_code = u.code, reason_message = u.message, updated_at = $4::float8
            FROM unnest($7::int8[], $8::text[], $9::text[]) AS u(seq, code, message)
            WHERE d.seq = u.seq AND (SELECT ok FROM ok) RETURNING 1),
        retried AS (
            UPDATE ub_deliveries d SET attempts = d.attempts + 1, first_attempt_at = COALESCE(d.first_attempt_at, $4::float8),
            next_attempt_at = u.at, reason_code = 'retrying', reason_message = u.message, updated_at = $4::float8
            FROM unnest($10::int8[], $11::float8[], $12::text[]) AS u(seq, at, message)
            WHERE d.seq = u.seq AND (SELECT ok FROM ok) RETURNING 1)
        SELECT ok FROM ok
        """
    let lane: String, token: Int64, fenced: Bool, now: Double
    var delivered: [Int64] = [], duplicates: [Int64] = []
    var deadSeqs: [Int64] = [], deadCodes: [String] = [], deadMessages: [String] = []
    var retrySeqs: [Int64] = [], retryAt: [Double] = [], retryMessages: [String] = []

    init(lane: String, token: Int64, fenced: Bool, now: Double) {
        self.lane = lane
        self.token = token
        self.fenced = fenced
        self.now = now
    }

    func makeBindings() throws -> PostgresBindings {
        var b = PostgresBindings(capacity: 12)
        b.append(lane)
        b.append(token)
        b.append(fenced)
        b.append(now)
        b.append(delivered)
        b.append(duplicates)
        b.append(deadSeqs)
        b.append(deadCodes)
        b.append(deadMessages)
        b.append(retrySeqs)
        b.append(retryAt)
        b.append(retryMessages)
        return b
    }

    func decodeRow(_ row: PostgresRow) throws -> Bool { try row.decode(Bool.self) }
}
