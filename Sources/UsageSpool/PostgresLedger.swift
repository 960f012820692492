import Foundation
import Logging
import NIOCore
import NIOSSL
import PostgresNIO
import UsageBilling

/// The ledger of a fleet: one PostgreSQL database that any number of processes record into and
/// deliver from. Event ids are unique across the fleet (an id recorded by two processes is one
/// event); each lane is delivered by one worker at a time under a lease with a fencing token
/// (`ub_leases`), so a lane's per-customer concurrency and rate limit hold fleet-wide and a
/// worker that lost its lease writes no mark; aggregation windows live in the shared tables and
/// every write to a lane's windows holds a transaction lock on the lane, so the fleet bills one
/// record per (lane, customer, meter, window) with everyone's events in it.
///
/// Open it with ``open(_:environment:)`` from a URL,
/// `postgres://user@host:5432/db?sslmode=require`: the password comes from the URL or from
/// `PGPASSWORD` and is never printed; `sslmode` is `disable`, `prefer` (default), `require`
/// (encrypted, not verified, as libpq) or `verify-full` (encrypted and verified against the
/// system's CAs). The schema is created and migrated on open, under an advisory lock, so
/// several processes may start at once.
public final class PostgresLedger: UsageLedger {
    public let location: String
    let client: PostgresClient
    fileprivate let runner: Task<Void, Never>
    let logger = Logger(label: "usage-billing.ledger")
    /// Concurrent `record` calls share one statement and one commit.
    private let recordGroup = Locked<RecordGroup?>(nil)

    /// Whether `location` is a Postgres URL rather than a file.
    public static func isURL(_ location: String) -> Bool {
        location.hasPrefix("postgres://") || location.hasPrefix("postgresql://")
    }

    /// Why the pool's last connection attempt failed, from its background log (the pool retries
    /// on its own and tells callers nothing until a connection exists).
    let lastConnectError = ConnectErrors()

    private init(location: String, configuration: PostgresClient.Configuration) {
        self.location = location
        let errors = lastConnectError
        let client = PostgresClient(
            configuration: configuration,
            backgroundLogger: Logger(label: "usage-billing.ledger.pool") { _ in ConnectErrorsHandler(errors: errors) })
        self.client = client
        self.runner = Task { await client.run() }
    }

    deinit { runner.cancel() }

    /// Connects to the database `url` names and creates or migrates its schema.
    /// - Throws: `.invalidInput` for a URL it cannot read (naming the part and the fix);
    ///   ``LedgerUnavailableError`` when the server cannot be reached or refuses the login.
    public static func open(_ url: String, environment: [String: String] = ProcessInfo.processInfo.environment)
        async throws -> PostgresLedger
    {
        let (configuration, shown) = try configuration(url, environment: environment)
        let ledger = PostgresLedger(location: shown, configuration: configuration)
        // The pool waits for a connection as long as it takes; opening is where a wrong host,
        // port, password or TLS setting must fail, and say why: after 3 s of failed attempts
        // (15 s without an answer at all; once the server answered, a slow migration or one waiting
        // for another process's is waited for). The migration runs in a task of its own that is not
        // awaited after a timeout: a connection request in the pool does not always end when
        // cancelled, and a task group would wait for it for ever. The client is shut down instead.
        let finished = StopFlag(), answered = StopFlag()
        let migration = Task {
            defer { finished.set() }
            try await ledger.migrate(answered: answered)
        }
        let started = ContinuousClock.now
        while !finished.isSet {
            try await Task.sleep(for: .milliseconds(50))
            let failing = ledger.lastConnectError.failingSince.map { ContinuousClock.now - $0 > .seconds(3) } ?? false
            if finished.isSet { break }
            if failing || (!answered.isSet && ContinuousClock.now - started > .seconds(15)) {
                migration.cancel()
                ledger.runner.cancel()
                let reason = ledger.lastConnectError.message ?? "no answer within 15 s"
                if reason.contains("sqlState: 28") || reason.contains("28000") || reason.contains("28P01") {
                    throw UsageBillingError(
                        .configuration, "the ledger \(shown) refused the login: \(reason)",
                        fix:
                            "check the user in the URL, the password in PGPASSWORD, and sslmode (the server may take only TLS: sslmode=require)"
                    )
                }
                throw LedgerUnavailableError(location: shown, reason: reason)
            }
        }
        try await migration.value
        return ledger
    }

    /// The client settings for `url`, and the URL as it may be shown (no password).
    static func configuration(_ url: String, environment: [String: String]) throws -> (
        PostgresClient.Configuration, String
    ) {
        func bad(_ what: String, _ fix: String) -> UsageBillingError {
            UsageBillingError(
                .invalidInput, "the ledger URL \(Redaction.maskURLPassword(url)) \(what)", fix: fix, field: "spool")
        }
        guard let parts = URLComponents(string: url), let scheme = parts.scheme,
            ["postgres", "postgresql"].contains(scheme)
        else {
            throw bad(
                "is not a postgres:// URL",
                "write postgres://USER@HOST:5432/DATABASE?sslmode=require (password in PGPASSWORD)")
        }
        guard let host = parts.host, !host.isEmpty else {
            throw bad("has no host", "write postgres://USER@HOST:5432/DATABASE")
        }
        guard let user = parts.user, !user.isEmpty else {
            throw bad("has no user", "write postgres://USER@HOST:5432/DATABASE")
        }
        let database = parts.path.hasPrefix("/") ? String(parts.path.dropFirst()) : parts.path
        let password = parts.password ?? environment["PGPASSWORD"]
        let mode = parts.queryItems?.first { $0.name == "sslmode" }?.value ?? "prefer"
        let tls: PostgresClient.Configuration.TLS
        switch mode {
        case "disable": tls = .disable
        case "prefer", "allow": tls = .prefer(.makeClientConfiguration())
        case "require":
            var unverified = TLSConfiguration.makeClientConfiguration()
            unverified.certificateVerification = .none  // libpq's `require`: encrypted, server not verified
            tls = .require(unverified)
        case "verify-ca", "verify-full": tls = .require(.makeClientConfiguration())
        default: throw bad("has sslmode=\(mode)", "use sslmode=disable, prefer, require or verify-full")
        }
        for item in parts.queryItems ?? [] where item.name != "sslmode" {
            throw bad("has the parameter '\(item.name)', which is not supported", "keep only sslmode")
        }
        var configuration = PostgresClient.Configuration(
            host: host, port: parts.port ?? 5432, username: user, password: password,
            database: database.isEmpty ? user : database, tls: tls)
        configuration.options.connectTimeout = .seconds(5)
        var shown = parts
        shown.password = nil
        return (configuration, shown.string ?? "postgres://\(user)@\(host)")
    }

    // MARK: Schema

    /// Each version's statements, applied once, in order, recorded in `ub_schema`.
    static let migrations: [(version: Int, statements: [String])] = [
        (
            1,
            [
                "CREATE TABLE ub_events (key bigserial PRIMARY KEY, id text NOT NULL UNIQUE, payload bytea NOT NULL, recorded_at double precision NOT NULL)",
                """
                CREATE TABLE ub_deliveries (seq bigserial PRIMARY KEY, event bigint NOT NULL REFERENCES ub_events (key), lane text NOT NULL,
                    state smallint NOT NULL, attempts integer NOT NULL DEFAULT 0, next_attempt_at double precision NOT NULL DEFAULT 0,
                    first_attempt_at double precision, reason_code text, reason_message text, recorded_at double precision NOT NULL,
                    updated_at double precision NOT NULL, window_record boolean NOT NULL DEFAULT false)
                """,
                // The worker reads a lane's queued rows in seq order: this index holds only those.
                // Marks rewrite rows (never in place: `state` is in this index's predicate), and each
                // rewrite adds an entry to every index, so the table has no other: status, dead
                // letters, the reconcile ledger and Stripe's later refusals scan it, and they are rare.
                "CREATE INDEX ub_deliveries_queued ON ub_deliveries (lane, seq) WHERE state = 0",
                """
                CREATE TABLE ub_windows (lane text NOT NULL, customer text NOT NULL, meter text NOT NULL, start bigint NOT NULL,
                    window_end bigint NOT NULL, dirty boolean NOT NULL, state bytea NOT NULL, PRIMARY KEY (lane, customer, meter, start))
                """,
                "CREATE INDEX ub_windows_dirty ON ub_windows (lane, window_end) WHERE dirty",
                "CREATE TABLE ub_leases (lane text PRIMARY KEY, owner text NOT NULL, token bigint NOT NULL, expires_at timestamptz NOT NULL)",
                "CREATE SEQUENCE ub_lease_tokens",
            ]
        ),
        // Workers alive (a heartbeat each), for the fleet's share of lanes.
        (2, ["CREATE TABLE ub_workers (owner text PRIMARY KEY, expires_at timestamptz NOT NULL)"]),
        // Corrections (void) and where each stands per lane.
        (3, correctionsSchema),
        (4, unconfirmedVoidsSchema),
        (5, correctionDeliverySchema),
    ]

    /// Creates or migrates the schema in one transaction under an advisory lock, so processes
    /// that start together migrate it once; sets `answered` once the server has answered.
    func migrate(answered: StopFlag? = nil) async throws {
        try await transaction { c in
            try await c.query("SELECT 1", logger: self.logger)
            answered?.set()
            try await c.query("SELECT pg_advisory_xact_lock(7436281901)", logger: self.logger)
            try await c.query(
                "CREATE TABLE IF NOT EXISTS ub_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
                logger: self.logger)
            var current = 0
            for try await version in try await c.query(
                "SELECT COALESCE(MAX(version), 0) FROM ub_schema", logger: self.logger
            ).decode(Int.self) {
                current = version
            }
            guard current <= Self.migrations.last?.version ?? 0 else {
                throw UsageBillingError(
                    .configuration,
                    "the ledger \(self.location) has schema version \(current), newer than this release knows",
                    fix: "run the usage-billing release that wrote it, or a later one")
            }
            for (version, statements) in Self.migrations where version > current {
                for statement in statements {
                    try await c.query(PostgresQuery(unsafeSQL: statement), logger: self.logger)
                }
                try await c.query("INSERT INTO ub_schema (version) VALUES (\(version))", logger: self.logger)
            }
        }
    }

    /// The schema version the database is at.
    public func schemaVersion() async throws -> Int {
        try await first("SELECT COALESCE(MAX(version), 0) FROM ub_schema", as: Int.self) ?? 0
    }

    // MARK: Recording

    @discardableResult
    public func record(_ entries: [RecordEntry], now: Date) async throws -> [String] {
        guard !entries.isEmpty else { return [] }
        let group = recordGroup.with { group in
            if let group { return group }
            let made = RecordGroup { [unowned self] entries, now in try await self.insert(entries, now: now) }
            group = made
            return made
        }
        return try await group.record(entries, now: now)
    }

    /// One statement: the events of `entries` new to the ledger and their rows; returns the ids
    /// it inserted (an id any process recorded before is skipped, concurrent recorders of one id
    /// included; an id given twice is inserted by its first entry).
    private func insert(_ entries: [RecordEntry], now: Date) async throws -> Set<String> {
        var seen = Set<String>()
        var ids: [String] = [], payloads: [ByteBuffer] = []
        var rowIDs: [String] = [], lanes: [String] = [], states: [Int16] = [], codes: [String] = [],
            messages: [String] = []
        for entry in entries where seen.insert(entry.event.id).inserted {
            ids.append(entry.event.id)
            payloads.append(ByteBuffer(data: PayloadCodec.encode(entry.event)))
            for (i, lane) in entry.lanes.enumerated() where !entry.lanes[..<i].contains(lane) {
                rowIDs.append(entry.event.id); lanes.append(lane); states.append(Int16(DeliveryState.queued.rawValue));
                codes.append(""); messages.append("")
            }
            if let dead = entry.deadLetter, !entry.lanes.contains(dead.lane) {
                rowIDs.append(entry.event.id); lanes.append(dead.lane);
                states.append(Int16(DeliveryState.dead.rawValue))
                codes.append(dead.reason.code); messages.append(dead.reason.description)
            }
        }
        let statement = RecordStatement(
            ids: ids, payloads: payloads, at: now.timeIntervalSince1970, rowIDs: rowIDs, lanes: lanes, states: states,
            codes: codes, messages: messages)
        return try await run {
            var newIDs = Set<String>()
            for try await id in try await self.client.execute(statement, logger: self.logger) { newIDs.insert(id) }
            return newIDs
        }
    }

    public func storedEvents(ids: [String]) async throws -> [String: UsageEvent] {
        guard !ids.isEmpty else { return [:] }
        return try await run {
            var found: [String: UsageEvent] = [:]
            for try await (id, payload) in try await self.client.query(
                """
                SELECT id, payload FROM ub_events WHERE id = ANY(\(ids)::text[])
                """, logger: self.logger
            ).decode((String, ByteBuffer).self) {
                found[id] = try PayloadCodec.decode(Data(buffer: payload))
            }
            return found
        }
    }

    // MARK: Delivering

    public func due(lane: String, limit: Int, now: Date, windowRecords: Bool?, after: Int64) async throws
        -> [QueuedDelivery]
    {
        let statement = DueStatement(
            lane: lane, after: after, now: now.timeIntervalSince1970, windowRecords: windowRecords, limit: limit)
        return try await run {
            var rows: [QueuedDelivery] = []
            for try await (seq, payload, attempts, first, record) in try await self.client.execute(
                statement, logger: self.logger)
            {
                rows.append(
                    QueuedDelivery(
                        seq: seq, event: try PayloadCodec.decode(Data(buffer: payload)), attempts: attempts,
                        firstAttemptAt: first.map(Date.init(timeIntervalSince1970:)), isWindowRecord: record))
            }
            return rows
        }
    }

    public func mark(_ marks: [(seq: Int64, mark: DeliveryMark)], now: Date, lease: LaneLease?) async throws {
        guard !marks.isEmpty else { return }
        var statement = MarkStatement(
            lane: lease?.lane ?? "", token: lease?.token ?? 0, fenced: lease != nil, now: now.timeIntervalSince1970)
        for (seq, mark) in marks {
            switch mark {
            case .delivered: statement.delivered.append(seq)
            case .duplicate: statement.duplicates.append(seq)
            case .dead(let reason):
                statement.deadSeqs.append(seq)
                statement.deadCodes.append(reason.code)
                statement.deadMessages.append(reason.description)
            case .retry(let at, let reason):
                statement.retrySeqs.append(seq)
                statement.retryAt.append(at.timeIntervalSince1970)
                statement.retryMessages.append(reason)
            }
        }
        let applied = try await run {
            var ok: Bool?
            for try await value in try await self.client.execute(statement, logger: self.logger) { ok = value }
            return ok
        }
        if applied != true, let lease { throw LeaseLostError(lane: lease.lane, token: lease.token) }
    }

    public func markSending(_ seqs: [Int64], now: Date) async throws {
        guard !seqs.isEmpty else { return }
        _ = try await run {
            try await self.client.query(
                """
                UPDATE ub_deliveries SET first_attempt_at = COALESCE(first_attempt_at, \(now.timeIntervalSince1970)) WHERE seq = ANY(\(seqs)::int8[])
                """, logger: self.logger)
        }
    }

    // MARK: Reading

    public func queuedCount(lane: String?) async throws -> Int {
        if let lane {
            return try await first(
                "SELECT COUNT(*) FROM ub_deliveries WHERE lane = \(lane) AND state = \(unescaped: DeliveryState.queued.sql)",
                as: Int.self) ?? 0
        }
        return try await first(
            "SELECT COUNT(*) FROM ub_deliveries WHERE state = \(unescaped: DeliveryState.queued.sql)", as: Int.self)
            ?? 0
    }

    public func hasQueued(lane: String) async throws -> Bool {
        try await first(
            "SELECT EXISTS (SELECT 1 FROM ub_deliveries WHERE lane = \(lane) AND state = \(unescaped: DeliveryState.queued.sql))",
            as: Bool.self)
            ?? false
    }

    public func backlogHistory(at instants: [Date]) async throws -> [String: [Int]] {
        guard !instants.isEmpty else { return [:] }
        return try await run {
            var rows: [(String, Int, Int)] = []
            for try await (lane, index, count) in try await self.client.query(
                PostgresQuery(unsafeSQL: BacklogHistorySQL.query(table: "ub_deliveries", instants: instants)),
                logger: self.logger
            ).decode((String, Int, Int).self) {
                rows.append((lane, index, count))
            }
            return BacklogHistorySQL.series(rows, points: instants.count)
        }
    }

    public func status() async throws -> [LaneStatus] {
        try await run {
            var byLane: [String: LaneStatus] = [:]
            for try await (lane, state, code, count, oldest, tried) in try await self.client.query(
                """
                SELECT lane, state, COALESCE(reason_code, ''), COUNT(*), MIN(recorded_at), SUM(CASE WHEN attempts > 0 THEN 1 ELSE 0 END)
                FROM ub_deliveries GROUP BY lane, state, reason_code
                """, logger: self.logger
            ).decode((String, Int16, String, Int, Double, Int).self) {
                var s = byLane[lane] ?? LaneStatus(lane: lane)
                switch DeliveryState(rawValue: Int(state)) {
                case .queued?:
                    s.queued += count
                    s.retrying += tried
                    let at = Date(timeIntervalSince1970: oldest)
                    s.oldestQueued = min(s.oldestQueued ?? at, at)
                case .delivered?: s.delivered += count
                case .duplicate?: s.duplicates += count
                case .dead?: s.dead[code, default: 0] += count
                case .aggregated?: s.aggregated += count
                case .voided?, .voidedUnconfirmed?: s.voided += count
                case nil: break
                }
                byLane[lane] = s
            }
            for try await (lane, state, count) in try await self.client.query(
                "SELECT lane, state, COUNT(*) FROM ub_correction_lanes GROUP BY lane, state", logger: self.logger
            )
            .decode((String, Int16, Int).self) {
                guard let state = CorrectionLaneState(rawValue: Int(state)) else { continue }
                var s = byLane[lane] ?? LaneStatus(lane: lane)
                s.corrections[state] = count
                byLane[lane] = s
            }
            for try await (lane, open) in try await self.client.query(
                "SELECT lane, COUNT(*) FROM ub_windows WHERE dirty GROUP BY lane", logger: self.logger
            )
            .decode((String, Int).self) {
                var s = byLane[lane] ?? LaneStatus(lane: lane)
                s.openWindows = open
                byLane[lane] = s
            }
            return byLane.values.sorted { $0.lane < $1.lane }
        }
    }

    public func laneNames() async throws -> [String] {
        try await all(
            "SELECT DISTINCT lane FROM ub_deliveries UNION SELECT DISTINCT lane FROM ub_windows ORDER BY 1",
            as: String.self)
    }

    public func ledger(lane: String, _ visit: (UsageEvent, DeliveryState) throws -> Void) async throws {
        try await run {
            for try await (state, payload) in try await self.client.query(
                """
                SELECT d.state, e.payload FROM ub_deliveries d JOIN ub_events e ON e.key = d.event
                WHERE d.lane = \(lane) AND NOT d.window_record ORDER BY d.seq
                """, logger: self.logger
            ).decode((Int16, ByteBuffer).self) {
                guard let state = DeliveryState(rawValue: Int(state)) else { continue }
                try visit(try PayloadCodec.decode(Data(buffer: payload)), state)
            }
        }
    }

    public func deadLetters(reason: String?, limit: Int) async throws -> [DeadLetter] {
        try await run {
            var out: [DeadLetter] = []
            for try await (id, lane, code, message, attempts) in try await self.client.query(
                """
                SELECT e.id, d.lane, COALESCE(d.reason_code, ''), COALESCE(d.reason_message, ''), d.attempts FROM ub_deliveries d JOIN ub_events e ON e.key = d.event
                WHERE d.state = \(unescaped: DeliveryState.dead.sql) AND (\(reason)::text IS NULL OR d.reason_code = \(reason)) ORDER BY d.seq LIMIT \(limit)
                """, logger: self.logger
            ).decode((String, String, String, String, Int).self) {
                out.append(DeadLetter(eventID: id, lane: lane, code: code, message: message, attempts: attempts))
            }
            return out
        }
    }

    // MARK: Dead letters

    public func rejectDelivered(
        _ rejections: [(identifier: String, reason: RejectionReason)], provider: String, now: Date
    ) async throws -> Int {
        guard !rejections.isEmpty else { return 0 }
        return try await count(
            """
            UPDATE ub_deliveries d SET state = \(unescaped: DeliveryState.dead.sql), reason_code = u.code, reason_message = u.message, updated_at = \(now.timeIntervalSince1970)
            FROM unnest(\(rejections.map(\.identifier))::text[], \(rejections.map(\.reason.code))::text[], \(rejections.map(\.reason.description))::text[])
                 AS u(id, code, message), ub_events e
            WHERE e.id = u.id AND d.event = e.key AND d.state IN (\(unescaped: DeliveryState.delivered.sql), \(unescaped: DeliveryState.duplicate.sql)) AND NOT d.window_record
              AND (starts_with(d.lane, \(provider + "/")) OR starts_with(d.lane, \(provider + "#")))
            RETURNING d.seq
            """)
    }

    public func retryDeadLetters(reason: String?, now: Date) async throws -> Int {
        let t = now.timeIntervalSince1970
        return try await count(
            """
            UPDATE ub_deliveries SET state = \(unescaped: DeliveryState.queued.sql), attempts = 0, first_attempt_at = NULL, next_attempt_at = \(t), updated_at = \(t)
            WHERE state = \(unescaped: DeliveryState.dead.sql) AND (\(reason)::text IS NULL OR reason_code = \(reason)) RETURNING seq
            """)
    }

    public func purgeDeadLetters(reason: String?) async throws -> Int {
        try await count(
            "DELETE FROM ub_deliveries WHERE state = \(unescaped: DeliveryState.dead.sql) AND (\(reason)::text IS NULL OR reason_code = \(reason)) RETURNING seq"
        )
    }

    // MARK: Plumbing

    /// Runs `body`, turning the driver's errors into this product's: a lost or refused
    /// connection is ``LedgerUnavailableError`` (retry with the same ids), anything else a
    /// `UsageBillingError` with the server's message.
    func run<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch {
            throw Self.translate(error, location: location)
        }
    }

    func transaction<T>(_ body: (PostgresConnection) async throws -> sending T) async throws -> sending T {
        do {
            return try await client.withTransaction(logger: logger, body)
        } catch let error as PostgresTransactionError {
            throw Self.translate(
                error.closureError ?? error.beginError ?? error.commitError ?? error, location: location)
        } catch {
            throw Self.translate(error, location: location)
        }
    }

    static func translate(_ error: any Error, location: String) -> any Error {
        if error is LeaseLostError || error is UsageBillingError || error is LedgerUnavailableError
            || error is CancellationError
        {
            return error
        }
        if let error = error as? PostgresTransactionError {
            return translate(
                error.closureError ?? error.beginError ?? error.commitError ?? error.rollbackError
                    ?? UsageBillingError(.unexpectedResponse, "transaction failed"), location: location)
        }
        guard let psql = error as? PSQLError else {
            return LedgerUnavailableError(location: location, reason: "\(error)")
        }
        let state = psql.serverInfo?[.sqlState] ?? ""
        let message = psql.serverInfo?[.message]
        switch psql.code {
        case .server where state.hasPrefix("08") || state.hasPrefix("57") || state == "53300":
            return LedgerUnavailableError(location: location, reason: message ?? state)
        case .server where state.hasPrefix("28"):
            return UsageBillingError(
                .configuration, "the ledger \(location) refused the login: \(message ?? state)",
                fix: "check the user in the URL and the password in PGPASSWORD")
        case .server:
            return UsageBillingError(
                .unexpectedResponse,
                "the ledger \(location) refused a statement: \(message ?? state) (SQLSTATE \(state))",
                fix: "check that this release's schema is the database's (`ub_schema`) and that the user may write it")
        case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed,
            .sslUnsupported, .failedToAddSSLHandler:
            return LedgerUnavailableError(
                location: location, reason: "\(psql.code)" + ((psql.underlying).map { ": \($0)" } ?? ""))
        default:
            return UsageBillingError(
                .unexpectedResponse, "the ledger \(location) failed: \(psql.code)", fix: "see the server's log")
        }
    }

    func first<T: PostgresDecodable & Sendable>(_ query: PostgresQuery, as type: T.Type) async throws -> T? {
        try await run {
            for try await value in try await self.client.query(query, logger: self.logger).decode(T.self) {
                return value
            }
            return nil
        }
    }

    func all<T: PostgresDecodable & Sendable>(_ query: PostgresQuery, as type: T.Type) async throws -> [T] {
        try await run {
            var out: [T] = []
            for try await value in try await self.client.query(query, logger: self.logger).decode(T.self) {
                out.append(value)
            }
            return out
        }
    }

    /// Runs a statement with `RETURNING` and counts its rows.
    func count(_ query: PostgresQuery) async throws -> Int {
        try await run {
            var n = 0
            for try await _ in try await self.client.query(query, logger: self.logger) { n += 1 }
            return n
        }
    }

    func scalar(_ c: PostgresConnection, _ query: PostgresQuery) async throws -> Int {
        for try await value in try await c.query(query, logger: logger).decode(Int.self) { return value }
        return 0
    }
}
