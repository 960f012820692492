import Foundation
import GRDB
import Testing
import UsageBilling
@testable import UsageSpool

@Suite("Spool migrations")
struct MigrationTests {
    /// A spool written by the v4 schema opens under v5 with every row, its state and seq, and
    /// seqs of purged rows are still never reused; re-recording an id stays a no-op.
    @Test func aVersion4SpoolKeepsItsRowsAndSeqs() async throws {
        let path = tempPath("v4.spool")
        let t = Date().timeIntervalSince1970
        let old = events(3, prefix: "old")
        do {
            let queue = try DatabaseQueue(path: path)
            try Spool.migrator.migrate(queue, upTo: "v4: queue index over queued rows only")
            try await queue.write { db in
                for (i, event) in old.enumerated() {
                    try db.execute(sql: "INSERT INTO events (id, payload, recorded_at) VALUES (?, ?, ?)", arguments: [event.id, PayloadCodec.encode(event), t])
                    try db.execute(sql: "INSERT INTO deliveries (seq, event_id, lane, state, recorded_at, updated_at) VALUES (?, ?, 'stripe#0', ?, ?, ?)",
                                   arguments: [i + 1, event.id, i == 0 ? 1 : 0, t, t])
                }
                // The highest seq was taken and purged: it must not come back.
                try db.execute(sql: "INSERT INTO deliveries (seq, event_id, lane, state, recorded_at, updated_at) VALUES (10, ?, 'orb#0', 3, ?, ?)",
                               arguments: [old[0].id, t, t])
                try db.execute(sql: "DELETE FROM deliveries WHERE seq = 10")
            }
            try queue.close()
        }
        let spool = try Spool(path: path)
        let indexes = try await spool.pool.read { db in try String.fetchAll(db, sql: "SELECT name FROM pragma_index_list('deliveries') ORDER BY name") }
        #expect(indexes == ["deliveries_queued"])
        #expect(try spool.due(lane: "stripe#0", limit: 10, now: Date()).map(\.seq) == [2, 3])
        #expect(try spool.due(lane: "stripe#0", limit: 10, now: Date()).map(\.event.id) == ["old-1", "old-2"])
        try await spool.record(old.map { Spool.Entry(event: $0, lanes: ["stripe#0", "orb#0"]) })  // recorded before: no-op
        #expect(try spool.queuedCount() == 2)
        let new = events(1, prefix: "new")
        try await spool.record([Spool.Entry(event: new[0], lanes: ["stripe#0", "stripe#0"])])  // a lane given twice: one row
        let due = try spool.due(lane: "stripe#0", limit: 10, now: Date())
        #expect(due.map(\.event.id) == ["old-1", "old-2", "new-0"])
        #expect((due.last?.seq ?? 0) > 10)
    }
}
