import Foundation
import Logging
import Metrics
import ServiceLifecycle
import UsageBilling
import UsageRouting
import UsageSpool

/// The `serve:` section of the routing config:
///
/// ```yaml
/// serve:
///   tokens: [${INGEST_TOKEN}]      # bearer tokens a request may carry (from the environment)
///   max_body_bytes: 4194304        # larger bodies: 413
///   max_events_per_request: 10000  # more events: 413
///   max_backlog: 1000000           # queued rows above which requests get 503 + Retry-After
///   max_lag: 1h                    # /readyz fails while a lane's oldest undelivered event is older
///   compat:                        # providers' own ingest APIs, for their SDKs (see IngestDoor)
///     stripe: {}                   # on, with its default mapping keys
///     orb: { quantity_property: tokens }
/// ```
public struct ServeSettings: Sendable {
    /// The bearer tokens accepted; a request without one of them gets 401.
    public var tokens: [Secret]
    public var maxBodyBytes: Int
    public var maxEventsPerRequest: Int
    public var maxBacklog: Int
    /// How old a lane's oldest undelivered event may be before `/readyz` reports the lane stuck.
    public var maxLag: Duration
    /// The provider APIs switched on (`serve.compat`), by door prefix, with their settings.
    public var compat: [String: [String: JSONValue]] = [:]

    public static let keys: Set<String> = [
        "tokens", "max_body_bytes", "max_events_per_request", "max_backlog", "max_lag", "compat",
    ]

    public init(
        tokens: [Secret], maxBodyBytes: Int = 4 << 20, maxEventsPerRequest: Int = 10_000, maxBacklog: Int = 1_000_000,
        maxLag: Duration = .seconds(3600)
    ) {
        self.tokens = tokens
        self.maxBodyBytes = maxBodyBytes
        self.maxEventsPerRequest = maxEventsPerRequest
        self.maxBacklog = maxBacklog
        self.maxLag = maxLag
    }

    /// The settings in `config`'s `serve:` section, checked in one pass: throws ``ConfigIssues``
    /// listing every problem, each with its file, line, key and fix. `doors`: the provider APIs
    /// `serve.compat` may switch on. With `requireVariables` false (`config check`), a token whose
    /// environment variable is not set is left out instead of being a problem: only `serve` reads it.
    public static func from(_ config: RoutingConfig, doors: [any IngestDoor] = [], requireVariables: Bool = true) throws
        -> ServeSettings
    {
        var issues: [ConfigIssue] = []
        func bad(_ key: String, _ message: String, _ fix: String) {
            issues.append(config.issue("serve.\(key)", message, fix))
        }
        if requireVariables {
            for (path, name) in config.unsetServeVariables.sorted(by: { $0.key < $1.key }) {
                issues.append(
                    config.issue(
                        path, "environment variable \(name) is not set",
                        "export \(name)=… (a long random value, e.g. `openssl rand -hex 32`) before `serve`"))
            }
        }
        guard case .object(let section)? = config.serve else {
            bad(
                "tokens", "the config has no serve section, so no token could authorise a request",
                "add `serve: { tokens: [${INGEST_TOKEN}] }` and set INGEST_TOKEN to a long random value (e.g. `openssl rand -hex 32`)"
            )
            throw ConfigIssues(issues: issues)
        }
        for unknown in section.keys.sorted() where !keys.contains(unknown) {
            bad(unknown, "unknown setting '\(unknown)'", "use \(keys.sorted().joined(separator: ", "))")
        }
        var tokens: [Secret] = []
        if case .array(let list)? = section["tokens"], !list.isEmpty {
            for (i, value) in list.enumerated() {
                if config.unsetServeVariables["serve.tokens[\(i)]"] != nil { continue }
                guard let text = value.stringValue, text.count >= 16 else {
                    bad(
                        "tokens[\(i)]", "a token must be a string of at least 16 characters",
                        "generate one with `openssl rand -hex 32` and pass it through the environment")
                    continue
                }
                tokens.append(Secret(text))
            }
        } else {
            bad("tokens", "tokens must be a non-empty list", "write `tokens: [${INGEST_TOKEN}]`")
        }
        var settings = ServeSettings(tokens: tokens)
        func number(_ key: String, _ range: ClosedRange<Int>, _ fix: String) -> Int? {
            guard let value = section[key] else { return nil }
            guard let n = value.numberValue, n == n.rounded(), range.contains(Int(n)) else {
                bad(key, "\(key) must be a whole number from \(range.lowerBound) to \(range.upperBound)", fix)
                return nil
            }
            return Int(n)
        }
        settings.maxBodyBytes =
            number("max_body_bytes", 1_024...(256 << 20), "e.g. 4194304 (4 MiB)") ?? settings.maxBodyBytes
        settings.maxEventsPerRequest =
            number("max_events_per_request", 1...1_000_000, "e.g. 10000") ?? settings.maxEventsPerRequest
        settings.maxBacklog =
            number("max_backlog", 1...1_000_000_000, "e.g. 1000000 queued rows") ?? settings.maxBacklog
        if let value = section["max_lag"] {
            if let text = value.stringValue, let lag = DurationText.parse(text), lag >= .seconds(60) {
                settings.maxLag = lag
            } else {
                bad(
                    "max_lag", "max_lag must be a duration of a minute or more",
                    "e.g. 1h (a lane whose oldest undelivered event is older is reported by /readyz)")
            }
        }
        if let value = section["compat"] {
            settings.compat = compat(value, doors: doors, bad: bad)
        }
        guard issues.isEmpty else { throw ConfigIssues(issues: issues.sorted { ($0.line ?? 0) < ($1.line ?? 0) }) }
        return settings
    }

    /// The provider APIs `serve.compat` switches on, with their settings; each problem reported
    /// through `bad` (key under `serve.`, message, fix).
    static func compat(_ value: JSONValue, doors: [any IngestDoor], bad: (String, String, String) -> Void) -> [String:
        [String: JSONValue]]
    {
        let names = doors.map(\.prefix).sorted().joined(separator: ", ")
        guard case .object(let compat) = value else {
            bad(
                "compat", "compat must be a mapping of provider APIs",
                "write e.g. `compat: { stripe: {}, orb: { quantity_property: tokens } }` (APIs: \(names))")
            return [:]
        }
        var switchedOn: [String: [String: JSONValue]] = [:]
        for name in compat.keys.sorted() {
            guard let door = doors.first(where: { $0.prefix == name }) else {
                bad("compat.\(name)", "serve speaks no '\(name)' API", "use one of \(names)")
                continue
            }
            var entry: [String: JSONValue] = [:]
            switch compat[name] {
            case .object(let o)?: entry = o
            case .null?: break
            default:
                bad(
                    "compat.\(name)", "compat.\(name) must be a mapping (its settings, or {})",
                    "write `\(name): {}` to switch it on with its defaults")
                continue
            }
            let known = door.settingsKeys.union(["enabled"])
            var fine = true
            for unknown in entry.keys.sorted() where !known.contains(unknown) {
                bad(
                    "compat.\(name).\(unknown)", "the \(name) API has no setting '\(unknown)'",
                    "use \(known.sorted().joined(separator: ", "))")
                fine = false
            }
            if let enabled = entry["enabled"], enabled.boolValue == nil {
                bad(
                    "compat.\(name).enabled", "enabled must be true or false",
                    "write `enabled: false` to switch it off, or leave it out")
                fine = false
            }
            for problem in door.check(entry) {
                bad("compat.\(name).\(problem.key)", problem.message, problem.fix)
                fine = false
            }
            if fine, entry["enabled"]?.boolValue != false {
                entry["enabled"] = nil
                switchedOn[name] = entry
            }
        }
        return switchedOn
    }
}

/// The spool's backlog, counted in the background (a count per request would cost more than the
/// request): `POST /v1/events` answers 503 above ``ServeSettings/maxBacklog``, and `/readyz`
/// reports whether the last count succeeded recently and which lanes lag past a bound.
public final class BacklogMonitor: Service, Sendable {
    let spool: any UsageLedger
    let every: Duration
    let lanes: [String]
    let maxLag: Duration
    private let state = Locked(
        (
            queued: 0, at: ContinuousClock.Instant?.none, error: String?.none, lagging: [String](),
            writeError: String?.none
        ))
    /// Per lane, its queued rows at every ``historyEvery``-th count, the latest last, at most
    /// ``historyPoints`` of them: the status page's backlog lines.
    private let samples = Locked((counts: [String: [Int]](), refreshes: 0))
    /// Counts between two history samples.
    public let historyEvery = 10
    /// Samples kept per lane.
    public let historyPoints = 90

    /// `every`: a count walks the queued rows' index, so a second between counts keeps it a
    /// small cost however large the backlog grows (the bound is a safety limit, not a quota).
    public init(
        spool: any UsageLedger, lanes: [String] = [], maxLag: Duration = .seconds(3600), every: Duration = .seconds(1)
    ) {
        self.spool = spool
        self.lanes = lanes
        self.maxLag = maxLag
        self.every = every
    }

    /// Queued rows at the last count.
    public var queued: Int { state.with { $0.queued } }

    /// Records how the last write of an ingest request went: a refused write makes the spool not
    /// ready until a later one succeeds.
    public func wrote(_ error: (any Error)?) {
        state.with { $0.writeError = error.map { "\($0)" } }
    }

    /// Why the spool is not ready (its last count failed or is older than 5 s, its last write
    /// was refused, or a lane lags past the bound), or nil.
    public var problem: String? {
        state.with { s in
            if let error = s.error { return "the spool cannot be read: \(error)" }
            if let error = s.writeError { return "the spool refused the last write: \(error)" }
            guard let at = s.at else { return "the spool has not been read yet" }
            if ContinuousClock.now - at > .seconds(5) {
                return "the spool was last read \(ContinuousClock.now - at) ago"
            }
            return s.lagging.isEmpty
                ? nil : "lanes behind by more than serve.max_lag: " + s.lagging.joined(separator: ", ")
        }
    }

    /// Counts once now.
    public func refresh() async {
        do {
            let n = try await spool.queuedCount(lane: nil)
            var lagging: [String] = []
            let now = Date()
            for lane in lanes {
                if let oldest = try await spool.oldestQueued(lane: lane), now.timeIntervalSince(oldest) > maxLag.seconds
                {
                    lagging.append("\(lane) (oldest undelivered recorded \(Int(now.timeIntervalSince(oldest))) s ago)")
                }
            }
            state.with { s in (s.queued, s.at, s.error, s.lagging) = (n, ContinuousClock.now, nil, lagging) }
            if samples.with({ s in
                defer { s.refreshes += 1 }; return s.refreshes % historyEvery == 0
            }) {
                var counts: [String: Int] = [:]
                for lane in lanes { counts[lane] = try await spool.queuedCount(lane: lane) }
                samples.with { s in
                    for (lane, count) in counts { s.counts[lane, default: []].append(count) }
                    for lane in counts.keys where (s.counts[lane]?.count ?? 0) > historyPoints {
                        s.counts[lane]?.removeFirst()
                    }
                }
            }
        } catch {
            state.with { $0.error = "\(error)" }
        }
    }

    /// The backlog samples per lane, oldest first.
    public var history: [String: [Int]] { samples.with { $0.counts } }

    /// What ``history`` covers, in words.
    public var historySpan: String {
        let seconds = Int(every.seconds) * historyEvery * historyPoints
        return "samples every \(Int(every.seconds) * historyEvery) s, up to \(seconds / 60) min"
    }

    /// Counts every ``every`` until the service group shuts down.
    public func run() async throws {
        await refresh()
        do {
            try await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    try await Task.sleep(for: self.every)
                    await self.refresh()
                }
            }
        } catch is CancellationError {
            // Shutting down: the sleep was cut short, which is the end of this service's work.
        }
    }
}

/// What `POST /v1/events` answers.
public struct IngestReply: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: JSONValue
}

/// `POST /v1/events` without the HTTP server: authorise, check the limits and the backlog,
/// parse, route, record, answer. It answers 202 only once every accepted event is durable.
public final class IngestHandler: Sendable {
    public let settings: ServeSettings
    let spool: any UsageLedger
    let router: Router
    let backlog: BacklogMonitor
    let logger: Logger

    /// Metric names, with swift-metrics (the `serve` command exports them at `/metrics`).
    public enum MetricNames {
        /// Requests by answer status (`status` dimension).
        public static let requests = "usage_billing_ingest_requests_total"
        /// Events by result (`result`: accepted, duplicate, refused, id_reused: an id already
        /// recorded with a different payload).
        public static let events = "usage_billing_ingest_events_total"
        /// Seconds from the request's body to its answer (histogram).
        public static let duration = "usage_billing_ingest_duration_seconds"
    }

    /// The `result` values of ``MetricNames/events``; each exists from the start, at zero.
    public static let eventResults = ["accepted", "duplicate", "refused", "id_reused"]

    public init(
        settings: ServeSettings, spool: any UsageLedger, router: Router, backlog: BacklogMonitor, logger: Logger
    ) {
        self.settings = settings
        self.spool = spool
        self.router = router
        self.backlog = backlog
        self.logger = logger
        // Counters that can stay at zero exist from the start, so a rate over them is defined
        // (and an alert on the first refusal or dead letter fires).
        for result in Self.eventResults {
            Counter(label: MetricNames.events, dimensions: [("result", result)]).increment(by: 0)
        }
        DeliveryWorker.deadLetterCounter(lane: Spool.unroutedLane, reason: "unrouted").increment(by: 0)
    }

    /// Whether `authorization` (the header's value) carries one of the tokens, compared in
    /// constant time.
    public func authorises(_ authorization: String?) -> Bool {
        // The scheme is case-insensitive (RFC 7235 §2.1): `bearer`, `BEARER` and `Bearer` alike.
        guard let authorization, authorization.count > 7, authorization.prefix(7).lowercased() == "bearer " else {
            return false
        }
        let given = Array(authorization.dropFirst(7).drop(while: { $0 == " " }).utf8)
        var match = false
        for token in settings.tokens {
            let expected = Array(token.exposedValue.utf8)
            var diff = UInt8(given.count == expected.count ? 0 : 1)
            for i in 0..<expected.count { diff |= expected[i] ^ (i < given.count ? given[i] : 0) }
            match = match || diff == 0
        }
        return match
    }

    /// Whether `token` (an SDK's API key) is one of the tokens, compared in constant time.
    public func authorises(token: String) -> Bool { authorises("Bearer " + token) }

    /// What a provider API's door gets for one request: the token check, this handler's
    /// recording, the door's settings, the request limit, and a signing key derived from the
    /// tokens (the same on every instance with the same tokens).
    public func doorContext(settings doorSettings: [String: JSONValue]) -> IngestDoorContext {
        IngestDoorContext(
            authorises: { [self] in self.authorises(token: $0) },
            record: { [self] events, field in
                try await self.record(
                    events, quantityField: field,
                    quantityFix:
                        "send the quantity in \(field) (serve.compat names the key), or route the event to a lane that counts events"
                )
            },
            settings: doorSettings, maxEvents: settings.maxEventsPerRequest, signingKey: signingKey)
    }

    private var signingKey: [UInt8] {
        Array(
            HMACSHA256.hex(
                key: Array(settings.tokens.map(\.exposedValue).sorted().joined(separator: "\u{1F}").utf8),
                "usage-billing serve door tokens"
            ).utf8)
    }

    static func error(_ status: Int, _ code: String, _ message: String, fix: String, headers: [(String, String)] = [])
        -> IngestReply
    {
        IngestReply(
            status: status, headers: headers,
            body: .object(["error": .object(["code": .string(code), "message": .string(message), "fix": .string(fix)])])
        )
    }

    /// The answer to an unauthorised request (no body read).
    public static let unauthorised = error(
        401, "unauthorized", "the request carries no valid bearer token",
        fix: "send Authorization: Bearer <one of the serve.tokens>", headers: [("WWW-Authenticate", "Bearer")])

    /// Counts an answer in ``MetricNames/requests`` (every answer of `POST /v1/events`, those the
    /// server gives before the body is read included).
    public static func count(_ reply: IngestReply) {
        Counter(label: MetricNames.requests, dimensions: [("status", "\(reply.status)")]).increment()
    }

    /// The answer to a body over ``ServeSettings/maxBodyBytes``.
    public func tooLarge() -> IngestReply {
        Self.error(
            413, "body_too_large", "the body is larger than \(settings.maxBodyBytes) bytes",
            fix: "split the events over several requests")
    }

    /// Handles one request whose body was read. `headers`: the request's, for a CloudEvent sent
    /// in binary mode (`ce-*` headers, its data the body).
    public func handle(
        body: Data, contentType: String?, quantityProperty: String?, headers: [(name: String, value: String)] = []
    ) async -> IngestReply {
        let started = ContinuousClock.now
        let reply = await handleTimed(
            body: body, contentType: contentType, quantityProperty: quantityProperty, headers: headers)
        Self.count(reply)
        let elapsed = (ContinuousClock.now - started).components
        Metrics.Timer(label: MetricNames.duration).recordNanoseconds(
            elapsed.seconds * 1_000_000_000 + elapsed.attoseconds / 1_000_000_000)
        return reply
    }

    private func handleTimed(
        body: Data, contentType: String?, quantityProperty: String?, headers: [(name: String, value: String)]
    ) async -> IngestReply {
        let binary = IngestParser.binaryModeAttributes(headers)
        let format = IngestFormat(contentType: contentType)
        if binary == nil, format == nil {
            return Self.error(
                415, "unsupported_media_type",
                "Content-Type \(contentType.map { "'\($0)'" } ?? "is missing and") is not one this endpoint takes",
                fix: "send " + IngestFormat.allCases.map(\.mediaType).joined(separator: ", ")
                    + ", or a CloudEvent in binary mode (ce-* headers, its data as application/json)")
        }
        if backlog.queued > settings.maxBacklog {
            return Self.error(
                503, "backlog_full",
                "the spool holds \(backlog.queued) undelivered rows, above serve.max_backlog (\(settings.maxBacklog))",
                fix:
                    "retry after the Retry-After seconds with the same event ids; nothing of this request was recorded",
                headers: [("Retry-After", "5")])
        }
        let property = quantityProperty ?? "value"
        var parsed: IngestParsed
        do {
            if let binary {
                parsed = try IngestParser.parseBinary(body, attributes: binary, quantityProperty: property)
            } else if let format {
                parsed = try IngestParser.parse(body, format: format, quantityProperty: property)
            } else {
                parsed = IngestParsed()
            }
        } catch {
            return Self.error(400, "malformed_body", error.reason, fix: error.fix)
        }
        if parsed.events.count + parsed.refusals.count > settings.maxEventsPerRequest {
            return Self.error(
                413, "too_many_events",
                "the request carries \(parsed.events.count + parsed.refusals.count) events, above serve.max_events_per_request (\(settings.maxEventsPerRequest))",
                fix: "send at most \(settings.maxEventsPerRequest) events per request")
        }
        let results: [IngestDoorResult]
        do {
            results = try await record(
                parsed.events.map { (event: $0.event, hasQuantity: !parsed.missingQuantity.contains($0.index)) },
                quantityField: "data.\(property)",
                quantityFix: quantityProperty == nil
                    ? "put the quantity in data.value, or name the data field that holds it with ?quantity_property=NAME (only a route that counts events takes an event without one)"
                    : "put the quantity in data.\(property), or pass the data field that holds it as ?quantity_property=NAME"
            )
        } catch {
            return Self.error(
                503, "ledger_unavailable", error.reason,
                fix: "retry with the same event ids; nothing of this request was recorded",
                headers: [("Retry-After", "\(error.retryAfter)")])
        }
        var refusals = parsed.refusals
        var accepted = 0, duplicates = 0
        for ((index, event), result) in zip(parsed.events, results) {
            switch result {
            case .accepted: accepted += 1
            case .duplicate: duplicates += 1
            case .refused(let field, let reason, let fix):
                refusals.append(
                    IngestRefusal(index: index, line: nil, id: event.id, field: field, reason: reason, fix: fix))
            }
        }
        Counter(label: MetricNames.events, dimensions: [("result", "refused")]).increment(by: parsed.refusals.count)
        refusals.sort { $0.index < $1.index }
        let answer: JSONValue = .object([
            "accepted": .number(Double(accepted)),
            "duplicates": .number(Double(duplicates)),
            "refused": .array(refusals.map(\.json)),
        ])
        // A body of which nothing was taken is a client error, with every refusal listed.
        if accepted == 0 && duplicates == 0 && !refusals.isEmpty {
            return IngestReply(status: 400, headers: [], body: answer)
        }
        return IngestReply(status: 202, headers: [], body: answer)
    }

    /// Records `events` as `POST /v1/events` does, one result each, in order: refused when it
    /// has no quantity and a route of it does not count events (`quantityField`, `quantityFix`
    /// name the fix in the caller's terms), when no route takes it under `unrouted: reject`, or
    /// when its id was recorded before with another payload (the stored event stands); a
    /// duplicate when its id was recorded with the same payload (the same id twice in `events`
    /// is one event); else accepted, durably, before this returns. Counts each in the metrics.
    /// - Throws: ``IngestDoorUnavailable`` when the backlog is full or the ledger cannot record;
    ///   then nothing was recorded.
    public func record(
        _ events: [(event: UsageEvent, hasQuantity: Bool)], quantityField: String = "quantity",
        quantityFix: String = "send the quantity, or route the event to a lane that counts events"
    ) async throws(IngestDoorUnavailable) -> [IngestDoorResult] {
        if backlog.queued > settings.maxBacklog {
            throw IngestDoorUnavailable(
                reason:
                    "the spool holds \(backlog.queued) undelivered rows, above serve.max_backlog (\(settings.maxBacklog))",
                retryAfter: 5)
        }
        var results = [IngestDoorResult?](repeating: nil, count: events.count)
        var entries: [Spool.Entry] = []
        var positionByID: [String: Int] = [:]
        entries.reserveCapacity(events.count)
        for (position, (event, hasQuantity)) in events.enumerated() {
            if !hasQuantity, !countsEvents(event) {
                results[position] = .refused(
                    field: quantityField, reason: "the event has no quantity ('\(quantityField)')", fix: quantityFix)
                continue
            }
            // The same id twice in one request is one event, if it is the same usage fact.
            if let first = positionByID[event.id] {
                if let difference = Self.difference(event, events[first].event) {
                    results[position] = Self.reused(event.id, difference, where: "earlier in this request")
                } else {
                    results[position] = .duplicate
                }
                continue
            }
            do {
                entries.append(try UsagePipeline.entry(event, router: router))
                positionByID[event.id] = position
            } catch let error as UsageBillingError {
                results[position] = .refused(
                    field: error.field ?? "name", reason: error.message, fix: error.fix ?? "add a route for it")
            } catch {
                results[position] = .refused(field: "", reason: "\(error)", fix: "report this")
            }
        }
        var knownIDs = Set<String>()
        do {
            if !entries.isEmpty {
                knownIDs = Set(try await spool.record(entries))
                backlog.wrote(nil)
            }
        } catch let unavailable as LedgerUnavailableError {
            backlog.wrote(unavailable)
            throw IngestDoorUnavailable(reason: "the ledger cannot be reached: \(unavailable.reason)", retryAfter: 1)
        } catch {
            backlog.wrote(error)
            logger.error("recording failed", metadata: ["error": "\(error)"])
            throw IngestDoorUnavailable(reason: "the events could not be recorded: \(error)", retryAfter: 1)
        }
        for entry in entries { if let position = positionByID[entry.event.id] { results[position] = .accepted } }
        // An id recorded before is a duplicate when its payload is the stored one, and refused
        // when it differs: the stored event wins, nothing is overwritten.
        if !knownIDs.isEmpty {
            let stored: [String: UsageEvent]
            do {
                stored = try await spool.storedEvents(ids: Array(knownIDs))
            } catch {
                stored = [:]
                logger.warning(
                    "could not read back recorded events to compare payloads", metadata: ["error": "\(error)"])
            }
            for id in knownIDs {
                guard let position = positionByID[id] else { continue }
                if let theirs = stored[id], let difference = Self.difference(events[position].event, theirs) {
                    results[position] = Self.reused(id, difference, where: "before")
                } else {
                    results[position] = .duplicate
                }
            }
        }
        let deadLettered = entries.filter { $0.deadLetter != nil && !knownIDs.contains($0.event.id) }.count
        if deadLettered > 0 {
            DeliveryWorker.deadLetterCounter(lane: Spool.unroutedLane, reason: "unrouted").increment(by: deadLettered)
        }
        var counts: [String: Int] = [:]
        for result in results {
            switch result {
            case .accepted?: counts["accepted", default: 0] += 1
            case .duplicate?: counts["duplicate", default: 0] += 1
            case .refused(_, let reason, _)?:
                counts[reason.hasPrefix(Self.reusedCode) ? "id_reused" : "refused", default: 0] += 1
            case nil: break
            }
        }
        for (result, count) in counts {
            Counter(label: MetricNames.events, dimensions: [("result", result)]).increment(by: count)
        }
        return results.map { $0 ?? .refused(field: "", reason: "not recorded", fix: "report this") }
    }

    static let reusedCode = "id_reused_with_different_payload"

    static func reused(_ id: String, _ difference: String, where: String) -> IngestDoorResult {
        .refused(
            field: difference,
            reason:
                "\(reusedCode): the id \(id) was recorded \(`where`) with a different \(difference); the recorded event stands",
            fix:
                "give a new usage fact a new id; to change recorded usage, correct the recorded event instead of resending its id"
        )
    }

    /// Whether every lane `event` goes to bills it by counting events (so it needs no quantity).
    private func countsEvents(_ event: UsageEvent) -> Bool {
        guard let destinations = router.destinations(for: event) else { return false }
        return ([destinations.primary] + destinations.shadows).allSatisfy { lane in
            router.sink(for: lane)?.capabilities.aggregation?.formula == .count
        }
    }

    /// The first field in which two events with one id differ (name, customer, timestamp,
    /// quantity, properties), or nil when they are the same usage fact.
    static func difference(_ a: UsageEvent, _ b: UsageEvent) -> String? {
        if a.name != b.name { return "name" }
        if a.customer != b.customer { return "customer" }
        if abs(a.timestamp.timeIntervalSince(b.timestamp)) >= 0.001 { return "timestamp" }
        if a.quantity != b.quantity { return "quantity" }
        if a.properties != b.properties { return "properties" }
        return nil
    }
}
