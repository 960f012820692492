import Foundation
import GRDB
import GRDBSQLite
import UsageBilling

/// How hard the spool works to survive a crash.
public enum SpoolDurability: String, Sendable, CaseIterable {
    /// `synchronous=FULL`: every commit group is fsynced; survives power loss.
    case full
    /// `synchronous=NORMAL` in WAL mode: survives a process crash; a power cut may lose the last
    /// commits before a checkpoint.
    case normal
}

/// The state of one event at one destination lane.
public enum DeliveryState: Int, Sendable, CaseIterable {
    case queued = 0, delivered = 1, duplicate = 2, dead = 3
    /// A raw event folded into an aggregation window of its lane; the window's record (a row of
    /// its own) carries it to the provider.
    case aggregated = 4
}

/// Per-lane counts for `status`.
public struct LaneStatus: Sendable, Hashable {
    public var lane: String
    public var queued = 0
    /// Queued rows that have been tried at least once (in flight or waiting to retry).
    public var retrying = 0
    public var delivered = 0
    public var duplicates = 0
    /// Raw events folded into aggregation windows (lanes that bill per window).
    public var aggregated = 0
    /// Windows with events not yet emitted as a record (open, or waiting out the grace period).
    public var openWindows = 0
    /// Dead letters by reason code.
    public var dead: [String: Int] = [:]
    /// When the oldest queued event was recorded.
    public var oldestQueued: Date?
}

/// A dead letter: an event one lane gave up on, with the reason.
public struct DeadLetter: Sendable, Hashable {
    public var eventID: String
    public var lane: String
    public var code: String
    public var message: String
    public var attempts: Int
}

/// A row to deliver: the event and its attempt bookkeeping.
public struct QueuedDelivery: Sendable {
    public var seq: Int64
    public var event: UsageEvent
    public var attempts: Int
    /// Set once a send may have started (for providers without idempotency it is set durably
    /// before the request), so a row with it may already be at the provider.
    public var firstAttemptAt: Date?
    /// Whether the row is an aggregation window's record rather than a raw event.
    public var isWindowRecord: Bool = false
}

/// The durable outbox: every recorded event with one row per destination lane, in SQLite (WAL).
///
/// `record` returns only once the rows are committed; concurrent `record` calls share one commit
/// (group commit). An event id is recorded once forever: recording it again changes nothing, so
/// a retried `record` never bills twice.
public final class Spool: UsageLedger {
    /// The file.
    public let path: String
    let pool: DatabasePool
    private let committer: GroupCommitter

    public var location: String { path }

    /// Opens (or creates) the spool at `path`, migrating its schema.
    /// - Throws: `.invalidInput` when the file is not a SQLite database or is damaged, naming the
    ///   file and what to do; the file is left untouched.
    public init(path: String, durability: SpoolDurability = .normal) throws {
        self.path = path
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(durability == .full ? "FULL" : "NORMAL")")
            // A 16 MiB page cache keeps the indexes' hot pages in memory under heavy recording,
            // and folding the WAL every 4,000 pages (not 1,000) copies a hot page once, not 4 times.
            try db.execute(sql: "PRAGMA cache_size = -16384")
            try db.execute(sql: "PRAGMA wal_autocheckpoint = 4000")
        }
        do {
            self.pool = try Self.open(path: path, configuration: configuration)
        } catch let error as UsageBillingError {
            throw error
        } catch let error as DatabaseError {
            throw UsageBillingError(.invalidInput, "the spool \(path) cannot be opened: \(error.message ?? "\(error.resultCode)")",
                                    fix: "if it is damaged or not a spool, move it aside (nothing in it was deleted) and recover it with `sqlite3 FILE .recover`")
        }
        self.committer = GroupCommitter(pool: pool)
    }

    deinit { committer.stop() }

    /// How many transactions the commit thread has written and how many `record`/`mark` calls
    /// they carried: calls ÷ transactions is how well concurrent callers share a commit.
    public var commitStatistics: (transactions: Int, calls: Int) { committer.statistics }

    /// Opens the pool, checks and migrates it, waiting (up to 5 s, in bounded steps) while another process or a spool
    /// being closed holds the file locked: SQLite does not always call the busy handler while a
    /// closing connection folds its write-ahead log.
    private static func open(path: String, configuration: Configuration) throws -> DatabasePool {
        var attempt = 0
        while true {
            do {
                let pool = try DatabasePool(path: path, configuration: configuration)
                let problems = try pool.read { db in try String.fetchAll(db, sql: "PRAGMA quick_check") }
                guard problems == ["ok"] else {
                    throw UsageBillingError(.invalidInput, "the spool \(path) is damaged: \(problems.prefix(3).joined(separator: "; "))",
                                            fix: "stop the worker, copy the file aside, and recover it with `sqlite3 \(path) .recover`; nothing was deleted")
                }
                try migrator.migrate(pool)
                // Marking binds its row lists as JSON arrays (json_each): SQLite 3.38+, or JSON1.
                guard (try? pool.read({ db in try Int.fetchOne(db, sql: "SELECT json_valid('[1]')") })) == 1 else {
                    throw UsageBillingError(.configuration, "this SQLite has no JSON functions (json_each), which the spool needs",
                                            fix: "install SQLite 3.38 or later (Debian: libsqlite3-dev) or one built with JSON1")
                }
                return pool
            } catch let error as DatabaseError where (error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED) && attempt < 50 {
                attempt += 1
                Thread.sleep(forTimeInterval: 0.1)
            }
        }
    }

    /// Folds the write-ahead log into the database file (`PRAGMA wal_checkpoint(TRUNCATE)`),
    /// e.g. before copying the file.
    public func checkpoint() throws {
        try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
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
            try db.execute(sql: """
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
            try db.execute(sql: """
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
                try db.execute(sql: "INSERT INTO sqlite_sequence (name, seq) VALUES ('deliveries', ?)", arguments: [highWater])
            }
        }
        m.registerMigration("v6: events keyed by an integer, in recording order") { db in
            // Events were a WITHOUT ROWID table keyed by their text id, so each new event (ids
            // come in no particular order) rewrote a random page holding whole payloads, and every
            // delivery row carried the id again and was joined on it. Now events sit in recording
            // order under an integer key (appends), only a UNIQUE index on the id takes random
            // writes, and deliveries point at the integer: plain C with 8 events per transaction
            // went from 33k to 41k events/s (Benchmarks/calibration/sqlite_floor.c), and the
            // worker's reads walk events in order. Every row carries over, in one transaction that
            // copies both tables (a large spool needs that much free disk for the upgrade); a
            // delivery row whose event is missing stops the migration instead of being dropped.
            let before = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM deliveries") ?? 0
            let highWater = try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'deliveries'")
            try db.execute(sql: """
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
                throw UsageBillingError(.invalidInput, "the spool has \(before - after) delivery row(s) whose event is missing, so it cannot be upgraded without losing them",
                                        fix: "nothing was changed: open it with the release that wrote it, or inspect it with `sqlite3 FILE \"SELECT * FROM deliveries WHERE event_id NOT IN (SELECT id FROM events)\"`")
            }
            try db.execute(sql: """
                DROP TABLE deliveries;
                DROP TABLE events;
                ALTER TABLE events_v6 RENAME TO events;
                ALTER TABLE deliveries_v6 RENAME TO deliveries;
                CREATE INDEX deliveries_queued ON deliveries (lane, seq) WHERE state = 0;
                """)
            if let highWater {
                try db.execute(sql: "DELETE FROM sqlite_sequence WHERE name = 'deliveries'")
                try db.execute(sql: "INSERT INTO sqlite_sequence (name, seq) VALUES ('deliveries', ?)", arguments: [highWater])
            }
        }
        m.registerMigration("v7: deliveries without AUTOINCREMENT") { db in
            // AUTOINCREMENT made every commit write SQLite's `sqlite_sequence` page to the WAL
            // as well: one page in five for a commit of one-event writers (plain C: 76 -> 69 us
            // per commit of 8 events). A row's seq is now the highest one plus one, so after
            // `dlq purge` takes the newest rows a seq can be used again; nothing outside the
            // spool sees seqs, and a worker's read cursor starts a new pass when it runs dry.
            // Every row carries over with its seq, in one transaction (a large spool needs that much free disk).
            try db.execute(sql: """
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
            try db.execute(sql: """
                DROP TABLE deliveries;
                ALTER TABLE deliveries_v7 RENAME TO deliveries;
                CREATE INDEX deliveries_queued ON deliveries (lane, seq) WHERE state = 0;
                DELETE FROM sqlite_sequence WHERE name = 'deliveries';
                """)
        }
        return m
    }

    /// One event to record and the lanes it goes to; `deadLetter` records it straight as dead on
    /// a lane (an unrouted event kept under the `dead-letter` policy).
    public struct Entry: Sendable {
        public var event: UsageEvent
        public var lanes: [String]
        public var deadLetter: (lane: String, reason: RejectionReason)?

        public init(event: UsageEvent, lanes: [String], deadLetter: (lane: String, reason: RejectionReason)? = nil) {
            self.event = event
            self.lanes = lanes
            self.deadLetter = deadLetter
        }
    }

    /// Records entries durably, one row per lane, all in one transaction (shared with concurrent
    /// callers). Already-recorded ids are left as they are.
    public func record(_ entries: [Entry], now: Date = Date()) async throws {
        guard !entries.isEmpty else { return }
        let rows = entries.map { ($0, PayloadCodec.encode($0.event)) }
        try await committer.commit(.record(rows, now: now.timeIntervalSince1970))
    }

    /// Up to `limit` queued rows of `lane` due at `now`, oldest first, with a `seq` above
    /// `after` (rows a worker already has in flight are below it); `windowRecords` picks only raw
    /// events (`false`) or only window records (`true`), nil both.
    public func due(lane: String, limit: Int, now: Date, windowRecords: Bool? = nil, after: Int64 = 0) throws -> [QueuedDelivery] {
        // One SELECT, which SQLite runs in a read transaction of its own: GRDB's `read` also
        // compiled and ran BEGIN DEFERRED and COMMIT around it, half of this call's time for a
        // Stripe v1 lane's 64 rows (perf).
        try pool.unsafeRead { db in
            let filter = windowRecords.map { " AND d.window_record = \($0 ? 1 : 0)" } ?? ""
            // Read through the C API: this runs once per batch on the delivery path, and GRDB's
            // rows (a dictionary-like Row per result) cost more than the query.
            let query = try RawStatement(db, """
                SELECT d.seq, d.attempts, d.first_attempt_at, d.window_record, e.payload FROM deliveries d JOIN events e ON e.key = d.event
                WHERE d.lane = ? AND d.state = 0 AND d.seq > ? AND d.next_attempt_at <= ?\(filter) ORDER BY d.seq LIMIT ?
                """)
            query.bind(1, lane)
            query.bind(2, after)
            query.bind(3, now.timeIntervalSince1970)
            query.bind(4, Int64(limit))
            var out: [QueuedDelivery] = []
            out.reserveCapacity(min(limit, 1_000))
            try query.rows { row in
                out.append(QueuedDelivery(seq: row.int64(0), event: try PayloadCodec.decode(row.data(4)), attempts: Int(row.int64(1)),
                                          firstAttemptAt: row.double(2).map(Date.init(timeIntervalSince1970:)), isWindowRecord: row.int64(3) == 1))
            }
            return out
        }
    }

    /// Every event recorded for `lane` (not window records), with its state there: the ledger
    /// a reconciliation compares a provider with. `visit` is called once per row, in seq order.
    public func ledger(lane: String, _ visit: (UsageEvent, DeliveryState) throws -> Void) throws {
        try pool.read { db in
            let rows = try Row.fetchCursor(db, sql: """
                SELECT d.state, e.payload FROM deliveries d JOIN events e ON e.key = d.event
                WHERE d.lane = ? AND d.window_record = 0 ORDER BY d.seq
                """, arguments: [lane])
            while let row = try rows.next() {
                guard let state = DeliveryState(rawValue: row[0]) else { continue }
                try visit(try PayloadCodec.decode(row[1] as Data), state)
            }
        }
    }

    /// The lanes that have rows, sorted.
    public func lanes() throws -> [String] {
        try pool.read { db in try String.fetchAll(db, sql: "SELECT DISTINCT lane FROM deliveries ORDER BY lane") }
    }

    /// Durably notes that a send of these rows is starting (sets `first_attempt_at`), so after a
    /// crash mid-request they are known to be possibly at the provider. Used for providers that
    /// cannot dedupe and must look an event up before sending it again.
    public func markSending(_ seqs: [Int64], now: Date = Date()) async throws {
        guard !seqs.isEmpty else { return }
        let list = seqs.map(String.init).joined(separator: ",")
        try await pool.write { db in
            try db.execute(sql: "UPDATE deliveries SET first_attempt_at = COALESCE(first_attempt_at, ?) WHERE seq IN (\(list))",
                           arguments: [now.timeIntervalSince1970])
        }
    }

    // MARK: Aggregation windows

    /// Folds raw rows of `lane` into its windows and marks them `aggregated`, in one transaction,
    /// so a crash either folds a row once or not at all.
    public func fold(_ rows: [QueuedDelivery], lane: String, spec: AggregationSpec, now: Date = Date()) async throws {
        guard !rows.isEmpty else { return }
        let aggregator = WindowAggregator(spec: spec, namespace: lane)
        try await pool.write { db in
            var touched: [WindowKey: WindowState] = [:]
            let encoder = JSONEncoder(), decoder = JSONDecoder()
            var bounds: (start: Date, end: Date)?
            // Cached statements: a fold reads and writes every window its rows touch (a window
            // per customer and meter), and parsing these per window cost a fifth of the fold.
            let select = try db.cachedStatement(sql: "SELECT state FROM windows WHERE lane = ? AND customer = ? AND meter = ? AND start = ?")
            // Only rows still queued now, inside the write: a row another fold took first
            // (reads that overlapped, or a worker that bypassed the worker lock) counts once.
            let seqs = "[" + rows.map { String($0.seq) }.joined(separator: ",") + "]"
            let live = Set(try Int64.fetchAll(db, sql: "SELECT seq FROM deliveries WHERE seq IN (SELECT value FROM json_each(?)) AND state = 0",
                                              arguments: [seqs]))
            for row in rows where live.contains(row.seq) {
                let (key, end) = aggregator.key(for: row.event, reusing: &bounds)
                var state: WindowState
                if let known = touched[key] {
                    state = known
                } else if let data = try Data.fetchOne(select, arguments: [lane, key.customer, key.meter, key.start]) {
                    state = try decoder.decode(WindowState.self, from: data)
                } else {
                    state = WindowState(end: end)
                }
                WindowAggregator.fold(row.event, into: &state, formula: spec.formula)
                touched[key] = state
            }
            let save = try db.cachedStatement(sql: "INSERT OR REPLACE INTO windows (lane, customer, meter, start, window_end, dirty, state) VALUES (?, ?, ?, ?, ?, 1, ?)")
            for (key, state) in touched {
                try save.execute(arguments: [lane, key.customer, key.meter, key.start, state.end, try encoder.encode(state)])
            }
            let folded = try RawStatement(db, "UPDATE deliveries SET state = 4, updated_at = ? WHERE seq IN (SELECT value FROM json_each(?)) AND state = 0")
            folded.bind(1, now.timeIntervalSince1970)
            folded.bind(2, seqs)
            try folded.run()
        }
    }

    /// Emits a record for every window of `lane` with new events whose end plus the grace period
    /// has passed (or every such window, `all`): the record is recorded as an event with a queued
    /// row of its own, and the window's emitted revision is saved, in one transaction. Returns
    /// how many records were queued.
    @discardableResult
    public func closeWindows(lane: String, spec: AggregationSpec, now: Date, all: Bool = false) async throws -> Int {
        let limit = all ? Int64.max : Int64((now.timeIntervalSince1970 - spec.grace.seconds).rounded(.down))
        return try await pool.write { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT customer, meter, start, state FROM windows WHERE lane = ? AND dirty = 1 AND window_end <= ? ORDER BY start, customer, meter
                """, arguments: [lane, limit])
            let encoder = JSONEncoder(), decoder = JSONDecoder()
            let t = now.timeIntervalSince1970
            var queued = 0
            for row in rows {
                let key = WindowKey(customer: row[0], meter: row[1], start: row[2])
                var state = try decoder.decode(WindowState.self, from: row[3] as Data)
                if let record = WindowAggregator.record(for: key, state: &state, spec: spec, namespace: lane) {
                    try db.execute(sql: "INSERT OR IGNORE INTO events (id, payload, recorded_at) VALUES (?, ?, ?)",
                                   arguments: [record.id, PayloadCodec.encode(record), t])
                    if db.changesCount > 0 {  // a revision already queued stays as it is
                        try db.execute(sql: """
                            INSERT INTO deliveries (event, lane, state, recorded_at, updated_at, window_record) VALUES (?, ?, 0, ?, ?, 1)
                            """, arguments: [db.lastInsertedRowID, lane, t, t])
                        queued += 1
                    }
                }
                try db.execute(sql: "UPDATE windows SET dirty = 0, state = ? WHERE lane = ? AND customer = ? AND meter = ? AND start = ?",
                               arguments: [try encoder.encode(state), lane, key.customer, key.meter, key.start])
            }
            return queued
        }
    }

    /// The windows of `lane` (open and emitted), oldest first.
    public func windows(lane: String) throws -> [(key: WindowKey, state: WindowState)] {
        try pool.read { db in
            let decoder = JSONDecoder()
            return try Row.fetchAll(db, sql: "SELECT customer, meter, start, state FROM windows WHERE lane = ? ORDER BY start, customer, meter",
                                    arguments: [lane]).map { row in
                (WindowKey(customer: row[0], meter: row[1], start: row[2]), try decoder.decode(WindowState.self, from: row[3] as Data))
            }
        }
    }

    /// When `lane`'s earliest window with new events ends, or nil when none has any.
    public func nextWindowEnd(lane: String) throws -> Date? {
        try pool.read { db in
            try Int64.fetchOne(db, sql: "SELECT MIN(window_end) FROM windows WHERE lane = ? AND dirty = 1", arguments: [lane])
                .map { Date(timeIntervalSince1970: TimeInterval($0)) }
        }
    }

    /// When `lane`'s next queued row is due, or nil when none is queued.
    public func nextDue(lane: String) throws -> Date? {
        try pool.read { db in
            try Double.fetchOne(db, sql: "SELECT MIN(next_attempt_at) FROM deliveries WHERE lane = ? AND state = 0", arguments: [lane])
                .map(Date.init(timeIntervalSince1970:))
        }
    }

    /// What became of a row.
    public enum Mark: Sendable {
        case delivered, duplicate
        case dead(RejectionReason)
        /// Still queued: try again at `at`.
        case retry(at: Date, reason: String)
    }

    /// Records outcomes for rows (by `seq`), durably, before returning. Marks from concurrent
    /// callers (several batches in flight, several lanes) and concurrent `record` calls share one
    /// transaction on the commit thread: with one event per request, a transaction per batch
    /// was the worker's limit.
    public func mark(_ marks: [(seq: Int64, mark: Mark)], now: Date = Date()) async throws {
        guard !marks.isEmpty else { return }
        try await committer.commit(.mark(marks, now: now.timeIntervalSince1970))
    }

    /// The spool's worker holds the file lock for its whole run, so a lane's lease is always its own.
    public func mark(_ marks: [(seq: Int64, mark: Mark)], now: Date, lease: LaneLease?) async throws {
        try await mark(marks, now: now)
    }

    // MARK: One worker per spool

    /// `flock` on `<spool>.worker-lock` for the worker's run (released when it returns or its
    /// process dies): two workers would send the same queued rows twice.
    public func acquireDeliveryLock() async throws -> (any DeliveryLock)? { try await WorkerLock.acquire(spoolPath: path) }
    /// Under the file lock every lane is the worker's: a lease that never lapses.
    public func acquireLease(lane: String, owner: String, ttl: Duration) async throws -> LaneLease? {
        LaneLease(lane: lane, owner: owner, token: 0, expiresAt: .distantFuture)
    }
    public func renewLease(_ lease: LaneLease, ttl: Duration) async throws -> Bool { true }
    public func releaseLease(_ lease: LaneLease) async throws {}
    public func leases() async throws -> [LaneLease] { [] }

    /// Writes marks inside the caller's transaction: delivered and duplicate rows in one statement
    /// each, dead and retried rows one by one (they are few).
    static func apply(_ marks: [(seq: Int64, mark: Mark)], now t: Double, db: Database) throws {
        var delivered: [Int64] = [], duplicates: [Int64] = []
        var others: [(Int64, Mark)] = []
        for (seq, mark) in marks {
            switch mark {
            case .delivered: delivered.append(seq)
            case .duplicate: duplicates.append(seq)
            default: others.append((seq, mark))
            }
        }
        // One cached statement for any number of rows: the seqs go in as a JSON array.
        let final = try RawStatement(db, """
            UPDATE deliveries SET state = ?, attempts = attempts + 1, first_attempt_at = COALESCE(first_attempt_at, ?),
            reason_code = NULL, reason_message = NULL, updated_at = ? WHERE seq IN (SELECT value FROM json_each(?))
            """)
        for (state, seqs) in [(DeliveryState.delivered, delivered), (.duplicate, duplicates)] where !seqs.isEmpty {
            final.bind(1, Int64(state.rawValue))
            final.bind(2, t)
            final.bind(3, t)
            final.bind(4, "[" + seqs.map(String.init).joined(separator: ",") + "]")
            try final.run()
        }
        for (seq, mark) in others {
            switch mark {
            case .dead(let reason):
                try db.cachedStatement(sql: """
                    UPDATE deliveries SET state = 3, attempts = attempts + 1, first_attempt_at = COALESCE(first_attempt_at, ?),
                    reason_code = ?, reason_message = ?, updated_at = ? WHERE seq = ?
                    """).execute(arguments: [t, reason.code, reason.description, t, seq])
            case .retry(let at, let reason):
                try db.cachedStatement(sql: """
                    UPDATE deliveries SET attempts = attempts + 1, first_attempt_at = COALESCE(first_attempt_at, ?),
                    next_attempt_at = ?, reason_code = 'retrying', reason_message = ?, updated_at = ? WHERE seq = ?
                    """).execute(arguments: [t, at.timeIntervalSince1970, reason, t, seq])
            case .delivered, .duplicate:
                break
            }
        }
    }

    /// Counts per lane.
    public func status() throws -> [LaneStatus] {
        try pool.read { db in
            var byLane: [String: LaneStatus] = [:]
            for row in try Row.fetchAll(db, sql: """
                SELECT lane, state, COALESCE(reason_code, ''), COUNT(*), MIN(recorded_at), SUM(attempts > 0) FROM deliveries GROUP BY lane, state, reason_code
                """) {
                let lane: String = row[0]
                var s = byLane[lane] ?? LaneStatus(lane: lane)
                let count: Int = row[3]
                switch DeliveryState(rawValue: row[1]) {
                case .queued?:
                    s.queued += count
                    s.retrying += (row[5] as Int?) ?? 0
                    let oldest = Date(timeIntervalSince1970: row[4])
                    s.oldestQueued = min(s.oldestQueued ?? oldest, oldest)
                case .delivered?: s.delivered += count
                case .duplicate?: s.duplicates += count
                case .dead?: s.dead[row[2], default: 0] += count
                case .aggregated?: s.aggregated += count
                case nil: break
                }
                byLane[lane] = s
            }
            for row in try Row.fetchAll(db, sql: "SELECT lane, COUNT(*) FROM windows WHERE dirty = 1 GROUP BY lane") {
                let lane: String = row[0]
                var s = byLane[lane] ?? LaneStatus(lane: lane)
                s.openWindows = row[1]
                byLane[lane] = s
            }
            return byLane.values.sorted { $0.lane < $1.lane }
        }
    }

    public func queuedCount(lane: String?) throws -> Int {
        if let lane { return try queuedCount(lane: lane) }
        return try queuedCount()
    }

    /// Queued rows in total.
    public func queuedCount() throws -> Int {
        try pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM deliveries WHERE state = 0") ?? 0 }
    }

    /// Queued rows of one lane.
    public func queuedCount(lane: String) throws -> Int {
        try pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM deliveries WHERE lane = ? AND state = 0", arguments: [lane]) ?? 0 }
    }

    /// Dead letters, oldest first, optionally of one reason code.
    public func deadLetters(reason: String? = nil, limit: Int = 100) throws -> [DeadLetter] {
        try pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT e.id, d.lane, d.reason_code, d.reason_message, d.attempts FROM deliveries d JOIN events e ON e.key = d.event
                WHERE d.state = 3 AND (? IS NULL OR d.reason_code = ?) ORDER BY d.seq LIMIT ?
                """, arguments: [reason, reason, limit]).map {
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
    public func rejectDelivered(_ rejections: [(identifier: String, reason: RejectionReason)], provider: String,
                                now: Date = Date()) async throws -> Int {
        guard !rejections.isEmpty else { return 0 }
        return try await pool.write { db in
            let update = try db.cachedStatement(sql: """
                UPDATE deliveries SET state = 3, reason_code = ?, reason_message = ?, updated_at = ?
                WHERE event = (SELECT key FROM events WHERE id = ?) AND state IN (1, 2) AND window_record = 0
                  AND (substr(lane, 1, length(?) + 1) = ? || '/' OR substr(lane, 1, length(?) + 1) = ? || '#')
                """)
            var changed = 0
            for (identifier, reason) in rejections {
                try update.execute(arguments: [reason.code, reason.description, now.timeIntervalSince1970, identifier, provider, provider, provider, provider])
                changed += db.changesCount
            }
            return changed
        }
    }

    /// Puts dead letters (of one reason, or all) back in the queue, due now. Returns how many.
    @discardableResult
    public func retryDeadLetters(reason: String? = nil, now: Date = Date()) async throws -> Int {
        try await pool.write { db in
            try db.execute(sql: """
                UPDATE deliveries SET state = 0, attempts = 0, first_attempt_at = NULL, next_attempt_at = ?, updated_at = ?
                WHERE state = 3 AND (? IS NULL OR reason_code = ?)
                """, arguments: [now.timeIntervalSince1970, now.timeIntervalSince1970, reason, reason])
            return db.changesCount
        }
    }

    /// Deletes dead letters (of one reason, or all). Returns how many.
    @discardableResult
    public func purgeDeadLetters(reason: String? = nil) async throws -> Int {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM deliveries WHERE state = 3 AND (? IS NULL OR reason_code = ?)", arguments: [reason, reason])
            return db.changesCount
        }
    }
}

extension Spool.Mark {
    var isDelivered: Bool { if case .delivered = self { return true } else { return false } }
}

/// Merges concurrent `record` and `mark` calls into one transaction: callers queue their work,
/// and a dedicated thread commits everything queued so far in one transaction (one fsync in
/// `full` mode), then wakes those callers. Writing synchronously on its own thread keeps commits
/// off Swift's cooperative pool and avoids a hop per call.
final class GroupCommitter: @unchecked Sendable {
    /// One caller's share of a transaction.
    enum Work: Sendable {
        /// New events with their payloads.
        case record([(Spool.Entry, Data)], now: Double)
        /// Outcomes for rows.
        case mark([(seq: Int64, mark: Spool.Mark)], now: Double)
    }
    private typealias Item = (work: Work, done: CheckedContinuation<Void, any Error>)
    private let pool: DatabasePool
    private let condition = NSCondition()
    private var pending: [Item] = []
    private var stopped = false
    private var transactions = 0, calls = 0  // under `condition`

    var statistics: (transactions: Int, calls: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (transactions, calls)
    }

    init(pool: DatabasePool) {
        self.pool = pool
        let thread = Thread { [self] in
            Thread.current.name = "ub-spool-commit"  // named from inside, so top -H and perf show it (15 bytes at most)
            self.loop()
        }
        thread.name = "usage-billing-spool-commit"
        thread.start()
    }

    func commit(_ work: Work) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            condition.lock()
            pending.append((work, continuation))
            condition.signal()
            condition.unlock()
        }
    }

    /// Ends the commit thread once everything queued is written.
    func stop() {
        condition.lock()
        stopped = true
        condition.signal()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while pending.isEmpty && !stopped { condition.wait() }
            if pending.isEmpty && stopped {
                condition.unlock()
                return
            }
            let group = pending
            pending.removeAll(keepingCapacity: true)
            transactions += 1
            calls += group.count
            condition.unlock()
            do {
                try write(group)
                // Waking a waiting task costs this thread a futex wake-up (a quarter of its time
                // with 16 one-event writers): one task wakes them all from the cooperative pool,
                // so the next group starts at once.
                let waiters = group.map(\.done)
                if waiters.count == 1 {
                    waiters[0].resume()
                } else {
                    Task.detached { for waiter in waiters { waiter.resume() } }
                }
            } catch {
                for item in group {
                    switch item.work {
                    case .record:
                        item.done.resume(throwing: UsageBillingError(.unexpectedResponse, "the spool could not record: \(error)",
                                                                     fix: "check disk space and permissions; the events were not recorded, so record them again"))
                    case .mark:
                        item.done.resume(throwing: UsageBillingError(.unexpectedResponse, "the spool could not mark delivered rows: \(error)",
                                                                     fix: "check disk space and permissions; the rows stay queued and go again with the same ids, which the provider dedupes"))
                    }
                }
            }
        }
    }

    private func write(_ group: [Item]) throws {
        try pool.writeWithoutTransaction { db in
            // BEGIN and COMMIT as cached statements through the C API: GRDB's transaction
            // compiles both per call and notifies its observers, a tenth of this thread's time
            // with one-event writers (the spool registers no observers).
            let begin = try RawStatement(db, "BEGIN IMMEDIATE")
            try begin.run()
            do {
                try insert(group, db: db)
                try RawStatement(db, "COMMIT").run()
            } catch {
                if !db.isInsideTransaction { throw error }
                try? db.execute(sql: "ROLLBACK")
                throw error
            }
        }
    }

    private func insert(_ group: [Item], db: Database) throws {
        // Bound with the C API: GRDB's StatementArguments cost more than the inserts here.
        let insertEvent = try RawStatement(db, "INSERT OR IGNORE INTO events (id, payload, recorded_at) VALUES (?, ?, ?)")
        let insertLane = try RawStatement(db, """
            INSERT INTO deliveries (event, lane, state, recorded_at, updated_at, reason_code, reason_message)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            """)
        for item in group {
            guard case .record(let rows, let now) = item.work else { continue }
            for (entry, payload) in rows {
                insertEvent.bind(1, entry.event.id)
                insertEvent.bind(2, payload)
                insertEvent.bind(3, now)
                try insertEvent.run()
                guard db.changesCount > 0 else { continue }  // recorded before: leave it as it is
                let key = db.lastInsertedRowID
                for (i, lane) in entry.lanes.enumerated() where !entry.lanes[..<i].contains(lane) {
                    insertLane.bind(1, key)
                    insertLane.bind(2, lane)
                    insertLane.bind(3, Int64(DeliveryState.queued.rawValue))
                    insertLane.bind(4, now)
                    insertLane.bind(5, now)
                    insertLane.bindNull(6)
                    insertLane.bindNull(7)
                    try insertLane.run()
                }
                if let dead = entry.deadLetter, !entry.lanes.contains(dead.lane) {
                    insertLane.bind(1, key)
                    insertLane.bind(2, dead.lane)
                    insertLane.bind(3, Int64(DeliveryState.dead.rawValue))
                    insertLane.bind(4, now)
                    insertLane.bind(5, now)
                    insertLane.bind(6, dead.reason.code)
                    insertLane.bind(7, dead.reason.description)
                    try insertLane.run()
                }
            }
        }
        // Marks after the inserts: a row is always recorded before a worker can read it. The
        // group's marks go in as one (one UPDATE for all its delivered rows, where a Stripe v1
        // lane hands over one row per call), stamped with the latest caller's time.
        var marks: [(seq: Int64, mark: Spool.Mark)] = []
        var latest: Double?
        for item in group {
            guard case .mark(let some, let now) = item.work else { continue }
            marks += some
            latest = max(latest ?? now, now)
        }
        if let latest { try Spool.apply(marks, now: latest, db: db) }
    }
}

/// A cached GRDB statement bound and stepped through the SQLite C API, for the spool's hot
/// insert path.
struct RawStatement {
    private let statement: Statement
    private let handle: OpaquePointer
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    init(_ db: Database, _ sql: String) throws {
        statement = try db.cachedStatement(sql: sql)
        handle = statement.sqliteStatement
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    func bind(_ index: Int32, _ text: String) {
        var text = text
        text.withUTF8 { utf8 in
            _ = utf8.withMemoryRebound(to: CChar.self) { sqlite3_bind_text(handle, index, $0.baseAddress, Int32($0.count), Self.transient) }
        }
    }

    func bind(_ index: Int32, _ data: Data) {
        data.withUnsafeBytes { raw in _ = sqlite3_bind_blob(handle, index, raw.baseAddress, Int32(raw.count), Self.transient) }
    }

    func bind(_ index: Int32, _ value: Double) { sqlite3_bind_double(handle, index, value) }
    func bind(_ index: Int32, _ value: Int64) { sqlite3_bind_int64(handle, index, value) }
    func bindNull(_ index: Int32) { sqlite3_bind_null(handle, index) }

    /// The current result row's columns.
    struct Columns {
        let handle: OpaquePointer
        func int64(_ i: Int32) -> Int64 { sqlite3_column_int64(handle, i) }
        func double(_ i: Int32) -> Double? { sqlite3_column_type(handle, i) == SQLITE_NULL ? nil : sqlite3_column_double(handle, i) }
        func data(_ i: Int32) -> Data {
            let count = Int(sqlite3_column_bytes(handle, i))
            guard count > 0, let base = sqlite3_column_blob(handle, i) else { return Data() }
            return Data(bytes: base, count: count)
        }
    }

    /// Steps through every result row, then resets.
    func rows(_ visit: (Columns) throws -> Void) throws {
        defer { sqlite3_reset(handle) }
        while true {
            let code = sqlite3_step(handle)
            if code == SQLITE_DONE { return }
            guard code == SQLITE_ROW else {
                throw DatabaseError(resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(sqlite3_db_handle(handle))))
            }
            try visit(Columns(handle: handle))
        }
    }

    /// Steps to the end and resets for the next use.
    func run() throws {
        let code = sqlite3_step(handle)
        sqlite3_reset(handle)
        guard code == SQLITE_DONE else {
            throw DatabaseError(resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(sqlite3_db_handle(handle))))
        }
    }
}
