import Foundation
import GRDB
import Testing
import UsageBilling
@testable import UsageSpool

@Suite("Spool migrations")
struct MigrationTests {
    /// A spool written by the v4 schema opens under the latest with every row, its state and
    /// seq; a new row goes after every remaining one; re-recording an id stays a no-op.
    @Test func aVersion4SpoolKeepsItsRowsAndSeqs() async throws {
        let path = tempPath("v4.spool")
        let t = Date().timeIntervalSince1970
        let old = events(3, prefix: "old")
        do {
            let queue = try DatabaseQueue(path: path)
            try Spool.migrator.migrate(queue, upTo: "v4: queue index over queued rows only")
            try await queue.write { db in
                for (i, event) in old.enumerated() {
                    try db.execute(
                        sql: "INSERT INTO events (id, payload, recorded_at) VALUES (?, ?, ?)",
                        arguments: [event.id, PayloadCodec.encode(event), t])
                    try db.execute(
                        sql:
                            "INSERT INTO deliveries (seq, event_id, lane, state, recorded_at, updated_at) VALUES (?, ?, 'stripe#0', ?, ?, ?)",
                        arguments: [i + 1, event.id, i == 0 ? 1 : 0, t, t])
                }
                // The highest seq was taken and purged (since v7 it may come back, after the rows left).
                try db.execute(
                    sql:
                        "INSERT INTO deliveries (seq, event_id, lane, state, recorded_at, updated_at) VALUES (10, ?, 'orb#0', 3, ?, ?)",
                    arguments: [old[0].id, t, t])
                try db.execute(sql: "DELETE FROM deliveries WHERE seq = 10")
            }
            try queue.close()
        }
        let spool = try Spool(path: path)
        let indexes = try await spool.pool.read { db in
            try String.fetchAll(db, sql: "SELECT name FROM pragma_index_list('deliveries') ORDER BY name")
        }
        #expect(indexes == ["deliveries_queued", "deliveries_voided_unconfirmed"])
        #expect(try await spool.due(lane: "stripe#0", limit: 10, now: Date()).map(\.seq) == [2, 3])
        #expect(try await spool.due(lane: "stripe#0", limit: 10, now: Date()).map(\.event.id) == ["old-1", "old-2"])
        // recorded before: no-op
        try await spool.record(old.map { RecordEntry(event: $0, lanes: ["stripe#0", "orb#0"]) })
        #expect(try await spool.queuedCount() == 2)
        let new = events(1, prefix: "new")
        // a lane given twice: one row
        try await spool.record([RecordEntry(event: new[0], lanes: ["stripe#0", "stripe#0"])])
        let due = try await spool.due(lane: "stripe#0", limit: 10, now: Date())
        #expect(due.map(\.event.id) == ["old-1", "old-2", "new-0"])
        #expect((due.last?.seq ?? 0) > 3)
    }

    /// A v5 spool (events keyed by their text id) opens under v6 (integer keys) and later with
    /// every event, every row's state, reason and attempts, and its seqs.
    @Test func aVersion5SpoolKeepsEveryRowUnderIntegerKeys() async throws {
        let path = tempPath("v5.spool")
        let t = Date().timeIntervalSince1970
        let old = ["zeta", "alpha", "mid"].map {
            UsageEvent(
                id: "old-\($0)", name: "api_request", customer: "acme",
                timestamp: Date(timeIntervalSince1970: 1_700_000_000), quantity: 2)
        }
        do {
            let queue = try DatabaseQueue(path: path)
            try Spool.migrator.migrate(queue, upTo: "v5: no (event_id, lane) index")
            try await queue.write { db in
                for (i, event) in old.enumerated() {
                    try db.execute(
                        sql: "INSERT INTO events (id, payload, recorded_at) VALUES (?, ?, ?)",
                        arguments: [event.id, PayloadCodec.encode(event), t + Double(i)])
                    try db.execute(
                        sql:
                            "INSERT INTO deliveries (seq, event_id, lane, state, attempts, recorded_at, updated_at) VALUES (?, ?, 'stripe#0', 0, ?, ?, ?)",
                        arguments: [i + 1, event.id, i, t, t])
                }
                try db.execute(
                    sql: """
                        INSERT INTO deliveries (seq, event_id, lane, state, attempts, reason_code, reason_message, recorded_at, updated_at)
                        VALUES (4, 'old-zeta', 'orb#0', 3, 5, 'rejected', 'customer unknown', ?, ?)
                        """, arguments: [t, t])
                try db.execute(
                    sql:
                        "INSERT INTO deliveries (seq, event_id, lane, state, recorded_at, updated_at) VALUES (20, 'old-mid', 'orb#0', 1, ?, ?)",
                    arguments: [t, t])
                try db.execute(sql: "DELETE FROM deliveries WHERE seq = 20")
            }
            try queue.close()
        }
        let spool = try Spool(path: path)
        let columns = try await spool.pool.read { db in
            try String.fetchAll(db, sql: "SELECT name FROM pragma_table_info('deliveries') ORDER BY cid")
        }
        #expect(columns.contains("event") && !columns.contains("event_id"))
        let due = try await spool.due(lane: "stripe#0", limit: 10, now: Date())
        #expect(due.map(\.seq) == [1, 2, 3])
        #expect(due.map(\.event.id) == ["old-zeta", "old-alpha", "old-mid"])
        #expect(due.map(\.attempts) == [0, 1, 2])
        #expect(
            try await spool.deadLetters() == [
                DeadLetter(
                    eventID: "old-zeta", lane: "orb#0", code: "rejected", message: "customer unknown", attempts: 5)
            ])
        try await spool.record(old.map { RecordEntry(event: $0, lanes: ["stripe#0"]) })  // recorded before: no-op
        #expect(try await spool.queuedCount() == 3)
        let new = UsageEvent(id: "new-0", name: "api_request", customer: "acme", timestamp: Date(), quantity: 1)
        try await spool.record([RecordEntry(event: new, lanes: ["stripe#0"])])
        let after = try await spool.due(lane: "stripe#0", limit: 10, now: Date())
        #expect(after.map(\.event.id) == ["old-zeta", "old-alpha", "old-mid", "new-0"])
        #expect((after.last?.seq ?? 0) > 4)
    }

    /// A v6 spool (deliveries under AUTOINCREMENT) opens under v7 with every row as it was:
    /// seq, state, attempts, reason, window flag; the table no longer has AUTOINCREMENT and
    /// `sqlite_sequence` no longer tracks it, and new rows go after the old ones.
    @Test func aVersion6SpoolKeepsEveryRowWithoutAutoincrement() async throws {
        let path = tempPath("v6.spool")
        let t = Date().timeIntervalSince1970
        let old = events(3, prefix: "six")
        do {
            let queue = try DatabaseQueue(path: path)
            try Spool.migrator.migrate(queue, upTo: "v6: events keyed by an integer, in recording order")
            try await queue.write { db in
                for (i, event) in old.enumerated() {
                    try db.execute(
                        sql: "INSERT INTO events (id, payload, recorded_at) VALUES (?, ?, ?)",
                        arguments: [event.id, PayloadCodec.encode(event), t])
                    try db.execute(
                        sql:
                            "INSERT INTO deliveries (seq, event, lane, state, attempts, first_attempt_at, recorded_at, updated_at) VALUES (?, ?, 'openmeter#0', 0, ?, ?, ?, ?)",
                        arguments: [10 + i, db.lastInsertedRowID, i, i == 2 ? t : nil, t, t])
                }
                try db.execute(
                    sql: """
                        INSERT INTO deliveries (seq, event, lane, state, attempts, reason_code, reason_message, recorded_at, updated_at, window_record)
                        VALUES (13, 1, 'recurly#0', 3, 4, 'rejected', 'account closed', ?, ?, 1)
                        """, arguments: [t, t])
            }
            try queue.close()
        }
        let spool = try Spool(path: path)
        let schema = try await spool.pool.read { db in
            (
                try String.fetchOne(db, sql: "SELECT sql FROM sqlite_master WHERE name = 'deliveries'") ?? "",
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM sqlite_sequence WHERE name = 'deliveries'") ?? -1,
                try String.fetchAll(db, sql: "SELECT name FROM pragma_index_list('deliveries') ORDER BY name"),
                try Row.fetchAll(
                    db,
                    sql:
                        "SELECT seq, state, attempts, first_attempt_at IS NOT NULL, reason_code, window_record FROM deliveries ORDER BY seq"
                )
                .map {
                    "\($0[0] as Int64) \($0[1] as Int) \($0[2] as Int) \($0[3] as Bool) \(($0[4] as String?) ?? "-") \($0[5] as Int)"
                }
            )
        }
        #expect(schema.0.contains("seq INTEGER PRIMARY KEY") && !schema.0.uppercased().contains("AUTOINCREMENT"))
        #expect(schema.1 == 0)
        #expect(schema.2 == ["deliveries_queued", "deliveries_voided_unconfirmed"])
        #expect(schema.3 == ["10 0 0 false - 0", "11 0 1 false - 0", "12 0 2 true - 0", "13 3 4 false rejected 1"])
        #expect(
            try await spool.deadLetters() == [
                DeadLetter(
                    eventID: "six-0", lane: "recurly#0", code: "rejected", message: "account closed", attempts: 4)
            ])
        try await spool.record([RecordEntry(event: events(1, prefix: "seven")[0], lanes: ["openmeter#0"])])
        let due = try await spool.due(lane: "openmeter#0", limit: 10, now: Date())
        #expect(due.map(\.event.id) == ["six-0", "six-1", "six-2", "seven-0"])
        #expect(due.map(\.seq) == [10, 11, 12, 14])
    }

    /// A v5 spool with a delivery row whose event is missing is not upgraded (that row would be
    /// lost): opening it fails naming the problem, and the file still holds every row.
    @Test func aVersion5SpoolWithAnOrphanRowIsRefusedNotTrimmed() async throws {
        let path = tempPath("v5-orphan.spool")
        let t = Date().timeIntervalSince1970
        let event = UsageEvent(id: "kept", name: "api_request", customer: "acme", timestamp: Date(), quantity: 1)
        do {
            var unchecked = Configuration()
            // how an orphan could come about: a hand edit, a tool without foreign keys
            unchecked.foreignKeysEnabled = false
            let queue = try DatabaseQueue(path: path, configuration: unchecked)
            try Spool.migrator.migrate(queue, upTo: "v5: no (event_id, lane) index")
            try await queue.write { db in
                try db.execute(
                    sql: "INSERT INTO events (id, payload, recorded_at) VALUES (?, ?, ?)",
                    arguments: [event.id, PayloadCodec.encode(event), t])
                try db.execute(
                    sql:
                        "INSERT INTO deliveries (event_id, lane, state, recorded_at, updated_at) VALUES ('kept', 'stripe#0', 0, ?, ?)",
                    arguments: [t, t])
                try db.execute(
                    sql:
                        "INSERT INTO deliveries (event_id, lane, state, recorded_at, updated_at) VALUES ('gone', 'stripe#0', 0, ?, ?)",
                    arguments: [t, t])
            }
            try queue.close()
        }
        #expect {
            _ = try Spool(path: path)
        } throws: { error in
            guard let error = error as? UsageBillingError else { return false }
            return error.code == .invalidInput && error.message.contains("1 delivery row(s) whose event is missing")
        }
        let queue = try DatabaseQueue(path: path)
        let rows = try await queue.read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM deliveries WHERE event_id IN ('kept', 'gone')")
        }
        #expect(rows == 2)
    }
}
