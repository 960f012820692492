import Foundation
import UsageBilling
import UsageEmulatorCore

/// Orb `POST /v1/ingest` (dedup by `idempotency_key`, silently: a repeat answers the same 200),
/// backfills (`POST /v1/events/backfills`, ingest with `backfill_id`, `…/close`), amending and
/// deprecating events (`PUT /v1/events/{id}`, `…/deprecate`), `POST
/// /v1/events/search`, `GET /v1/subscriptions` (one running subscription per customer,
/// `sub_emu_<customer id>`) and `GET /v1/subscriptions/{id}/usage` (one billable metric per event
/// name, summing `properties.quantity`).
final class OrbEmulation: EmulatedProvider {
    let prefix = "orb"
    /// A backfill: its events count once it is closed.
    private struct Backfill {
        var id: String, start: Date, end: Date, customerID: String?, externalCustomerID: String?, created: Date
        var closed: Date?
        var pending: [AcceptedUsage] = []
        var ingested = 0
    }
    private struct State {
        var usage: [AcceptedUsage] = []; var keys: Set<String> = []
        /// Deprecated events' keys: no longer billed, and a later ingest of one is refused.
        var deprecated: Set<String> = []
        /// Per customer, when each of its events was amended or deprecated (Orb's limit: 100 in
        /// 100 days).
        var corrections: [String: [Date]] = [:]
        var backfills: [String: Backfill] = [:]
        /// Backfill creations by `Idempotency-Key`: a retried create answers the same backfill.
        var created: [String: String] = [:]
    }
    private let state = Locked(State())
    func reset() { state.with { $0 = State() } }
    /// Per external customer id, the IANA time zone Orb cuts its days in (default UTC).
    private let timeZones: [String: String]
    private let gracePeriod: TimeInterval?
    private let now: @Sendable () -> Date

    init(
        timeZones: [String: String] = [:], gracePeriod: Duration? = nil,
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.timeZones = timeZones
        self.gracePeriod = gracePeriod?.seconds
        self.now = now
    }

    func accepted() async -> [AcceptedUsage] { state.with { $0.usage } }

    func injected(status: Int, retryAfter: Bool) -> HTTPResponse {
        let title = status == 429 ? "Too many requests" : "Internal server error"
        return Reply.json(
            status,
            .object([
                "type": .string("https://docs.withorb.com/reference/error-responses#\(status)"),
                "status": .number(Double(status)),
                "title": .string(title),
            ]), headers: status == 429 && retryAfter ? ["Retry-After": "1"] : [:])
    }

    func handle(_ r: EmulatedRequest) -> HTTPResponse {
        guard r.headers["Authorization"]?.hasPrefix("Bearer ") == true else {
            return Reply.json(
                401,
                .object([
                    "type": .string("https://docs.withorb.com/reference/error-responses#401-authentication-error"),
                    "status": .number(401),
                    "title": .string("Authentication error"), "detail": .string("Missing or invalid API key"),
                ]))
        }
        if r.method == "POST" && r.path == "/v1/ingest" { return ingest(r) }
        if r.method == "POST" && r.path == "/v1/events/search" { return search(r) }
        if r.method == "PUT" && r.path.hasPrefix("/v1/events/") && !r.path.hasPrefix("/v1/events/backfills") {
            return correct(r)
        }
        if r.path == "/v1/events/backfills" || r.path.hasPrefix("/v1/events/backfills/") { return backfills(r) }
        if r.method == "GET", r.path.hasPrefix("/v1/customers/external_customer_id/") {
            let external =
                String(r.path.dropFirst("/v1/customers/external_customer_id/".count)).removingPercentEncoding ?? ""
            return Reply.json(
                200,
                .object([
                    "id": .string("cus_emu_" + external), "external_customer_id": .string(external),
                    "timezone": .string(timeZones[external] ?? "Etc/UTC"), "currency": .string("USD"),
                ]))
        }
        if r.method == "GET", r.path.hasPrefix("/v1/customers/"),
            !r.path.dropFirst("/v1/customers/".count).contains("/")
        {
            // By Orb's own id (events sent with customer_id): time zones are keyed by the id events carry.
            let id = String(r.path.dropFirst("/v1/customers/".count)).removingPercentEncoding ?? ""
            return Reply.json(
                200,
                .object([
                    "id": .string(id), "external_customer_id": .null,
                    "timezone": .string(timeZones[id] ?? "Etc/UTC"), "currency": .string("USD"),
                ]))
        }
        if r.method == "GET", r.path == "/v1/subscriptions" {
            // One running subscription per customer asked for, `sub_emu_<customer id>`.
            let customers = ["external_customer_id[]", "external_customer_id", "customer_id[]", "customer_id"].flatMap {
                r.queryAll($0)
            }
            let data: [JSONValue] = customers.map { c in
                .object([
                    "id": .string("sub_emu_" + c), "status": .string("active"),
                    "start_date": .string("2000-01-01T00:00:00Z"), "end_date": .null,
                    "customer": .object(["id": .string("cus_emu_" + c), "external_customer_id": .string(c)]),
                ])
            }
            return Reply.json(
                200,
                .object([
                    "data": .array(data),
                    "pagination_metadata": .object(["has_more": .bool(false), "next_cursor": .null]),
                ]))
        }
        if r.method == "GET", r.path.hasPrefix("/v1/subscriptions/"), r.path.hasSuffix("/usage") {
            let id =
                String(r.path.dropFirst("/v1/subscriptions/".count).dropLast("/usage".count)).removingPercentEncoding
                ?? ""
            return usage(subscription: id.hasPrefix("sub_emu_") ? String(id.dropFirst("sub_emu_".count)) : id, r)
        }
        return Reply.json(
            404,
            .object([
                "status": .number(404), "title": .string("Not found"),
                "type": .string("https://docs.withorb.com/reference/error-responses#404-not-found"),
            ]))
    }

    private func validationError(_ loc: [String], _ message: String, status: Int = 400) -> HTTPResponse {
        Reply.json(
            status,
            .object([
                "status": .number(Double(status)), "title": .string("Request validation error"),
                "type": .string("https://docs.withorb.com/reference/error-responses#400-request-validation-errors"),
                "validation_errors": .array([
                    .object(["loc": .array(loc.map(JSONValue.string)), "msg": .string(message)])
                ]),
            ]))
    }

    private func notFound(_ detail: String) -> HTTPResponse {
        Reply.json(
            404,
            .object([
                "status": .number(404), "title": .string("Not found"), "detail": .string(detail),
                "type": .string("https://docs.withorb.com/reference/error-responses#404-not-found"),
            ]))
    }

    /// Ingest: each event is checked (required fields; at most 5 minutes ahead; within the grace
    /// period, when one is set, unless it comes through a backfill, and then within the backfill's
    /// timeframe and customer); failures are listed in `validation_failed` and the rest taken.
    /// Events sent to a backfill count when it is closed.
    private func ingest(_ r: EmulatedRequest) -> HTTPResponse {
        guard let events = r.json?["events"]?.arrayValue else {
            return validationError(["body", "events"], "field required")
        }
        let at = now()
        var backfill: Backfill?
        if let id = r.query("backfill_id") {
            guard let known = state.with({ $0.backfills[id] }) else { return notFound("No backfill with id \(id)") }
            guard known.closed == nil else {
                return validationError(["query", "backfill_id"], "Backfill \(id) is closed; create a new backfill")
            }
            backfill = known
        }
        var failed: [JSONValue] = []
        var valid: [(key: String, usage: AcceptedUsage)] = []  // read outside the lock, which concurrent requests share
        valid.reserveCapacity(events.count)
        for e in events {
            guard let key = e["idempotency_key"]?.stringValue, let name = e["event_name"]?.stringValue,
                let customer = e["external_customer_id"]?.stringValue ?? e["customer_id"]?.stringValue,
                let ts = e["timestamp"]?.stringValue.flatMap(RFC3339.parse)
            else {
                failed.append(
                    .object([
                        "idempotency_key": e["idempotency_key"] ?? .null,
                        "validation_errors": .array([.string("event is missing a required field")]),
                    ]))
                continue
            }
            var problem: String?
            if ts > at.addingTimeInterval(300) {
                problem = "timestamp is more than 5 minutes in the future"
            } else if let b = backfill {
                if ts < b.start || ts >= b.end {
                    problem =
                        "timestamp is outside the backfill's timeframe [\(RFC3339.format(b.start)), \(RFC3339.format(b.end)))"
                } else if let external = b.externalCustomerID, e["external_customer_id"]?.stringValue != external {
                    problem = "the backfill is for external customer \(external)"
                } else if let id = b.customerID, e["customer_id"]?.stringValue != id {
                    problem = "the backfill is for customer \(id)"
                }
            } else if let grace = gracePeriod, ts < at.addingTimeInterval(-grace) {
                problem = "timestamp is older than the grace period; ingest it through a backfill"
            }
            if let problem {
                failed.append(
                    .object(["idempotency_key": .string(key), "validation_errors": .array([.string(problem)])]))
                continue
            }
            let quantity = Reply.decimal(e["properties"]?["quantity"]) ?? 0
            valid.append(
                (key, AcceptedUsage(customer: customer, meter: name, timestamp: ts, quantity: quantity, key: key)))
        }
        state.with { s in
            if !s.deprecated.isEmpty {
                for item in valid where s.deprecated.contains(item.key) {
                    failed.append(
                        .object([
                            "idempotency_key": .string(item.key),
                            "validation_errors": .array([
                                .string(
                                    "an event with this idempotency_key was deprecated; it cannot be ingested again")
                            ]),
                        ]))
                }
            }
            if let id = backfill?.id {
                for item in valid where s.keys.insert(item.key).inserted { s.backfills[id]?.pending.append(item.usage) }
            } else {
                for item in valid where s.keys.insert(item.key).inserted { s.usage.append(item.usage) }  // silent dedup
            }
        }
        return Reply.json(200, .object(["validation_failed": .array(failed)]))
    }

    private func json(_ b: Backfill) -> JSONValue {
        .object([
            "id": .string(b.id), "status": .string(b.closed == nil ? "pending" : "reflected"),
            "created_at": .string(RFC3339.format(b.created)),
            "close_time": b.closed.map { .string(RFC3339.format($0)) } ?? .null,
            "timeframe_start": .string(RFC3339.format(b.start)), "timeframe_end": .string(RFC3339.format(b.end)),
            "customer_id": b.customerID.map(JSONValue.string) ?? .null, "events_ingested": .number(Double(b.ingested)),
            "replace_existing_events": .bool(false), "reverted_at": .null, "deprecation_filter": .null,
        ])
    }

    /// `POST /v1/events/backfills` (a timeframe of at most 31 days, optionally for one customer),
    /// `GET /v1/events/backfills/{id}` and `POST /v1/events/backfills/{id}/close`, which makes the
    /// backfill's events count (status `reflected`).
    private func backfills(_ r: EmulatedRequest) -> HTTPResponse {
        let parts = r.path.dropFirst("/v1/events/backfills".count).split(separator: "/").map(String.init)
        if r.method == "POST", parts.isEmpty {
            let key = r.headers["Idempotency-Key"]
            if let key, let id = state.with({ $0.created[key] }), let known = state.with({ $0.backfills[id] }) {
                return Reply.json(200, json(known))
            }
            let body = r.json
            guard let start = body?["timeframe_start"]?.stringValue.flatMap(RFC3339.parse) else {
                return validationError(["body", "timeframe_start"], "field required")
            }
            guard let end = body?["timeframe_end"]?.stringValue.flatMap(RFC3339.parse) else {
                return validationError(["body", "timeframe_end"], "field required")
            }
            guard start < end else {
                return validationError(["body", "timeframe_end"], "timeframe_end must be after timeframe_start")
            }
            guard end.timeIntervalSince(start) <= 31 * 86_400 else {
                return validationError(["body", "timeframe_end"], "a backfill spans at most 31 days")
            }
            let created = now()
            let backfill: Backfill = state.with { s in
                let b = Backfill(
                    id: "bf_emu_\(s.backfills.count + 1)", start: start, end: end,
                    customerID: body?["customer_id"]?.stringValue,
                    externalCustomerID: body?["external_customer_id"]?.stringValue, created: created)
                s.backfills[b.id] = b
                if let key { s.created[key] = b.id }
                return b
            }
            return Reply.json(200, json(backfill))
        }
        guard let id = parts.first, let known = state.with({ $0.backfills[id] }) else {
            return notFound("No backfill with id \(parts.first ?? "")")
        }
        switch (r.method, parts.count == 2 ? parts[1] : nil) {
        case ("GET", nil):
            return Reply.json(200, json(known))
        case ("POST", "close"?):
            let closed = now()
            let b: Backfill = state.with { s in
                guard var b = s.backfills[id] else { return known }
                if b.closed == nil {
                    b.closed = closed
                    b.ingested = b.pending.count
                    s.usage += b.pending
                    b.pending = []
                    s.backfills[id] = b
                }
                return b
            }
            return Reply.json(200, json(b))
        default:
            return notFound("Unrecognized request URL (\(r.method): \(r.path))")
        }
    }

    /// Orb's default limit on amended and deprecated events, per customer.
    static let correctionLimit = (events: 100, days: 100.0)

    /// Whether Orb still amends or deprecates an event at `timestamp`, at `at`. With a grace
    /// period set, an event older than it is refused (the account's own rule). Without one, the
    /// emulator's customers are billed by calendar month (UTC) and the grace period is taken to
    /// last the whole next period: an event before the previous month is refused.
    static func correctable(_ timestamp: Date, at: Date, grace: TimeInterval?) -> Bool {
        if let grace { return timestamp >= at.addingTimeInterval(-grace) }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? calendar.timeZone
        let month = calendar.dateInterval(of: .month, for: at)?.start ?? at
        let previous = calendar.date(byAdding: .month, value: -1, to: month) ?? month
        return timestamp >= previous
    }

    /// `PUT /v1/events/{id}` (amend: the body is the whole new event, with the original's
    /// timestamp and customer) and `PUT /v1/events/{id}/deprecate`. Both refuse an event outside
    /// "the current billing period or the previous one's grace period" (``correctable(_:at:grace:)``)
    /// and a customer's 101st correction in 100 days. Repeating a correction answers as the first
    /// did and counts once.
    private func correct(_ r: EmulatedRequest) -> HTTPResponse {
        let parts = r.path.dropFirst("/v1/events/".count).split(separator: "/").map(String.init)
        guard let id = parts.first.flatMap({ $0.removingPercentEncoding }), parts.count <= 2,
            parts.count == 1 || parts.last == "deprecate"
        else { return notFound("No such endpoint \(r.path)") }
        let deprecating = parts.count == 2
        let at = now()
        return state.with { s -> HTTPResponse in
            guard let index = s.usage.firstIndex(where: { $0.key == id }) else {
                if deprecating && s.deprecated.contains(id) {
                    return Reply.json(200, .object(["deprecated": .string(id)]))
                }
                return notFound("No event with id \(id)")
            }
            let original = s.usage[index]
            if !Self.correctable(original.timestamp, at: at, grace: gracePeriod) {
                return validationError(
                    ["body", "timestamp"],
                    "The event's timestamp is not within the customer's current billing period or the previous period's grace period; use a backfill with replace_existing_events"
                )
            }
            var amended = original
            if !deprecating {
                guard let body = r.json, let name = body["event_name"]?.stringValue,
                    let ts = body["timestamp"]?.stringValue.flatMap(RFC3339.parse), case .object? = body["properties"]
                else { return validationError(["body"], "event_name, properties and timestamp are required") }
                let external = body["external_customer_id"]?.stringValue, orbID = body["customer_id"]?.stringValue
                guard (external == nil) != (orbID == nil) else {
                    return validationError(["body"], "exactly one of customer_id and external_customer_id is required")
                }
                guard ts == original.timestamp else {
                    return validationError(["body", "timestamp"], "the timestamp must match the original event's")
                }
                guard (external ?? orbID.map { String($0.dropFirst("cus_emu_".count)) }) == original.customer else {
                    return validationError(["body"], "the customer must match the original event's")
                }
                amended.meter = name
                amended.quantity = Reply.decimal(body["properties"]?["quantity"]) ?? 0
                if amended == original { return Reply.json(200, .object(["amended": .string(id)])) }
            }
            let recent = (s.corrections[original.customer] ?? []).filter {
                at.timeIntervalSince($0) < Self.correctionLimit.days * 86_400
            }
            guard recent.count < Self.correctionLimit.events else {
                return validationError(
                    ["path", "event_id"],
                    "More than \(Self.correctionLimit.events) events were amended or deprecated for this customer in \(Int(Self.correctionLimit.days)) days; use a backfill with replace_existing_events"
                )
            }
            s.corrections[original.customer] = recent + [at]
            if deprecating {
                s.usage.remove(at: index)
                s.deprecated.insert(id)
                return Reply.json(200, .object(["deprecated": .string(id)]))
            }
            s.usage[index] = amended
            return Reply.json(200, .object(["amended": .string(id)]))
        }
    }

    /// `POST /v1/events/search`: the counted events whose idempotency keys are in `event_ids`,
    /// with timestamps in [timeframe_start, timeframe_end) (default: the last 7 days); none is an
    /// empty `data`.
    private func search(_ r: EmulatedRequest) -> HTTPResponse {
        guard let ids = r.json?["event_ids"]?.arrayValue?.compactMap(\.stringValue) else {
            return validationError(["body", "event_ids"], "field required")
        }
        let at = now()
        let start = r.json?["timeframe_start"]?.stringValue.flatMap(RFC3339.parse) ?? at.addingTimeInterval(-7 * 86_400)
        let end = r.json?["timeframe_end"]?.stringValue.flatMap(RFC3339.parse) ?? at
        let wanted = Set(ids)
        let found = state.with {
            $0.usage.filter { $0.key.map(wanted.contains) == true && $0.timestamp >= start && $0.timestamp < end }
        }
        return Reply.json(
            200,
            .object([
                "data": .array(
                    found.map { u in
                        .object([
                            "id": .string(u.key ?? ""), "customer_id": .string("cus_emu_" + u.customer),
                            "external_customer_id": .string(u.customer),
                            "deprecated": .bool(false), "event_name": .string(u.meter),
                            "properties": .object(["quantity": Reply.number(u.quantity)]),
                            "timestamp": .string(RFC3339.format(u.timestamp)),
                        ])
                    })
            ]))
    }

    private func usage(subscription: String, _ r: EmulatedRequest) -> HTTPResponse {
        guard let start = r.query("timeframe_start").flatMap(RFC3339.parse),
            let end = r.query("timeframe_end").flatMap(RFC3339.parse), start < end
        else {
            return Reply.json(
                400,
                .object([
                    "status": .number(400), "title": .string("Request validation error"),
                    "type": .string("https://docs.withorb.com/reference/error-responses#400-request-validation-errors"),
                ]))
        }
        let daily = r.query("granularity") == "day"
        let mine = state.with { $0.usage }.filter { $0.customer == subscription }
        let metrics = Set(mine.map(\.meter)).sorted()
        // Days are the customer's own (its time zone), as Orb cuts them.
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: timeZones[subscription] ?? "UTC") ?? calendar.timeZone
        let data: [JSONValue] = metrics.map { metric in
            var windows: [(Date, Date)] = []
            if daily {
                var s = calendar.startOfDay(for: start)
                while s < end {
                    let next = calendar.date(byAdding: .day, value: 1, to: s) ?? s.addingTimeInterval(86_400)
                    windows.append((max(s, start), min(next, end)))
                    s = next
                }
            } else {
                windows = [(start, end)]
            }
            let usage: [JSONValue] = windows.map { w in
                let q = mine.filter { $0.meter == metric && $0.timestamp >= w.0 && $0.timestamp < w.1 }.reduce(
                    Decimal(0)
                ) { $0 + $1.quantity }
                return .object([
                    "quantity": Reply.number(q), "timeframe_start": .string(RFC3339.format(w.0)),
                    "timeframe_end": .string(RFC3339.format(w.1)),
                ])
            }
            return .object([
                "billable_metric": .object(["id": .string("bm_\(metric)"), "name": .string(metric)]),
                "usage": .array(usage), "view_mode": .string("periodic"),
            ])
        }
        return Reply.json(200, .object(["data": .array(data)]))
    }
}

extension OrbEmulation {
    /// Orb's documented live-mode ingest limits (orb.md, rate limits): one bucket of requests and
    /// one of events per minute, a request costing its events.
    func rateLimits(for r: EmulatedRequest) -> [EmulatedRateLimit] {
        guard r.method == "POST", r.path == "/v1/ingest" else { return [] }
        let events = Double(r.json?["events"]?.arrayValue?.count ?? 1)
        return [
            EmulatedRateLimit(bucket: "orb.ingest.requests", capacity: 100, perSecond: 100, cost: 1),
            EmulatedRateLimit(bucket: "orb.ingest.events", capacity: 10_000, perSecond: 10_000 / 60, cost: events),
        ]
    }
}

/// Orb's emulation as the emulator registers it, at `/orb/v1`.
public enum EmulatedOrb {
    public static let kind = EmulationKind(
        kind: "orb",
        settings: [
            EmulationSetting(
                name: "grace_hours",
                help: "the account's grace period in hours: older events fail validation outside a backfill"
            ) { value, options in
                guard let hours = Double(value), hours > 0, hours <= 24 * 366 else {
                    throw UsageBillingError(
                        .invalidInput, "orb.grace_hours '\(value)' is out of range",
                        fix: "use the Orb account's grace period in hours, e.g. orb.grace_hours=12")
                }
                options[GracePeriod.self] = GracePeriod(.milliseconds(Int64((hours * 3_600_000).rounded())))
            }
        ],
        adapterSettings: "api_key: orb_REDACTED, requests_per_second: 100000, events_per_minute: 100000000",
        realHosts: ["api.withorb.com": "orb"],
        endpoints: { ["endpoint": "\($0)/orb/v1"] },
        make: {
            [
                OrbEmulation(
                    timeZones: $0.options[TimeZones.self].byCustomer,
                    gracePeriod: $0.options[GracePeriod.self].duration, now: $0.now)
            ]
        })

    /// Per Orb external customer id, the IANA time zone Orb cuts its days in (default UTC).
    public struct TimeZones: EmulationOption, Equatable {
        public var byCustomer: [String: String]
        public init(_ byCustomer: [String: String]) { self.byCustomer = byCustomer }
        public static let defaultValue = TimeZones([:])
    }

    /// The account's grace period: an event older than it fails Orb's validation unless it
    /// comes through a backfill (nil, the default: not checked, as Orb documents no default).
    public struct GracePeriod: EmulationOption, Equatable {
        public var duration: Duration?
        public init(_ duration: Duration?) { self.duration = duration }
        public static let defaultValue = GracePeriod(nil)
    }
}
