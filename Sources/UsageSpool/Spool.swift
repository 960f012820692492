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
    /// Events voided before they were sent (never sent).
    public var voided = 0
    /// Windows with events not yet emitted as a record (open, or waiting out the grace period).
    public var openWindows = 0
    /// Dead letters by reason code.
    public var dead: [String: Int] = [:]
    /// When the oldest queued event was recorded.
    public var oldestQueued: Date?
    /// Corrections of the lane's events, by where they stand on it.
    public var corrections: [CorrectionLaneState: Int] = [:]

    /// The corrections as `status` says them: "2 applied, 1 pending"; nil when there are none.
    public var correctionSummary: String? {
        guard !corrections.isEmpty else { return nil }
        return CorrectionLaneState.allCases.compactMap { state in corrections[state].map { "\($0) \(state.label)" } }
            .joined(separator: ", ")
    }
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
    let pool: any DatabaseWriter
    private let committer: GroupCommitter

    public var location: String { path }

    /// Opens (or creates) the spool at `path`, migrating its schema. With `readOnly`, opens an
    /// existing spool without writing anything (no migration, no write-ahead files created), so a
    /// read-only file or directory works; its writing methods then throw.
    /// - Throws: `.invalidInput` naming the real cause: a permission problem on the file or its
    ///   directory, a missing directory, or a file that is not a SQLite database or is damaged;
    ///   the file is left untouched.
    public init(path: String, durability: SpoolDurability = .normal, readOnly: Bool = false) throws {
        self.path = path
        if let problem = Self.accessProblem(path: path, writing: !readOnly) { throw problem }
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        configuration.readonly = readOnly
        configuration.prepareDatabase { db in
            if readOnly { return }
            try db.execute(sql: "PRAGMA synchronous = \(durability == .full ? "FULL" : "NORMAL")")
            // A 16 MiB page cache keeps the indexes' hot pages in memory under heavy recording,
            // and folding the WAL every 4,000 pages (not 1,000) copies a hot page once, not 4 times.
            try db.execute(sql: "PRAGMA cache_size = -16384")
            try db.execute(sql: "PRAGMA wal_autocheckpoint = 4000")
        }
        do {
            self.pool =
                readOnly
                ? try Self.openReadOnly(path: path, configuration: configuration)
                : try Self.open(path: path, configuration: configuration)
        } catch let error as UsageBillingError {
            throw error
        } catch let error as DatabaseError {
            if let problem = Self.accessProblem(path: path, writing: !readOnly) { throw problem }
            throw UsageBillingError(
                .invalidInput, "the spool \(path) cannot be opened: \(error.message ?? "\(error.resultCode)")",
                fix:
                    "if it is damaged or not a spool, move it aside (nothing in it was deleted) and recover it with `sqlite3 FILE .recover`"
            )
        }
        self.committer = GroupCommitter(pool: pool)
    }

    /// What keeps this user from opening `path` (for writing: creating it, or its write-ahead
    /// files beside it), in words with the fix; nil when nothing does.
    ///
    /// Also what `serve` checks before it creates or announces anything, with ``workerHolder(path:)``.
    public static func accessProblem(path: String, writing: Bool) -> UsageBillingError? {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        guard manager.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            return UsageBillingError(
                .invalidInput, "the spool's directory \(directory) does not exist",
                fix: "create it (`mkdir -p \(directory)`) or pass --spool with a path in an existing directory",
                field: "spool")
        }
        let exists = manager.fileExists(atPath: path, isDirectory: &isDirectory)
        if exists && isDirectory.boolValue {
            return UsageBillingError(
                .invalidInput, "the spool \(path) is a directory",
                fix: "pass --spool with a file path, e.g. \(path)/usage.spool", field: "spool")
        }
        if exists && access(path, R_OK) != 0 {
            return UsageBillingError(
                .invalidInput, "permission denied reading the spool \(path)",
                fix: "run as the user that owns it, or make it readable (`chmod u+r \(path)`)", field: "spool")
        }
        guard writing else { return nil }
        if !exists && access(directory, W_OK | X_OK) != 0 {
            return UsageBillingError(
                .invalidInput,
                "permission denied creating the spool \(path): the directory \(directory) is not writable by this user",
                fix: "pass --spool with a path in a directory you can write, or make \(directory) writable",
                field: "spool")
        }
        if exists && access(path, W_OK) != 0 {
            return UsageBillingError(
                .invalidInput, "permission denied writing the spool \(path) (it is read-only for this user)",
                fix:
                    "run as the user that owns it, or make it writable (`chmod u+w \(path)`); commands that only read (status, dlq list, reconcile) work on it as it is",
                field: "spool")
        }
        if exists && access(directory, W_OK | X_OK) != 0 {
            return UsageBillingError(
                .invalidInput,
                "the spool's directory \(directory) is read-only for this user, and SQLite writes \(URL(fileURLWithPath: path).lastPathComponent)-wal and -shm beside the spool",
                fix:
                    "make \(directory) writable, or move the spool to a directory you can write; commands that only read (status, dlq list, reconcile) work on it as it is",
                field: "spool")
        }
        return nil
    }

    /// Opens an existing spool for reading only: `mode=ro`, or, when its directory does not let
    /// SQLite create the write-ahead files, as an immutable file (a read-only copy).
    private static func openReadOnly(path: String, configuration: Configuration) throws -> DatabaseQueue {
        guard FileManager.default.fileExists(atPath: path) else {
            throw UsageBillingError(
                .invalidInput, "no spool at \(path)", fix: "pass --spool with the file events were recorded in",
                field: "spool")
        }
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        let encoded = absolute.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? absolute
        // Committed rows may still be in the write-ahead log: SQLite reads it (and a read-only
        // -shm) with mode=ro. Only a spool without a log is opened immutable, which needs no
        // files beside it, so it works in a directory this user cannot write.
        let logSize = (try? FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int) ?? nil
        let hasLog = (logSize ?? 0) > 0
        if hasLog && access(path + "-wal", R_OK) != 0 {
            throw UsageBillingError(
                .invalidInput,
                "permission denied reading \(path)-wal, the spool's write-ahead log (it holds committed rows)",
                fix: "run as the user that owns the spool, or make \(path)-wal and \(path)-shm readable", field: "spool"
            )
        }
        let writableDirectory = access(directory, W_OK | X_OK) == 0
        let mode = hasLog || writableDirectory ? "mode=ro" : "immutable=1"
        let queue: DatabaseQueue
        let migrated: Bool
        do {
            queue = try DatabaseQueue(path: "file:\(encoded)?\(mode)", configuration: configuration)
            migrated = try queue.read { db in try migrator.hasCompletedMigrations(db) }
        } catch  where hasLog && !writableDirectory {
            throw UsageBillingError(
                .invalidInput,
                "the spool's write-ahead log \(path)-wal holds rows not yet folded into the file, and reading them needs a file beside it in \(directory), which this user cannot write",
                fix:
                    "run this as the spool's owner, or run any writing command on the spool once as its owner (it folds the log into the file)",
                field: "spool")
        }
        guard migrated else {
            throw UsageBillingError(
                .invalidInput,
                "the spool \(path) was written by an older version and needs its schema upgraded, which a read-only open cannot do",
                fix:
                    "run a command that writes (e.g. `usage-billing worker --until-empty`) on it once, where it is writable"
            )
        }
        return queue
    }

    /// Who delivers from the spool at `path` now (`pid N`), or nil when no worker does; creates
    /// nothing.
    public static func workerHolder(path: String) -> String? { WorkerLock.holder(spoolPath: path) }

    deinit { committer.stop() }

    /// How many transactions the commit thread has written and how many `record`/`mark` calls
    /// they carried: calls ÷ transactions is how well concurrent callers share a commit.
    public var commitStatistics: (transactions: Int, calls: Int) { committer.statistics }

    /// Opens the pool, checks and migrates it, waiting (up to 5 s, in bounded steps) while another process or a spool
    /// being closed holds the file locked: SQLite does not always call the busy handler while a
    /// closing connection folds its write-ahead log.
    /// How long opening waits out a file another process holds busy: jittered backoff up to
    /// 0.2 s a wait, for at most 10 s.
    static let openRetry = RetryPolicy(
        baseDelay: .milliseconds(20), maxDelay: .milliseconds(200), maxAttempts: 100, maxElapsed: .seconds(10))

    private static func open(path: String, configuration: Configuration) throws -> any DatabaseWriter {
        var attempts = 0
        let started = ContinuousClock.now
        while true {
            do {
                let pool = try DatabasePool(path: path, configuration: configuration)
                let problems = try pool.read { db in try String.fetchAll(db, sql: "PRAGMA quick_check") }
                guard problems == ["ok"] else {
                    throw UsageBillingError(
                        .invalidInput, "the spool \(path) is damaged: \(problems.prefix(3).joined(separator: "; "))",
                        fix:
                            "stop the worker, copy the file aside, and recover it with `sqlite3 \(path) .recover`; nothing was deleted"
                    )
                }
                try migrator.migrate(pool)
                // Marking binds its row lists as JSON arrays (json_each): SQLite 3.38+, or JSON1.
                guard (try? pool.read({ db in try Int.fetchOne(db, sql: "SELECT json_valid('[1]')") })) == 1 else {
                    throw UsageBillingError(
                        .configuration, "this SQLite has no JSON functions (json_each), which the spool needs",
                        fix: "install SQLite 3.38 or later (Debian: libsqlite3-dev) or one built with JSON1")
                }
                return pool
            } catch let error as DatabaseError
                where error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED
            {
                // Another process holds the file for a moment (opening it, migrating it): retried
                // by the retry engine; the wait is a thread's, as opening is synchronous.
                attempts += 1
                guard
                    let wait = openRetry.delay(
                        attemptsMade: attempts, elapsed: ContinuousClock.now - started, retryAfter: nil)
                else {
                    throw UsageBillingError(
                        .transport,
                        "the spool \(path) stayed locked by another process for \(attempts) attempts (\(error.resultCode))",
                        fix:
                            "see which process holds it (`fuser \(path)`); a worker or import opening it finishes in moments, then run this again"
                    )
                }
                Thread.sleep(forTimeInterval: wait.seconds)
            }
        }
    }

    /// Folds the write-ahead log into the database file (`PRAGMA wal_checkpoint(TRUNCATE)`),
    /// e.g. before copying the file.
    public func checkpoint() throws {
        try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
    }

    /// ``RecordEntry``, by the name the SQLite spool gave it first.
    public typealias Entry = RecordEntry

    /// Records entries durably, one row per lane, all in one transaction (shared with concurrent
    /// callers). Already-recorded ids are left as they are and returned.
    @discardableResult
    public func record(_ entries: [Entry], now: Date = Date()) async throws -> [String] {
        guard !entries.isEmpty else { return [] }
        let rows = entries.map { ($0, PayloadCodec.encode($0.event)) }
        return try await committer.commit(.record(rows, now: now.timeIntervalSince1970))
    }

    public func storedEvents(ids: [String]) async throws -> [String: UsageEvent] {
        guard !ids.isEmpty else { return [:] }
        return try await pool.read { db in
            var found: [String: UsageEvent] = [:]
            for chunk in stride(from: 0, to: ids.count, by: 500).map({ ids[$0..<min($0 + 500, ids.count)] }) {
                let marks = Array(repeating: "?", count: chunk.count).joined(separator: ",")
                for row in try Row.fetchAll(
                    db, sql: "SELECT id, payload FROM events WHERE id IN (\(marks))",
                    arguments: StatementArguments(Array(chunk)))
                {
                    found[row[0]] = try PayloadCodec.decode(row[1] as Data)
                }
            }
            return found
        }
    }

    /// Up to `limit` queued rows of `lane` due at `now`, oldest first, with a `seq` above
    /// `after` (rows a worker already has in flight are below it); `windowRecords` picks only raw
    /// events (`false`) or only window records (`true`), nil both.
    public func due(lane: String, limit: Int, now: Date, windowRecords: Bool? = nil, after: Int64 = 0) throws
        -> [QueuedDelivery]
    {
        // One SELECT, which SQLite runs in a read transaction of its own: GRDB's `read` also
        // compiled and ran BEGIN DEFERRED and COMMIT around it, half of this call's time for a
        // Stripe v1 lane's 64 rows (perf).
        try pool.unsafeRead { db in
            let filter = windowRecords.map { " AND d.window_record = \($0 ? 1 : 0)" } ?? ""
            // Read through the C API: this runs once per batch on the delivery path, and GRDB's
            // rows (a dictionary-like Row per result) cost more than the query.
            let query = try RawStatement(
                db,
                """
                SELECT d.seq, d.attempts, d.first_attempt_at, d.window_record, e.payload FROM deliveries d JOIN events e ON e.key = d.event
                WHERE d.lane = ? AND d.state = \(DeliveryState.queued.sql) AND d.seq > ? AND d.next_attempt_at <= ?\(filter) ORDER BY d.seq LIMIT ?
                """)
            query.bind(1, lane)
            query.bind(2, after)
            query.bind(3, now.timeIntervalSince1970)
            query.bind(4, Int64(limit))
            var out: [QueuedDelivery] = []
            out.reserveCapacity(min(limit, 1_000))
            try query.rows { row in
                out.append(
                    QueuedDelivery(
                        seq: row.int64(0), event: try PayloadCodec.decode(row.data(4)), attempts: Int(row.int64(1)),
                        firstAttemptAt: row.double(2).map(Date.init(timeIntervalSince1970:)),
                        isWindowRecord: row.int64(3) == 1))
            }
            return out
        }
    }

    /// Every event recorded for `lane` (not window records), with its state there: the ledger
    /// a reconciliation compares a provider with. `visit` is called once per row, in seq order.
    public func ledger(lane: String, _ visit: (UsageEvent, DeliveryState) throws -> Void) throws {
        try pool.read { db in
            let rows = try Row.fetchCursor(
                db,
                sql: """
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
            try db.execute(
                sql: "UPDATE deliveries SET first_attempt_at = COALESCE(first_attempt_at, ?) WHERE seq IN (\(list))",
                arguments: [now.timeIntervalSince1970])
        }
    }

    /// When `lane`'s next queued row is due, or nil when none is queued.
    public func nextDue(lane: String) throws -> Date? {
        try pool.read { db in
            try Double.fetchOne(
                db,
                sql:
                    "SELECT MIN(next_attempt_at) FROM deliveries WHERE lane = ? AND state = \(DeliveryState.queued.sql)",
                arguments: [lane]
            )
            .map(Date.init(timeIntervalSince1970:))
        }
    }

    public func oldestQueued(lane: String) throws -> Date? {
        try pool.read { db in
            try Double.fetchOne(
                db,
                sql:
                    "SELECT recorded_at FROM deliveries WHERE lane = ? AND state = \(DeliveryState.queued.sql) ORDER BY seq LIMIT 1",
                arguments: [lane]
            )
            .map(Date.init(timeIntervalSince1970:))
        }
    }

    /// ``DeliveryMark``, by the name the SQLite spool gave it first.
    public typealias Mark = DeliveryMark

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
    public func acquireDeliveryLock() async throws -> (any DeliveryLock)? {
        let lock = try await WorkerLock.acquire(spoolPath: path)
        do {
            try await recoverUnconfirmedVoids()
        } catch {
            lock.release()
            throw error
        }
        return lock
    }
    /// Under the file lock every lane is the worker's: a lease that never lapses.
    public func acquireLease(lane: String, owner: String, ttl: Duration) async throws -> LaneLease? {
        LaneLease(lane: lane, owner: owner, token: 0, expiresAt: .distantFuture)
    }
    public func renewLease(_ lease: LaneLease, ttl: Duration) async throws -> Bool { true }
    public func releaseLease(_ lease: LaneLease) async throws {}
    public func leases() async throws -> [LaneLease] { [] }
    public func heartbeat(owner: String, ttl: Duration) async throws -> Int { 1 }
    public func signOff(owner: String) async throws {}

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
        let final = try RawStatement(
            db,
            """
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
                try db.cachedStatement(
                    sql: """
                        UPDATE deliveries SET state = \(DeliveryState.dead.sql), attempts = attempts + 1, first_attempt_at = COALESCE(first_attempt_at, ?),
                        reason_code = ?, reason_message = ?, updated_at = ? WHERE seq = ?
                        """
                ).execute(arguments: [t, reason.code, reason.description, t, seq])
            case .retry(let at, let reason):
                try db.cachedStatement(
                    sql: """
                        UPDATE deliveries SET attempts = attempts + 1, first_attempt_at = COALESCE(first_attempt_at, ?),
                        next_attempt_at = ?, reason_code = 'retrying', reason_message = ?, updated_at = ? WHERE seq = ?
                        """
                ).execute(arguments: [t, at.timeIntervalSince1970, reason, t, seq])
            case .delivered, .duplicate:
                break
            }
        }
    }

    /// Counts per lane.
    public func backlogHistory(at instants: [Date]) throws -> [String: [Int]] {
        guard !instants.isEmpty else { return [:] }
        return try pool.read { db in
            let rows = try Row.fetchAll(db, sql: BacklogHistorySQL.query(table: "deliveries", instants: instants)).map {
                row -> (String, Int, Int) in (row[0], row[1], row[2])
            }
            return BacklogHistorySQL.series(rows, points: instants.count)
        }
    }

    public func status() throws -> [LaneStatus] {
        try pool.read { db in
            var byLane: [String: LaneStatus] = [:]
            for row in try Row.fetchAll(
                db,
                sql: """
                    SELECT lane, state, COALESCE(reason_code, ''), COUNT(*), MIN(recorded_at), SUM(attempts > 0) FROM deliveries GROUP BY lane, state, reason_code
                    """)
            {
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
                case .voided?, .voidedUnconfirmed?: s.voided += count
                case nil: break
                }
                byLane[lane] = s
            }
            for row in try Row.fetchAll(
                db, sql: "SELECT lane, state, COUNT(*) FROM correction_lanes GROUP BY lane, state")
            {
                let lane: String = row[0]
                guard let state = CorrectionLaneState(rawValue: row[1]) else { continue }
                var s = byLane[lane] ?? LaneStatus(lane: lane)
                s.corrections[state] = row[2]
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
        try pool.read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM deliveries WHERE state = \(DeliveryState.queued.sql)") ?? 0
        }
    }

    /// Queued rows of one lane.
    public func queuedCount(lane: String) throws -> Int {
        try pool.read { db in
            try Int.fetchOne(
                db, sql: "SELECT COUNT(*) FROM deliveries WHERE lane = ? AND state = \(DeliveryState.queued.sql)",
                arguments: [lane])
                ?? 0
        }
    }

}

extension DeliveryMark {
    var isDelivered: Bool { if case .delivered = self { return true } else { return false } }
}
