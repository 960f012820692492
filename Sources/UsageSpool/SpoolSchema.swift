import Foundation
import GRDB
import GRDBSQLite
import UsageBilling

extension Spool {
    /// The spool's schema, v1 to v9: each migration runs once, in order, in a transaction.
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE events (
                        id TEXT PRIMARY KEY NOT NULL,
                        payload BLOB NOT NULL,
                        recorded_at REAL NOT NULL
                    ) WITHOUT ROWID;
                    CREATE TABLE deliveries (
                        seq INTEGER PRIMARY KEY AUTOINCREMENT,
                        event_id TEXT NOT NULL REFERENCES events(id),
                        lane TEXT NOT NULL,
                        state INTEGER NOT NULL DEFAULT 0,
                        attempts INTEGER NOT NULL DEFAULT 0,
                        next_attempt_at REAL NOT NULL DEFAULT 0,
                        first_attempt_at REAL,
                        reason_code TEXT,
                        reason_message TEXT,
                        recorded_at REAL NOT NULL,
                        updated_at REAL NOT NULL,
                        UNIQUE (event_id, lane)
                    );
                    CREATE INDEX deliveries_by_lane ON deliveries (lane, state, next_attempt_at, seq);
                    """)
        }
        m.registerMigration("v2: due rows in seq order") { db in
            // The worker asks for a lane's queued rows in seq order; with this index SQLite walks
            // them in order and stops after the batch, instead of sorting every due row.
            // The older (lane, state, next_attempt_at, seq) index made SQLite sort every due row.
            try db.execute(sql: "DROP INDEX deliveries_by_lane")
            try db.execute(sql: "CREATE INDEX deliveries_queue ON deliveries (lane, state, seq)")
        }
        m.registerMigration("v3: aggregation windows") { db in
            // Lanes whose provider bills per window fold raw rows (state 4) into `windows`; a
            // closed window becomes an event of its own with a row marked `window_record`.
            try db.execute(
                sql: """
                    ALTER TABLE deliveries ADD COLUMN window_record INTEGER NOT NULL DEFAULT 0;
                    CREATE TABLE windows (
                        lane TEXT NOT NULL,
                        customer TEXT NOT NULL,
                        meter TEXT NOT NULL,
                        start INTEGER NOT NULL,
                        window_end INTEGER NOT NULL,
                        dirty INTEGER NOT NULL,
                        state BLOB NOT NULL,
                        PRIMARY KEY (lane, customer, meter, start)
                    ) WITHOUT ROWID;
                    CREATE INDEX windows_dirty ON windows (lane, dirty, window_end);
                    """)
        }
        m.registerMigration("v4: queue index over queued rows only") { db in
            // Only queued rows are ever looked up by (lane, seq): a partial index holds just them,
            // so marking a row final removes one entry instead of moving it, and the queue scans
            // and counts walk queued rows only.
            try db.execute(sql: "DROP INDEX deliveries_queue")
            try db.execute(sql: "CREATE INDEX deliveries_queued ON deliveries (lane, seq) WHERE state = 0")
        }
        m.registerMigration("v5: no (event_id, lane) index") { db in
            // An event's lanes are written only when its id is new to `events` (whose key already
            // makes a re-recorded id a no-op), so the UNIQUE (event_id, lane) index decided
            // nothing, yet with ids in no particular order every commit rewrote one of its pages
            // per event: half the pages a commit of one-event writers wrote. SQLite drops a
            // constraint only by rebuilding the table; seq values and the AUTOINCREMENT high-water
            // mark (seqs of purged rows are never reused) carry over.
            let highWater = try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'deliveries'")
            try db.execute(
                sql: """
                    CREATE TABLE deliveries_v5 (
                        seq INTEGER PRIMARY KEY AUTOINCREMENT,
                        event_id TEXT NOT NULL REFERENCES events(id),
                        lane TEXT NOT NULL,
                        state INTEGER NOT NULL DEFAULT 0,
                        attempts INTEGER NOT NULL DEFAULT 0,
                        next_attempt_at REAL NOT NULL DEFAULT 0,
                        first_attempt_at REAL,
                        reason_code TEXT,
                        reason_message TEXT,
                        recorded_at REAL NOT NULL,
                        updated_at REAL NOT NULL,
                        window_record INTEGER NOT NULL DEFAULT 0
                    );
                    INSERT INTO deliveries_v5 (seq, event_id, lane, state, attempts, next_attempt_at, first_attempt_at, reason_code,
                                               reason_message, recorded_at, updated_at, window_record)
                        SELECT seq, event_id, lane, state, attempts, next_attempt_at, first_attempt_at, reason_code,
                               reason_message, recorded_at, updated_at, window_record FROM deliveries;
                    DROP TABLE deliveries;
                    ALTER TABLE deliveries_v5 RENAME TO deliveries;
                    CREATE INDEX deliveries_queued ON deliveries (lane, seq) WHERE state = 0;
                    """)
            if let highWater {
                try db.execute(sql: "DELETE FROM sqlite_sequence WHERE name = 'deliveries'")
                try db.execute(
                    sql: "INSERT INTO sqlite_sequence (name, seq) VALUES ('deliveries', ?)", arguments: [highWater])
            }
        }
        m.registerMigration("v6: events keyed by an integer, in recording order") { db in
            // Events were a WITHOUT ROWID table keyed by their text id, so each new event (ids
            // come in no particular order) rewrote a random page holding whole payloads, and every
            // delivery row carried the id again and was joined on it. Now events sit in recording
            // order under an integer key (appends), only a UNIQUE index on the id takes random
            // writes, and deliveries point at the integer (faster recording: see
            // Benchmarks/calibration/sqlite_floor.c), and the worker's reads walk events in order. Every row carries over, in one transaction that
            // copies both tables (a large spool needs that much free disk for the upgrade); a
            // delivery row whose event is missing stops the migration instead of being dropped.
            let before = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM deliveries") ?? 0
            let highWater = try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'deliveries'")
            try db.execute(
                sql: """
                    CREATE TABLE events_v6 (
                        key INTEGER PRIMARY KEY,
                        id TEXT NOT NULL UNIQUE,
                        payload BLOB NOT NULL,
                        recorded_at REAL NOT NULL
                    );
                    INSERT INTO events_v6 (id, payload, recorded_at) SELECT id, payload, recorded_at FROM events ORDER BY recorded_at, id;
                    CREATE TABLE deliveries_v6 (
                        seq INTEGER PRIMARY KEY AUTOINCREMENT,
                        event INTEGER NOT NULL REFERENCES events(key),
                        lane TEXT NOT NULL,
                        state INTEGER NOT NULL DEFAULT 0,
                        attempts INTEGER NOT NULL DEFAULT 0,
                        next_attempt_at REAL NOT NULL DEFAULT 0,
                        first_attempt_at REAL,
                        reason_code TEXT,
                        reason_message TEXT,
                        recorded_at REAL NOT NULL,
                        updated_at REAL NOT NULL,
                        window_record INTEGER NOT NULL DEFAULT 0
                    );
                    INSERT INTO deliveries_v6 (seq, event, lane, state, attempts, next_attempt_at, first_attempt_at, reason_code,
                                               reason_message, recorded_at, updated_at, window_record)
                        SELECT d.seq, e.key, d.lane, d.state, d.attempts, d.next_attempt_at, d.first_attempt_at, d.reason_code,
                               d.reason_message, d.recorded_at, d.updated_at, d.window_record
                        FROM deliveries d JOIN events_v6 e ON e.id = d.event_id ORDER BY d.seq;
                    """)
            let after = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM deliveries_v6") ?? 0
            guard after == before else {
                throw UsageBillingError(
                    .invalidInput,
                    "the spool has \(before - after) delivery row(s) whose event is missing, so it cannot be upgraded without losing them",
                    fix:
                        "nothing was changed: open it with the release that wrote it, or inspect it with `sqlite3 FILE \"SELECT * FROM deliveries WHERE event_id NOT IN (SELECT id FROM events)\"`"
                )
            }
            try db.execute(
                sql: """
                    DROP TABLE deliveries;
                    DROP TABLE events;
                    ALTER TABLE events_v6 RENAME TO events;
                    ALTER TABLE deliveries_v6 RENAME TO deliveries;
                    CREATE INDEX deliveries_queued ON deliveries (lane, seq) WHERE state = 0;
                    """)
            if let highWater {
                try db.execute(sql: "DELETE FROM sqlite_sequence WHERE name = 'deliveries'")
                try db.execute(
                    sql: "INSERT INTO sqlite_sequence (name, seq) VALUES ('deliveries', ?)", arguments: [highWater])
            }
        }
        m.registerMigration("v7: deliveries without AUTOINCREMENT") { db in
            // AUTOINCREMENT makes every commit write SQLite's `sqlite_sequence` page to the WAL
            // as well, a page more per commit for small writers. A row's seq is now the highest one plus one, so after
            // `dlq purge` takes the newest rows a seq can be used again; nothing outside the
            // spool sees seqs, and a worker's read cursor starts a new pass when it runs dry.
            // Every row carries over with its seq, in one transaction (a large spool needs that much free disk).
            try db.execute(
                sql: """
                    CREATE TABLE deliveries_v7 (
                        seq INTEGER PRIMARY KEY,
                        event INTEGER NOT NULL REFERENCES events(key),
                        lane TEXT NOT NULL,
                        state INTEGER NOT NULL DEFAULT 0,
                        attempts INTEGER NOT NULL DEFAULT 0,
                        next_attempt_at REAL NOT NULL DEFAULT 0,
                        first_attempt_at REAL,
                        reason_code TEXT,
                        reason_message TEXT,
                        recorded_at REAL NOT NULL,
                        updated_at REAL NOT NULL,
                        window_record INTEGER NOT NULL DEFAULT 0
                    );
                    INSERT INTO deliveries_v7 (seq, event, lane, state, attempts, next_attempt_at, first_attempt_at, reason_code,
                                               reason_message, recorded_at, updated_at, window_record)
                        SELECT seq, event, lane, state, attempts, next_attempt_at, first_attempt_at, reason_code,
                               reason_message, recorded_at, updated_at, window_record
                        FROM deliveries ORDER BY seq;
                    """)
            try db.execute(
                sql: """
                    DROP TABLE deliveries;
                    ALTER TABLE deliveries_v7 RENAME TO deliveries;
                    CREATE INDEX deliveries_queued ON deliveries (lane, seq) WHERE state = 0;
                    DELETE FROM sqlite_sequence WHERE name = 'deliveries';
                    """)
        }
        m.registerMigration("v8: corrections") { db in
            // A correction is a row of its own beside its event, with where it stands on each of
            // the event's lanes. The trigger keeps a voided row honest whoever marks it: a send
            // already under way when the row was voided may have reached the provider, so its
            // mark makes the correction pending there, and a retry queues the row again (same id).
            try db.execute(
                sql: """
                    CREATE TABLE corrections (
                        event INTEGER NOT NULL REFERENCES events(key),
                        number INTEGER NOT NULL,
                        kind TEXT NOT NULL,
                        reason TEXT NOT NULL,
                        recorded_at REAL NOT NULL,
                        PRIMARY KEY (event, number)
                    ) WITHOUT ROWID;
                    CREATE TABLE correction_lanes (
                        event INTEGER NOT NULL,
                        number INTEGER NOT NULL,
                        lane TEXT NOT NULL,
                        state INTEGER NOT NULL,
                        reason_code TEXT,
                        reason_message TEXT,
                        updated_at REAL NOT NULL,
                        PRIMARY KEY (event, number, lane)
                    ) WITHOUT ROWID;
                    CREATE INDEX correction_lanes_pending ON correction_lanes (lane, event) WHERE state = 1;
                    CREATE TRIGGER voided_row_attempted AFTER UPDATE OF attempts ON deliveries
                    WHEN OLD.state = 5 AND NEW.attempts > OLD.attempts
                    BEGIN
                        UPDATE deliveries SET state = 0 WHERE seq = NEW.seq AND state = 5;
                        UPDATE correction_lanes SET state = 1, updated_at = NEW.updated_at
                            WHERE event = NEW.event AND lane = NEW.lane AND state = 0;
                    END;
                    """)
        }
        m.registerMigration("v9: voids a worker has not confirmed") { db in
            // A void made while a worker held the lane (state 6) is confirmed by that worker
            // (state 5), or queued again by the next one if it died; a mark on either means the
            // send had started.
            try db.execute(
                sql: """
                    DROP TRIGGER voided_row_attempted;
                    CREATE TRIGGER voided_row_attempted AFTER UPDATE OF attempts ON deliveries
                    WHEN OLD.state IN (5, 6) AND NEW.attempts > OLD.attempts
                    BEGIN
                        UPDATE deliveries SET state = 0 WHERE seq = NEW.seq AND state IN (5, 6);
                        UPDATE correction_lanes SET state = 1, updated_at = NEW.updated_at
                            WHERE event = NEW.event AND lane = NEW.lane AND state = 0;
                    END;
                    CREATE INDEX deliveries_voided_unconfirmed ON deliveries (lane) WHERE state = 6;
                    """)
        }
        m.registerMigration("v10: delivering corrections") { db in
            // Each correction lane names its event's row there (the row it waits for to settle),
            // and counts its attempts at the provider and when the next is due.
            try db.execute(
                sql: """
                    ALTER TABLE correction_lanes ADD COLUMN seq INTEGER;
                    ALTER TABLE correction_lanes ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE correction_lanes ADD COLUMN next_attempt_at REAL NOT NULL DEFAULT 0;
                    ALTER TABLE corrections ADD COLUMN quantity TEXT;
                    UPDATE correction_lanes SET seq = (
                        SELECT d.seq FROM deliveries d WHERE d.event = correction_lanes.event AND d.lane = correction_lanes.lane
                        AND d.window_record = 0 ORDER BY d.seq LIMIT 1);
                    """)
        }
        return m
    }
}
