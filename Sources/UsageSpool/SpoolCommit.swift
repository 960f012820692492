import Foundation
import GRDB
import GRDBSQLite
import UsageBilling

/// Merges concurrent `record` and `mark` calls into one transaction: callers queue their work,
/// and a dedicated thread commits everything queued so far in one transaction (one fsync in
/// `full` mode), then wakes those callers. Writing synchronously on its own thread keeps commits
/// off Swift's cooperative pool and avoids a hop per call.
final class GroupCommitter: @unchecked Sendable {
    /// One caller's share of a transaction.
    enum Work: Sendable {
        /// New events with their payloads.
        case record([(RecordEntry, Data)], now: Double)
        /// Outcomes for rows.
        case mark([(seq: Int64, mark: DeliveryMark)], now: Double)
    }
    private typealias Item = (work: Work, done: CheckedContinuation<[String], any Error>)
    private let pool: any DatabaseWriter
    private let condition = NSCondition()
    private var pending: [Item] = []
    private var stopped = false
    private var transactions = 0, calls = 0  // under `condition`

    var statistics: (transactions: Int, calls: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (transactions, calls)
    }

    init(pool: any DatabaseWriter) {
        self.pool = pool
        let thread = Thread { [self] in
            Thread.current.name = "ub-spool-commit"  // named from inside, so top -H and perf show it (15 bytes at most)
            self.loop()
        }
        thread.name = "usage-billing-spool-commit"
        thread.start()
    }

    /// Commits `work` with whatever else is queued; returns the ids it recorded before (records).
    @discardableResult
    func commit(_ work: Work) async throws -> [String] {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[String], any Error>) in
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
                let known = try write(group)
                // Waking a waiting task costs this thread a futex wake-up (a quarter of its time
                // with 16 one-event writers): one task wakes them all from the cooperative pool,
                // so the next group starts at once.
                let waiters = group.map(\.done)
                if waiters.count == 1 {
                    waiters[0].resume(returning: known[0])
                } else {
                    Task.detached { for (waiter, ids) in zip(waiters, known) { waiter.resume(returning: ids) } }
                }
            } catch {
                for item in group {
                    switch item.work {
                    case .record:
                        item.done.resume(
                            throwing: UsageBillingError(
                                .unexpectedResponse, "the spool could not record: \(error)",
                                fix:
                                    "check disk space and permissions; the events were not recorded, so record them again"
                            ))
                    case .mark:
                        item.done.resume(
                            throwing: UsageBillingError(
                                .unexpectedResponse, "the spool could not mark delivered rows: \(error)",
                                fix:
                                    "check disk space and permissions; the rows stay queued and go again with the same ids, which the provider dedupes"
                            ))
                    }
                }
            }
        }
    }

    /// Writes the group in one transaction; per item, the ids it recorded before.
    private func write(_ group: [Item]) throws -> [[String]] {
        try pool.writeWithoutTransaction { db in
            // BEGIN and COMMIT as cached statements through the C API: GRDB's transaction
            // compiles both per call and notifies its observers, a tenth of this thread's time
            // with one-event writers (the spool registers no observers).
            let begin = try RawStatement(db, "BEGIN IMMEDIATE")
            try begin.run()
            do {
                let known = try insert(group, db: db)
                try RawStatement(db, "COMMIT").run()
                return known
            } catch {
                if !db.isInsideTransaction { throw error }
                try? db.execute(sql: "ROLLBACK")
                throw error
            }
        }
    }

    private func insert(_ group: [Item], db: Database) throws -> [[String]] {
        // Bound with the C API: GRDB's StatementArguments cost more than the inserts here.
        let insertEvent = try RawStatement(
            db, "INSERT OR IGNORE INTO events (id, payload, recorded_at) VALUES (?, ?, ?)")
        let insertLane = try RawStatement(
            db,
            """
            INSERT INTO deliveries (event, lane, state, recorded_at, updated_at, reason_code, reason_message)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            """)
        var known = [[String]](repeating: [], count: group.count)
        for (index, item) in group.enumerated() {
            guard case .record(let rows, let now) = item.work else { continue }
            for (entry, payload) in rows {
                insertEvent.bind(1, entry.event.id)
                insertEvent.bind(2, payload)
                insertEvent.bind(3, now)
                try insertEvent.run()
                guard db.changesCount > 0 else {  // recorded before: leave it as it is
                    known[index].append(entry.event.id)
                    continue
                }
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
        var marks: [(seq: Int64, mark: DeliveryMark)] = []
        var latest: Double?
        for item in group {
            guard case .mark(let some, let now) = item.work else { continue }
            marks += some
            latest = max(latest ?? now, now)
        }
        if let latest { try Spool.apply(marks, now: latest, db: db) }
        return known
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
            _ = utf8.withMemoryRebound(to: CChar.self) {
                sqlite3_bind_text(handle, index, $0.baseAddress, Int32($0.count), Self.transient)
            }
        }
    }

    func bind(_ index: Int32, _ data: Data) {
        data.withUnsafeBytes { raw in
            _ = sqlite3_bind_blob(handle, index, raw.baseAddress, Int32(raw.count), Self.transient)
        }
    }

    func bind(_ index: Int32, _ value: Double) { sqlite3_bind_double(handle, index, value) }
    func bind(_ index: Int32, _ value: Int64) { sqlite3_bind_int64(handle, index, value) }
    func bindNull(_ index: Int32) { sqlite3_bind_null(handle, index) }

    /// The current result row's columns.
    struct Columns {
        let handle: OpaquePointer
        func int64(_ i: Int32) -> Int64 { sqlite3_column_int64(handle, i) }
        func double(_ i: Int32) -> Double? {
            sqlite3_column_type(handle, i) == SQLITE_NULL ? nil : sqlite3_column_double(handle, i)
        }
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
                throw DatabaseError(
                    resultCode: ResultCode(rawValue: code),
                    message: String(cString: sqlite3_errmsg(sqlite3_db_handle(handle))))
            }
            try visit(Columns(handle: handle))
        }
    }

    /// Steps to the end and resets for the next use.
    func run() throws {
        let code = sqlite3_step(handle)
        sqlite3_reset(handle)
        guard code == SQLITE_DONE else {
            throw DatabaseError(
                resultCode: ResultCode(rawValue: code),
                message: String(cString: sqlite3_errmsg(sqlite3_db_handle(handle))))
        }
    }
}
