import Foundation
import Logging
import Metrics
import ServiceLifecycle
import UsageBilling
import UsageRouting
import UsageSpool

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

    /// `POST /v1/events/{id}/void` once authorised and its body read: `{"reason": "…"}`. 200 with
    /// the correction (voiding twice answers the first one, `already_void: true`), 400 for a
    /// body without a reason, 404 for an id the ledger does not hold.
    public func void(id: String, body: Data) async -> IngestReply {
        let reply = await voidReply(id: id, body: body)
        Self.count(reply)
        return reply
    }

    private func voidReply(id: String, body: Data) async -> IngestReply {
        guard case .object(let object)? = JSONValue.parse(body), let reason = object["reason"]?.stringValue,
            !reason.trimmingCharacters(in: .whitespaces).isEmpty
        else {
            return Self.error(
                400, "invalid_request", "the body must be a JSON object with a non-empty \"reason\"",
                fix: #"send {"reason": "why it should not be billed"}"#)
        }
        do {
            let results = try await spool.void([id], reason: reason, now: Date())
            guard let result = results.first else {
                return Self.error(500, "internal", "the ledger answered nothing for \(id)", fix: "try again")
            }
            return IngestReply(status: 200, headers: [], body: result.json)
        } catch {
            return correctionRefusal(error, nothing: "nothing was voided")
        }
    }

    /// The answer to a correction the ledger refused or could not record: 404 for an id it does
    /// not hold, 400 for a correction the event cannot take, 503 while the ledger is unavailable.
    private func correctionRefusal(_ error: any Error, nothing: String) -> IngestReply {
        if let error = error as? UsageBillingError, error.code == .notFound || error.code == .invalidInput {
            return Self.error(
                error.code == .notFound ? 404 : 400, error.code == .notFound ? "event_not_found" : "invalid_request",
                error.message, fix: error.fix ?? "check the request")
        }
        logger.error("correction failed", metadata: ["error": "\(error)"])
        return Self.error(
            503, "ledger_unavailable", "the ledger could not record the correction",
            fix: "retry later with the same body: \(nothing), and the same correction is made once",
            headers: [("Retry-After", "5")])
    }

    /// `POST /v1/events/{id}/amend` once authorised and its body read:
    /// `{"quantity": 120, "reason": "…"}`. 200 with the correction and `replacement_id` (the
    /// replacement is recorded before this answers; amending again to the same quantity answers
    /// the same amend, `already_amended: true`), 400 for a body without a number or a reason,
    /// 404 for an id the ledger does not hold.
    public func amend(id: String, body: Data) async -> IngestReply {
        let reply = await amendReply(id: id, body: body)
        Self.count(reply)
        return reply
    }

    private func amendReply(id: String, body: Data) async -> IngestReply {
        // A JSON number, read through its shortest decimal text (0.1 stays 0.1), or a decimal string.
        let quantity: Decimal? =
            switch JSONValue.parse(body)?["quantity"] {
            case .number(let n)? where n.isFinite: DecimalFormat.parse(String(n))
            case .string(let s)?: DecimalFormat.parseExactly(s)
            default: nil
            }
        guard case .object(let object)? = JSONValue.parse(body), let quantity,
            let reason = object["reason"]?.stringValue, !reason.trimmingCharacters(in: .whitespaces).isEmpty
        else {
            return Self.error(
                400, "invalid_request",
                "the body must be a JSON object with a number \"quantity\" and a non-empty \"reason\"",
                fix: #"send {"quantity": 120, "reason": "why it should be billed so"}"#)
        }
        do {
            let result = try await spool.amend(id, quantity: quantity, reason: reason, now: Date())
            _ = try await spool.record([try UsagePipeline.entry(result.replacement, router: router)], now: Date())
            return IngestReply(status: 200, headers: [], body: result.json)
        } catch {
            return correctionRefusal(error, nothing: "nothing was amended")
        }
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
        var entries: [RecordEntry] = []
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
