import Foundation
import GRDB
import GRDBSQLite
import UsageBilling

/// The spool's dead letters: listing, provider refusals after delivery, retry and purge.
extension Spool {
    /// Dead letters, oldest first, optionally of one reason code.
    public func deadLetters(reason: String? = nil, limit: Int = 100) throws -> [DeadLetter] {
        try pool.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT e.id, d.lane, d.reason_code, d.reason_message, d.attempts FROM deliveries d JOIN events e ON e.key = d.event
                    WHERE d.state = \(DeliveryState.dead.sql) AND (? IS NULL OR d.reason_code = ?) ORDER BY d.seq LIMIT ?
                    """, arguments: [reason, reason, limit]
            ).map {
                DeadLetter(eventID: $0[0], lane: $0[1], code: $0[2] ?? "", message: $0[3] ?? "", attempts: $0[4])
            }
        }
    }

    /// Turns events a provider took and later refused (Stripe validates meter events after
    /// answering 200 and reports failures in `v1.billing.meter.error_report_triggered`) into dead
    /// letters with the provider's reason, on the lanes of `provider` (`stripe` covers
    /// `stripe/api_request`, `stripe/storage`, …). Only rows marked delivered or duplicate change; ids the spool does not
    /// hold, or holds for other providers, change nothing. Returns how many rows became dead.
    @discardableResult
    public func rejectDelivered(
        _ rejections: [(identifier: String, reason: RejectionReason)], provider: String,
        now: Date = Date()
    ) async throws -> Int {
        guard !rejections.isEmpty else { return 0 }
        return try await pool.write { db in
            let update = try db.cachedStatement(
                sql: """
                    UPDATE deliveries SET state = \(DeliveryState.dead.sql), reason_code = ?, reason_message = ?, updated_at = ?
                    WHERE event = (SELECT key FROM events WHERE id = ?) AND state IN (\(DeliveryState.delivered.sql), \(DeliveryState.duplicate.sql)) AND window_record = 0
                      AND (substr(lane, 1, length(?) + 1) = ? || '/' OR substr(lane, 1, length(?) + 1) = ? || '#')
                    """)
            var changed = 0
            for (identifier, reason) in rejections {
                try update.execute(arguments: [
                    reason.code, reason.description, now.timeIntervalSince1970, identifier, provider, provider,
                    provider, provider,
                ])
                changed += db.changesCount
            }
            return changed
        }
    }

    /// Puts dead letters (of one reason, or all) back in the queue, due now. Returns how many.
    @discardableResult
    public func retryDeadLetters(reason: String? = nil, now: Date = Date()) async throws -> Int {
        try await pool.write { db in
            try db.execute(
                sql: """
                    UPDATE deliveries SET state = \(DeliveryState.queued.sql), attempts = 0, first_attempt_at = NULL, next_attempt_at = ?, updated_at = ?
                    WHERE state = \(DeliveryState.dead.sql) AND (? IS NULL OR reason_code = ?)
                    """, arguments: [now.timeIntervalSince1970, now.timeIntervalSince1970, reason, reason])
            return db.changesCount
        }
    }

    /// Deletes dead letters (of one reason, or all). Returns how many.
    @discardableResult
    public func purgeDeadLetters(reason: String? = nil) async throws -> Int {
        try await pool.write { db in
            try db.execute(
                sql:
                    "DELETE FROM deliveries WHERE state = \(DeliveryState.dead.sql) AND (? IS NULL OR reason_code = ?)",
                arguments: [reason, reason])
            return db.changesCount
        }
    }
}
