import Foundation
import Logging
import NIOCore
import NIOSSL
import PostgresNIO
import UsageBilling

extension PostgresLedger {
    // MARK: Copying (`spool copy`)

    public func exportEntries(afterKey: Int64, limit: Int) async throws -> [LedgerEntry] {
        try await run {
            var entries: [LedgerEntry] = []
            var byKey: [Int64: Int] = [:]
            for try await (key, payload, recorded) in try await self.client.query(
                """
                SELECT key, payload, recorded_at FROM ub_events WHERE key > \(afterKey) ORDER BY key LIMIT \(limit)
                """, logger: self.logger
            ).decode((Int64, ByteBuffer, Double).self) {
                byKey[key] = entries.count
                entries.append(
                    LedgerEntry(
                        key: key, event: try PayloadCodec.decode(Data(buffer: payload)), recordedAt: recorded, rows: [])
                )
            }
            guard let first = entries.first?.key, let last = entries.last?.key else { return [] }
            for try await (event, lane, state, attempts, next, firstAttempt, code, message, record, recorded, updated)
                in try await self.client.query(
                    """
                    SELECT event, lane, state, attempts, next_attempt_at, first_attempt_at, reason_code, reason_message, window_record, recorded_at, updated_at
                    FROM ub_deliveries WHERE event BETWEEN \(first) AND \(last) ORDER BY seq
                    """, logger: self.logger
                ).decode((Int64, String, Int16, Int, Double, Double?, String?, String?, Bool, Double, Double).self)
            {
                guard let index = byKey[event] else { continue }
                entries[index].rows.append(
                    LedgerEntry.Row(
                        lane: lane, state: Int(state), attempts: attempts, nextAttemptAt: next,
                        firstAttemptAt: firstAttempt,
                        reasonCode: code, reasonMessage: message, windowRecord: record, recordedAt: recorded,
                        updatedAt: updated))
            }
            return entries
        }
    }

    public func importEntries(_ entries: [LedgerEntry]) async throws -> Int {
        guard !entries.isEmpty else { return 0 }
        var ids: [String] = [], payloads: [ByteBuffer] = [], recorded: [Double] = []
        var rowIDs: [String] = [], lanes: [String] = [], states: [Int16] = [], attempts: [Int] = [], next: [Double] = []
        var firsts: [Double] = [], codes: [String] = [], messages: [String] = [], records: [Bool] = [],
            rowRecorded: [Double] = [], updated: [Double] = []
        for entry in entries {
            ids.append(entry.event.id)
            payloads.append(ByteBuffer(data: PayloadCodec.encode(entry.event)))
            recorded.append(entry.recordedAt)
            for r in entry.rows {
                rowIDs.append(entry.event.id); lanes.append(r.lane); states.append(Int16(r.state));
                attempts.append(r.attempts); next.append(r.nextAttemptAt)
                firsts.append(r.firstAttemptAt ?? -1); codes.append(r.reasonCode ?? "");
                messages.append(r.reasonMessage ?? "")  // '' stands for NULL: no reason is empty
                records.append(r.windowRecord); rowRecorded.append(r.recordedAt); updated.append(r.updatedAt)
            }
        }
        // As `record`: the events new here and, joined to them, their rows, in one statement.
        return try await count(
            """
            WITH ins AS (
                INSERT INTO ub_events (id, payload, recorded_at)
                SELECT u.id, u.payload, u.recorded FROM unnest(\(ids)::text[], \(payloads)::bytea[], \(recorded)::float8[]) WITH ORDINALITY AS u(id, payload, recorded, ord)
                ORDER BY u.ord
                ON CONFLICT (id) DO NOTHING RETURNING key, id),
            rows AS (
                INSERT INTO ub_deliveries (event, lane, state, attempts, next_attempt_at, first_attempt_at, reason_code, reason_message, window_record, recorded_at, updated_at)
                SELECT ins.key, d.lane, d.state, d.attempts, d.next, NULLIF(d.first, -1), NULLIF(d.code, ''), NULLIF(d.message, ''), d.record, d.recorded, d.updated
                FROM unnest(\(rowIDs)::text[], \(lanes)::text[], \(states)::int2[], \(attempts)::int4[], \(next)::float8[], \(firsts)::float8[],
                            \(codes)::text[], \(messages)::text[], \(records)::bool[], \(rowRecorded)::float8[], \(updated)::float8[]) WITH ORDINALITY
                     AS d(id, lane, state, attempts, next, first, code, message, record, recorded, updated, ord)
                JOIN ins ON ins.id = d.id ORDER BY d.ord
                RETURNING 1)
            SELECT key FROM ins
            """)
    }

    public func exportWindows() async throws -> [LedgerWindow] {
        try await run {
            var out: [LedgerWindow] = []
            for try await (lane, customer, meter, start, end, dirty, state) in try await self.client.query(
                """
                SELECT lane, customer, meter, start, window_end, dirty, state FROM ub_windows ORDER BY lane, start, customer, meter
                """, logger: self.logger
            ).decode((String, String, String, Int64, Int64, Bool, ByteBuffer).self) {
                out.append(
                    LedgerWindow(
                        lane: lane, key: WindowKey(customer: customer, meter: meter, start: start), end: end,
                        dirty: dirty, state: Data(buffer: state)))
            }
            return out
        }
    }

    public func importWindows(_ windows: [LedgerWindow]) async throws -> Int {
        guard !windows.isEmpty else { return 0 }
        return try await count(
            """
            INSERT INTO ub_windows (lane, customer, meter, start, window_end, dirty, state)
            SELECT * FROM unnest(\(windows.map(\.lane))::text[], \(windows.map(\.key.customer))::text[], \(windows.map(\.key.meter))::text[],
                                 \(windows.map(\.key.start))::int8[], \(windows.map(\.end))::int8[], \(windows.map(\.dirty))::bool[],
                                 \(windows.map { ByteBuffer(data: $0.state) })::bytea[])
            ON CONFLICT (lane, customer, meter, start) DO NOTHING RETURNING 1
            """)
    }

    public func exportCorrections() async throws -> [LedgerCorrection] {
        try await run {
            var out: [LedgerCorrection] = []
            var index: [String: Int] = [:]
            for try await (id, number, kind, reason, recorded, quantity) in try await self.client.query(
                """
                SELECT e.id, c.number, c.kind, c.reason, c.recorded_at, c.quantity
                FROM ub_corrections c JOIN ub_events e ON e.key = c.event ORDER BY c.event, c.number
                """, logger: self.logger
            ).decode((String, Int, String, String, Double, String?).self) {
                index["\(id)\u{1F}\(number)"] = out.count
                out.append(
                    LedgerCorrection(
                        eventID: id, number: number, kind: kind, reason: reason, recordedAt: recorded,
                        quantity: quantity, lanes: []))
            }
            for try await (id, number, lane, state, code, message, updated, attempts, next) in try await self.client
                .query(
                    """
                    SELECT e.id, l.number, l.lane, l.state, l.reason_code, l.reason_message, l.updated_at, l.attempts, l.next_attempt_at
                    FROM ub_correction_lanes l JOIN ub_events e ON e.key = l.event ORDER BY l.event, l.number, l.lane
                    """, logger: self.logger
                ).decode((String, Int, String, Int16, String?, String?, Double, Int, Double).self)
            {
                guard let i = index["\(id)\u{1F}\(number)"] else { continue }
                out[i].lanes.append(
                    LedgerCorrection.Lane(
                        lane: lane, state: Int(state), reasonCode: code, reasonMessage: message, updatedAt: updated,
                        attempts: attempts, nextAttemptAt: next))
            }
            return out
        }
    }

    public func importCorrections(_ corrections: [LedgerCorrection]) async throws -> Int {
        guard !corrections.isEmpty else { return 0 }
        return try await transaction { c in
            var copied = 0
            for correction in corrections {
                var inserted = false
                for try await _ in try await c.query(
                    """
                    INSERT INTO ub_corrections (event, number, kind, reason, recorded_at, quantity)
                    SELECT key, \(correction.number), \(correction.kind), \(correction.reason), \(correction.recordedAt),
                        \(correction.quantity)
                    FROM ub_events WHERE id = \(correction.eventID)
                    ON CONFLICT (event, number) DO NOTHING RETURNING 1
                    """, logger: self.logger
                ) { inserted = true }
                guard inserted else { continue }  // the target has it, or not its event
                let lanes = correction.lanes
                try await c.query(
                    """
                    INSERT INTO ub_correction_lanes (event, number, lane, state, reason_code, reason_message, updated_at, attempts, next_attempt_at, seq)
                    SELECT e.key, \(correction.number), l.lane, l.state, NULLIF(l.code, ''), NULLIF(l.message, ''), l.updated,
                        l.attempts, l.next,
                        (SELECT MIN(d.seq) FROM ub_deliveries d WHERE d.event = e.key AND d.lane = l.lane AND NOT d.window_record)
                    FROM ub_events e,
                        unnest(\(lanes.map(\.lane))::text[], \(lanes.map { Int16($0.state) })::int2[],
                            \(lanes.map { $0.reasonCode ?? "" })::text[], \(lanes.map { $0.reasonMessage ?? "" })::text[],
                            \(lanes.map(\.updatedAt))::float8[], \(lanes.map(\.attempts))::int4[],
                            \(lanes.map(\.nextAttemptAt))::float8[]) AS l(lane, state, code, message, updated, attempts, next)
                    WHERE e.id = \(correction.eventID)
                    """, logger: self.logger)
                copied += 1
            }
            return copied
        }
    }
}
