import Foundation
import UsageBilling

/// Stripe v1 meter events, meters and event summaries. Dedup as Stripe: a repeated
/// `Idempotency-Key` replays the first answer (`Idempotent-Replayed: true`); a repeated
/// `identifier` under another key is refused with "An event already exists with identifier".
/// Every event name gets a meter (`mtr_emu_<event name>`) the first time it is seen.
final class StripeEmulation: EmulatedProvider {
    let prefix = "stripe"
    private let now: @Sendable () -> Date
    private struct State {
        var usage: [AcceptedUsage] = []; var identifiers: Set<String> = []; var meters: [String] = []
        /// Answers kept by `Idempotency-Key`, with when. Stripe keeps one at least 24 hours and
        /// may prune it after, when a reused key runs as a new request (stripe.md §1.6); the
        /// emulator forgets it at 24 hours, sweeping hourly, so a long run does not keep an
        /// answer for every event it ever took.
        var replies: [String: (response: HTTPResponse, at: Date)] = [:]
        var repliesSwept = Date.distantPast
        static let replyLifetime: TimeInterval = 24 * 3600

        func reply(for key: String, at now: Date) -> HTTPResponse? {
            guard let kept = replies[key], now.timeIntervalSince(kept.at) < Self.replyLifetime else { return nil }
            return kept.response
        }

        mutating func keep(_ response: HTTPResponse, for key: String, at now: Date) {
            replies[key] = (response, now)
            guard now.timeIntervalSince(repliesSwept) >= 3600 else { return }
            repliesSwept = now
            replies = replies.filter { now.timeIntervalSince($0.value.at) < Self.replyLifetime }
        }
        /// v2 stream sessions: token → expiry.
        var sessions: [String: Date] = [:]
        /// v2 meter-event calls in progress, by customer and meter (see `admit`).
        var inProgress: Set<String> = []
        /// Deactivated meters (event name → when): they take no more events.
        var inactive: [String: Date] = [:]
    }
    private let state = Locked(State())
    func reset() {
        let meters = initialMeters
        state.with { $0 = State(); $0.meters = meters }
    }

    /// Whether an event name with no meter gets one (true), or is refused as Stripe does: v2
    /// answers `400 no_meter`, v1 and the stream take it and count nothing (reported later).
    private let autoMeters: Bool
    private let initialMeters: [String]

    /// `meters`: the meters that exist (by event name); nil makes one for every event name seen.
    init(now: @escaping @Sendable () -> Date, meters: [String]? = nil) {
        self.now = now
        self.autoMeters = meters == nil
        self.initialMeters = meters ?? []
        state.with { $0.meters = meters ?? [] }
    }

    func accepted() async -> [AcceptedUsage] { state.with { $0.usage } }

    func injected(status: Int, retryAfter: Bool) -> HTTPResponse {
        status == 429
            ? error(429, "invalid_request_error", "rate_limit", "Request rate limit exceeded.", headers: retryAfter ? ["Retry-After": "1"] : [:])
            : error(status, "api_error", nil, "An unknown error occurred")
    }

    private func error(_ status: Int, _ type: String, _ code: String?, _ message: String, param: String? = nil, headers: HeaderFields = [:]) -> HTTPResponse {
        var e: [String: JSONValue] = ["type": .string(type), "message": .string(message)]
        if let code { e["code"] = .string(code) }
        if let param { e["param"] = .string(param) }
        return Reply.json(status, .object(["error": .object(e)]), headers: headers)
    }

    func handle(_ r: EmulatedRequest) -> HTTPResponse {
        // The meter-events host (v2 stream) authenticates with a session token, not the key.
        if r.path.hasPrefix(StripeEmulation.meterEventsHost) { return stream(r) }
        guard let auth = r.headers["Authorization"], auth.hasPrefix("Bearer sk_") || auth.hasPrefix("Bearer rk_") else {
            return error(401, "invalid_request_error", nil, "You did not provide an API key.")
        }
        switch (r.method, r.path) {
        case ("POST", "/v1/billing/meter_events"): return meterEvent(r)
        case ("POST", "/v2/billing/meter_events"): return meterEventV2(r)
        case ("POST", "/v2/billing/meter_event_session"): return session(r)
        case ("POST", "/v1/billing/meters"):
            let f = r.form
            guard let name = f["event_name"], !name.isEmpty, let display = f["display_name"], !display.isEmpty else {
                return error(400, "invalid_request_error", "parameter_missing", "Missing required param: display_name or event_name.", param: "event_name")
            }
            guard state.with({ s in s.meters.contains(name) ? false : { s.meters.append(name); return true }() }) else {
                return error(400, "invalid_request_error", nil, "An active meter with event_name \(name) already exists.", param: "event_name")
            }
            return Reply.json(200, meter(name))
        case ("GET", "/v1/billing/meters"):
            let (names, inactive) = state.with { ($0.meters, $0.inactive) }
            let wanted = r.query("status")
            let data = names.filter { wanted == nil || (inactive[$0] == nil ? "active" : "inactive") == wanted }.map { meter($0, deactivated: inactive[$0]) }
            return Reply.json(200, .object(["object": .string("list"), "data": .array(data), "has_more": .bool(false), "url": .string("/v1/billing/meters")]))
        case ("GET", _) where r.path.hasPrefix("/v1/billing/meters/") && r.path.hasSuffix("/event_summaries"):
            return summaries(meterID: String(r.path.dropFirst("/v1/billing/meters/".count).dropLast("/event_summaries".count)), r)
        case ("POST", "/v1/billing/meter_event_adjustments"): return adjustment(r, v2: false)
        case ("POST", "/v2/billing/meter_event_adjustments"): return adjustment(r, v2: true)
        case (_, _) where r.path.hasPrefix("/v1/billing/meters/mtr_emu_"):
            return meterLifecycle(r)
        default:
            return error(404, "invalid_request_error", "resource_missing", "Unrecognized request URL (\(r.method): \(r.path)).")
        }
    }

    private func meterEvent(_ r: EmulatedRequest) -> HTTPResponse {
        let key = r.headers["Idempotency-Key"]
        let received = now()
        if let key, let replay = state.with({ $0.reply(for: key, at: received) }) {
            var h = replay.headers
            h["Idempotent-Replayed"] = "true"
            return HTTPResponse(status: replay.status, headers: h, body: replay.body)
        }
        let f = r.form
        guard let name = f["event_name"], !name.isEmpty else {
            return error(400, "invalid_request_error", "parameter_missing", "Missing required param: event_name.", param: "event_name")
        }
        guard let customer = f["payload[stripe_customer_id]"], let value = f["payload[value]"].flatMap(DecimalFormat.parse) else {
            return error(400, "invalid_request_error", "parameter_missing", "Missing required param: payload[stripe_customer_id] or payload[value].", param: "payload")
        }
        let identifier = f["identifier"] ?? UUID().uuidString
        let timestamp = f["timestamp"].flatMap(Double.init) ?? received.timeIntervalSince1970
        // The answer is built outside the lock; recording it and keeping it for its key is one
        // locked step (event-loop threads share this state).
        let accepted = Reply.json(200, encoded: JSONValue.encodeObject([  // members in key order: written as they are
            ("created", .number(received.timeIntervalSince1970.rounded(.down))), ("event_name", .string(name)),
            ("identifier", .string(identifier)), ("livemode", .bool(false)), ("object", .string("billing.meter_event")),
            ("payload", .object(["stripe_customer_id": .string(customer), "value": .string(DecimalFormat.plain(value))])),
            ("timestamp", .number(timestamp.rounded(.down))),
        ]).data)
        return state.with { s in
            if let key, let replay = s.reply(for: key, at: received) {  // the same key raced in on another connection
                var h = replay.headers
                h["Idempotent-Replayed"] = "true"
                return HTTPResponse(status: replay.status, headers: h, body: replay.body)
            }
            let response = Self.record(name: name, identifier: identifier, customer: customer, value: value, at: Date(timeIntervalSince1970: timestamp),
                                       received: received, autoMeters: autoMeters, in: &s)
                ? accepted
                : error(400, "invalid_request_error", nil, "An event already exists with identifier \(identifier).", headers: ["Stripe-Should-Retry": "false"])
            if let key { s.keep(response, for: key, at: received) }
            return response
        }
    }

    /// Paths of the meter-events host (`meter-events.stripe.com`) arrive under this prefix.
    static let meterEventsHost = "/meter-events"

    /// Records one v2 event (a JSON object); nil when its identifier was seen before.
    private typealias Accepted = (name: String, identifier: String, customer: String, value: Decimal, at: Date)

    private func accept(_ e: JSONValue) -> Result<Accepted?, Refusal> {
        read(e).map { a in
            let received = now()
            return state.with { s in Self.record(name: a.name, identifier: a.identifier, customer: a.customer, value: a.value, at: a.at, received: received, autoMeters: autoMeters, in: &s) ? a : nil }
        }
    }

    /// One v2 event's fields, or the refusal Stripe answers for it.
    private func read(_ e: JSONValue) -> Result<Accepted, Refusal> {
        guard let name = e["event_name"]?.stringValue, !name.isEmpty else {
            return .failure(Refusal(response: v2Error(400, "invalid_request_error", "parameter_missing", "event_name is required.")))
        }
        guard let customer = e["payload"]?["stripe_customer_id"]?.stringValue else {
            return .failure(Refusal(response: v2Error(400, "invalid_request_error", "payload_no_customer_defined",
                                                      "The payload has no value for the meter's customer mapping key 'stripe_customer_id'.")))
        }
        guard let text = e["payload"]?["value"]?.stringValue else {
            return .failure(Refusal(response: v2Error(400, "invalid_request_error", "payload_no_value_defined",
                                                      "The payload has no value for the meter's value key 'value'.")))
        }
        guard let value = DecimalFormat.parse(text) else {
            return .failure(Refusal(response: v2Error(400, "invalid_request_error", "payload_invalid_value", "The value for payload key 'value' must be a positive integer.")))
        }
        let identifier = e["identifier"]?.stringValue ?? UUID().uuidString
        let at = e["timestamp"]?.stringValue.flatMap(RFC3339.parse) ?? now()
        return .success((name, identifier, customer, value, at))
    }

    /// Adds an event to the ledger (and its meter, the first time); false when its identifier
    /// was seen before, on any API.
    /// An event for a deactivated meter is taken (true) and not counted: Stripe reports it later.
    private static func record(name: String, identifier: String, customer: String, value: Decimal, at: Date, received: Date,
                               autoMeters: Bool, in s: inout State) -> Bool {
        guard s.identifiers.insert(identifier).inserted else { return false }
        if !s.meters.contains(name) {
            guard autoMeters else { return true }  // no meter: taken, counted nowhere (Stripe reports no_meter later)
            s.meters.append(name)
        }
        guard s.inactive.isEmpty || s.inactive[name] == nil else { return true }
        s.usage.append(AcceptedUsage(customer: customer, meter: name, timestamp: at, quantity: value, key: identifier, receivedAt: received))
        return true
    }

    /// v2 `POST /v2/billing/meter_events` takes one call at a time per customer and meter
    /// (stripe.md §1.9): a second one while the first is in progress (an injected delay stands
    /// for Stripe's processing time) is `409 too_many_concurrent_requests`
    /// (`v2.error.too_many_concurrent_requests`; body as the conformance fixture has it).
    func admit(_ r: inout EmulatedRequest) -> Admission {
        guard r.method == "POST", r.path == "/v2/billing/meter_events" else { return .admitted(token: nil) }
        r.parsedJSON = .some(r.json)  // the handler reads the same body: parse it once
        guard let body = r.json, let customer = body["payload"]?["stripe_customer_id"]?.stringValue, let name = body["event_name"]?.stringValue else {
            return .admitted(token: nil)
        }
        let key = customer + "\u{1F}" + name
        guard state.with({ $0.inProgress.insert(key).inserted }) else {
            return .refused(v2Error(409, "invalid_request_error", "too_many_concurrent_requests", "Too many concurrent requests for this customer and meter."))
        }
        return .admitted(token: key)
    }

    func finish(_ token: String) { state.with { _ = $0.inProgress.remove(token) } }

    private func v2Error(_ status: Int, _ type: String, _ code: String, _ message: String) -> HTTPResponse {
        Reply.json(status, .object(["error": .object(["type": .string(type), "code": .string(code), "message": .string(message)])]))
    }

    /// `POST /v2/billing/meter_events`: one event, validated at once; a reused identifier is
    /// `400 duplicate_meter_event`, as Stripe answers it.
    private func meterEventV2(_ r: EmulatedRequest) -> HTTPResponse {
        let key = r.headers["Idempotency-Key"]
        let received = now()
        if let key, let replay = state.with({ $0.reply(for: key, at: received) }) { return replay }
        guard let body = r.json, case .object = body else { return v2Error(400, "invalid_request_error", "invalid_json", "The body is not a JSON object.") }
        if !autoMeters, let name = body["event_name"]?.stringValue, !state.with({ $0.meters.contains(name) }) {
            return v2Error(400, "invalid_request_error", "no_meter", "No active meter was found for event_name '\(name)'.")
        }
        if let name = body["event_name"]?.stringValue, state.with({ $0.inactive[name] != nil }) {
            return v2Error(400, "invalid_request_error", "archived_meter", "The meter for event_name \(name) is inactive; reactivate it to send events.")
        }
        // v2 checks the value at once (the stream and v1 report a bad one later, asynchronously).
        if let text = body["payload"]?["value"]?.stringValue, let value = DecimalFormat.parse(text), !DecimalFormat.isWhole(value) {
            return v2Error(400, "invalid_request_error", "payload_invalid_value", "The value for payload key 'value' must be a positive integer.")
        }
        let response: HTTPResponse
        switch accept(body) {
        case .failure(let refusal): return refusal.response
        case .success(nil):
            let id = body["identifier"]?.stringValue ?? ""
            response = v2Error(400, "invalid_request_error", "duplicate_meter_event", "An event with identifier \(id) was already submitted.")
        case .success(let e?):
            response = Reply.json(200, .object([
                "object": .string("v2.billing.meter_event"), "created": .string(RFC3339.format(now(), fractional: true)), "event_name": .string(e.name),
                "identifier": .string(e.identifier), "livemode": .bool(false),
                "payload": .object(["stripe_customer_id": .string(e.customer), "value": .string(DecimalFormat.plain(e.value))]),
                "timestamp": .string(RFC3339.format(e.at, fractional: true)),
            ]))
        }
        if let key { state.with { $0.keep(response, for: key, at: received) } }
        return response
    }

    /// `POST /v2/billing/meter_event_session`: a token for the stream, valid 15 minutes.
    private func session(_ r: EmulatedRequest) -> HTTPResponse {
        let created = now()
        let expires = created.addingTimeInterval(15 * 60)
        let token: String = state.with { s in
            let t = "mes_tok_emu_\(s.sessions.count + 1)"
            s.sessions[t] = expires
            return t
        }
        return Reply.json(200, .object([
            "object": .string("v2.billing.meter_event_session"), "id": .string("mtr_sess_emu_\(token.dropFirst("mes_tok_emu_".count))"),
            "authentication_token": .string(token), "created": .string(RFC3339.format(created, fractional: true)),
            "expires_at": .string(RFC3339.format(expires, fractional: true)), "livemode": .bool(false),
        ]))
    }

    /// `POST /v2/billing/meter_event_stream` on the meter-events host: up to 100 events with a
    /// session token; an unknown or expired token is `401 billing_meter_event_session_expired`.
    /// Stripe checks events later and reports problems asynchronously, so a reused identifier is
    /// dropped silently here and the answer is `200 {}`.
    private func stream(_ r: EmulatedRequest) -> HTTPResponse {
        guard r.method == "POST", r.path == StripeEmulation.meterEventsHost + "/v2/billing/meter_event_stream" else {
            return v2Error(404, "invalid_request_error", "not_found", "Unrecognized request URL (\(r.method): \(r.path.dropFirst(StripeEmulation.meterEventsHost.count))).")
        }
        let token = r.headers["Authorization"].map { String($0.dropFirst("Bearer ".count)) } ?? ""
        guard let expiry = state.with({ $0.sessions[token] }), expiry > now() else {
            return Reply.json(401, .object(["error": .object([
                "type": .string("temporary_session_expired"), "code": .string("billing_meter_event_session_expired"),
                "message": .string("The meter event session has expired. Create a new session."),
                "doc_url": .string("https://docs.stripe.com/api/v2/billing-meter-stream"),
            ])]))
        }
        guard let events = r.json?["events"]?.arrayValue, !events.isEmpty else {
            return v2Error(400, "invalid_request_error", "parameter_missing", "events is required.")
        }
        guard events.count <= 100 else {
            return v2Error(400, "invalid_request_error", "too_many_events", "A stream request takes at most 100 events; this one has \(events.count).")
        }
        // Every event is read before any is recorded (one refused event refuses the request), and
        // the batch is recorded under one lock, which concurrent requests share.
        var batch: [Accepted] = []
        batch.reserveCapacity(events.count)
        for e in events {
            switch read(e) {
            case .failure(let refusal): return refusal.response
            case .success(let a): batch.append(a)
            }
        }
        let received = now()
        state.with { s in
            for a in batch { _ = Self.record(name: a.name, identifier: a.identifier, customer: a.customer, value: a.value, at: a.at, received: received, autoMeters: autoMeters, in: &s) }
        }
        return Reply.json(200, .object([:]))
    }

    private func meter(_ name: String, deactivated: Date? = nil) -> JSONValue {
        .object([
            "id": .string("mtr_emu_\(name)"), "object": .string("billing.meter"), "created": .number(0), "updated": .number(0),
            "customer_mapping": .object(["event_payload_key": .string("stripe_customer_id"), "type": .string("by_id")]),
            "default_aggregation": .object(["formula": .string("sum")]), "display_name": .string(name), "event_name": .string(name),
            "event_time_window": .null, "livemode": .bool(false), "status": .string(deactivated == nil ? "active" : "inactive"),
            "status_transitions": .object(["deactivated_at": deactivated.map { .number($0.timeIntervalSince1970.rounded(.down)) } ?? .null]),
            "value_settings": .object(["event_payload_key": .string("value")]),
        ])
    }

    /// `GET /v1/billing/meters/{id}`, `POST …/deactivate` and `POST …/reactivate`. A deactivated
    /// meter takes no more events: v2 refuses them with `400 archived_meter`; v1 and the stream,
    /// which Stripe checks after answering, accept the request and count nothing (Stripe reports
    /// `archived_meter` later, in a meter error report).
    private func meterLifecycle(_ r: EmulatedRequest) -> HTTPResponse {
        let rest = r.path.dropFirst("/v1/billing/meters/mtr_emu_".count).split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard let name = rest.first?.removingPercentEncoding, state.with({ $0.meters.contains(name) }) else {
            return error(404, "invalid_request_error", "resource_missing", "No such billing meter: '\(r.path.dropFirst("/v1/billing/meters/".count).split(separator: "/").first ?? "")'", param: "id")
        }
        switch (r.method, rest.count == 2 ? rest[1] : nil) {
        case ("GET", nil): break
        case ("POST", "deactivate"?): state.with { s in if s.inactive[name] == nil { s.inactive[name] = now() } }
        case ("POST", "reactivate"?): state.with { _ = $0.inactive.removeValue(forKey: name) }
        default: return error(404, "invalid_request_error", "resource_missing", "Unrecognized request URL (\(r.method): \(r.path)).")
        }
        return Reply.json(200, meter(name, deactivated: state.with { $0.inactive[name] }))
    }

    /// `POST /v1/billing/meter_event_adjustments` (form) and `POST /v2/billing/meter_event_adjustments`
    /// (JSON): cancel one event by identifier. Stripe answers `pending` and applies it later (an
    /// identifier it does not hold is reported asynchronously); here an event of that name received
    /// within the last 24 hours leaves the ledger at once, so summaries stop counting it.
    private func adjustment(_ r: EmulatedRequest, v2: Bool) -> HTTPResponse {
        let name: String?, type: String?, identifier: String?
        if v2 {
            let body = r.json
            (name, type, identifier) = (body?["event_name"]?.stringValue, body?["type"]?.stringValue, body?["cancel"]?["identifier"]?.stringValue)
        } else {
            let f = r.form
            (name, type, identifier) = (f["event_name"], f["type"], f["cancel[identifier]"])
        }
        guard let name, !name.isEmpty, name.count <= 100 else {
            return v2 ? v2Error(400, "invalid_request_error", "invalid_cancel_configuration", "event_name is required.")
                      : error(400, "invalid_request_error", "parameter_missing", "Missing required param: event_name.", param: "event_name")
        }
        guard type == "cancel", let identifier, !identifier.isEmpty, identifier.count <= 100 else {
            return v2 ? v2Error(400, "invalid_request_error", "invalid_cancel_configuration", "type must be cancel, with cancel.identifier.")
                      : error(400, "invalid_request_error", "parameter_missing", "Missing required param: type (cancel) and cancel[identifier].", param: "cancel[identifier]")
        }
        let at = now()
        state.with { s in
            if let i = s.usage.lastIndex(where: { $0.key == identifier && $0.meter == name }),
               let received = s.usage[i].receivedAt, at.timeIntervalSince(received) <= 86_400 {
                s.usage.remove(at: i)
            }
        }
        var reply: [String: JSONValue] = [
            "object": .string(v2 ? "v2.billing.meter_event_adjustment" : "billing.meter_event_adjustment"), "event_name": .string(name),
            "livemode": .bool(false), "status": .string("pending"), "type": .string("cancel"), "cancel": .object(["identifier": .string(identifier)]),
        ]
        if v2 {
            reply["id"] = .string("mtr_event_adj_emu_" + EventID.derived(from: [name, identifier]).suffix(16))
            reply["created"] = .string(RFC3339.format(at, fractional: true))
        }
        return Reply.json(200, .object(reply))
    }

    private func summaries(meterID: String, _ r: EmulatedRequest) -> HTTPResponse {
        let name = String(meterID.dropFirst("mtr_emu_".count))
        guard meterID.hasPrefix("mtr_emu_"), state.with({ $0.meters.contains(name) }) else {
            return error(404, "invalid_request_error", "resource_missing", "No such billing meter: '\(meterID)'", param: "id")
        }
        guard let customer = r.query("customer"), let start = r.query("start_time").flatMap(Int.init), let end = r.query("end_time").flatMap(Int.init) else {
            return error(400, "invalid_request_error", "parameter_missing", "Missing required param: customer, start_time or end_time.")
        }
        let step: Int? = switch r.query("value_grouping_window") { case "hour": 3600; case "day": 86_400; default: nil }
        var buckets: [(Int, Int)] = []
        if let step { var s = start; while s < end { buckets.append((s, min(s + step, end))); s += step } } else { buckets = [(start, end)] }
        let mine = state.with { $0.usage }.filter { $0.meter == name && $0.customer == customer }
        let data: [JSONValue] = buckets.reversed().map { b in
            let total = mine.filter { Int($0.timestamp.timeIntervalSince1970) >= b.0 && Int($0.timestamp.timeIntervalSince1970) < b.1 }.reduce(Decimal(0)) { $0 + $1.quantity }
            return .object(["id": .string("mtrusg_emu_\(b.0)"), "object": .string("billing.meter_event_summary"), "aggregated_value": Reply.number(total),
                            "start_time": .number(Double(b.0)), "end_time": .number(Double(b.1)), "livemode": .bool(false), "meter": .string(meterID)])
        }
        // Pages as Stripe's lists do: newest first, `limit` (default 10) per page, `starting_after` an id.
        let limit = r.query("limit").flatMap(Int.init).map { min(100, max(1, $0)) } ?? 10
        let after = r.query("starting_after").flatMap { id in data.firstIndex { $0["id"]?.stringValue == id } }.map { $0 + 1 } ?? 0
        let page = Array(data.dropFirst(after).prefix(limit))
        return Reply.json(200, .object(["object": .string("list"), "data": .array(page), "has_more": .bool(after + page.count < data.count),
                                        "url": .string("/v1/billing/meters/\(meterID)/event_summaries")]))
    }
}

/// Orb `POST /v1/ingest` (dedup by `idempotency_key`, silently: a repeat answers the same 200),
/// backfills (`POST /v1/events/backfills`, ingest with `backfill_id`, `…/close`), `POST
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

    init(timeZones: [String: String] = [:], gracePeriod: Duration? = nil, now: @escaping @Sendable () -> Date = { Date() }) {
        self.timeZones = timeZones
        self.gracePeriod = gracePeriod?.seconds
        self.now = now
    }

    func accepted() async -> [AcceptedUsage] { state.with { $0.usage } }

    func injected(status: Int, retryAfter: Bool) -> HTTPResponse {
        let title = status == 429 ? "Too many requests" : "Internal server error"
        return Reply.json(status, .object(["type": .string("https://docs.withorb.com/reference/error-responses#\(status)"), "status": .number(Double(status)),
                                           "title": .string(title)]), headers: status == 429 && retryAfter ? ["Retry-After": "1"] : [:])
    }

    func handle(_ r: EmulatedRequest) -> HTTPResponse {
        guard r.headers["Authorization"]?.hasPrefix("Bearer ") == true else {
            return Reply.json(401, .object(["type": .string("https://docs.withorb.com/reference/error-responses#401-authentication-error"), "status": .number(401),
                                            "title": .string("Authentication error"), "detail": .string("Missing or invalid API key")]))
        }
        if r.method == "POST" && r.path == "/v1/ingest" { return ingest(r) }
        if r.method == "POST" && r.path == "/v1/events/search" { return search(r) }
        if r.path == "/v1/events/backfills" || r.path.hasPrefix("/v1/events/backfills/") { return backfills(r) }
        if r.method == "GET", r.path.hasPrefix("/v1/customers/external_customer_id/") {
            let external = String(r.path.dropFirst("/v1/customers/external_customer_id/".count)).removingPercentEncoding ?? ""
            return Reply.json(200, .object(["id": .string("cus_emu_" + external), "external_customer_id": .string(external),
                                            "timezone": .string(timeZones[external] ?? "Etc/UTC"), "currency": .string("USD")]))
        }
        if r.method == "GET", r.path.hasPrefix("/v1/customers/"), !r.path.dropFirst("/v1/customers/".count).contains("/") {
            // By Orb's own id (events sent with customer_id): time zones are keyed by the id events carry.
            let id = String(r.path.dropFirst("/v1/customers/".count)).removingPercentEncoding ?? ""
            return Reply.json(200, .object(["id": .string(id), "external_customer_id": .null,
                                            "timezone": .string(timeZones[id] ?? "Etc/UTC"), "currency": .string("USD")]))
        }
        if r.method == "GET", r.path == "/v1/subscriptions" {
            // One running subscription per customer asked for, `sub_emu_<customer id>`.
            let customers = ["external_customer_id[]", "external_customer_id", "customer_id[]", "customer_id"].flatMap { r.queryAll($0) }
            let data: [JSONValue] = customers.map { c in
                .object(["id": .string("sub_emu_" + c), "status": .string("active"), "start_date": .string("2000-01-01T00:00:00Z"), "end_date": .null,
                         "customer": .object(["id": .string("cus_emu_" + c), "external_customer_id": .string(c)])])
            }
            return Reply.json(200, .object(["data": .array(data), "pagination_metadata": .object(["has_more": .bool(false), "next_cursor": .null])]))
        }
        if r.method == "GET", r.path.hasPrefix("/v1/subscriptions/"), r.path.hasSuffix("/usage") {
            let id = String(r.path.dropFirst("/v1/subscriptions/".count).dropLast("/usage".count)).removingPercentEncoding ?? ""
            return usage(subscription: id.hasPrefix("sub_emu_") ? String(id.dropFirst("sub_emu_".count)) : id, r)
        }
        return Reply.json(404, .object(["status": .number(404), "title": .string("Not found"), "type": .string("https://docs.withorb.com/reference/error-responses#404-not-found")]))
    }

    private func validationError(_ loc: [String], _ message: String, status: Int = 400) -> HTTPResponse {
        Reply.json(status, .object(["status": .number(Double(status)), "title": .string("Request validation error"),
                                    "type": .string("https://docs.withorb.com/reference/error-responses#400-request-validation-errors"),
                                    "validation_errors": .array([.object(["loc": .array(loc.map(JSONValue.string)), "msg": .string(message)])])]))
    }

    private func notFound(_ detail: String) -> HTTPResponse {
        Reply.json(404, .object(["status": .number(404), "title": .string("Not found"), "detail": .string(detail),
                                 "type": .string("https://docs.withorb.com/reference/error-responses#404-not-found")]))
    }

    /// Ingest: each event is checked (required fields; at most 5 minutes ahead; within the grace
    /// period, when one is set, unless it comes through a backfill, and then within the backfill's
    /// timeframe and customer); failures are listed in `validation_failed` and the rest taken.
    /// Events sent to a backfill count when it is closed.
    private func ingest(_ r: EmulatedRequest) -> HTTPResponse {
        guard let events = r.json?["events"]?.arrayValue else { return validationError(["body", "events"], "field required") }
        let at = now()
        var backfill: Backfill?
        if let id = r.query("backfill_id") {
            guard let known = state.with({ $0.backfills[id] }) else { return notFound("No backfill with id \(id)") }
            guard known.closed == nil else { return validationError(["query", "backfill_id"], "Backfill \(id) is closed; create a new backfill") }
            backfill = known
        }
        var failed: [JSONValue] = []
        var valid: [(key: String, usage: AcceptedUsage)] = []  // read outside the lock, which concurrent requests share
        valid.reserveCapacity(events.count)
        for e in events {
            guard let key = e["idempotency_key"]?.stringValue, let name = e["event_name"]?.stringValue,
                  let customer = e["external_customer_id"]?.stringValue ?? e["customer_id"]?.stringValue,
                  let ts = e["timestamp"]?.stringValue.flatMap(RFC3339.parse) else {
                failed.append(.object(["idempotency_key": e["idempotency_key"] ?? .null, "validation_errors": .array([.string("event is missing a required field")])]))
                continue
            }
            var problem: String?
            if ts > at.addingTimeInterval(300) {
                problem = "timestamp is more than 5 minutes in the future"
            } else if let b = backfill {
                if ts < b.start || ts >= b.end {
                    problem = "timestamp is outside the backfill's timeframe [\(RFC3339.format(b.start)), \(RFC3339.format(b.end)))"
                } else if let external = b.externalCustomerID, e["external_customer_id"]?.stringValue != external {
                    problem = "the backfill is for external customer \(external)"
                } else if let id = b.customerID, e["customer_id"]?.stringValue != id {
                    problem = "the backfill is for customer \(id)"
                }
            } else if let grace = gracePeriod, ts < at.addingTimeInterval(-grace) {
                problem = "timestamp is older than the grace period; ingest it through a backfill"
            }
            if let problem {
                failed.append(.object(["idempotency_key": .string(key), "validation_errors": .array([.string(problem)])]))
                continue
            }
            let quantity = Reply.decimal(e["properties"]?["quantity"]) ?? 0
            valid.append((key, AcceptedUsage(customer: customer, meter: name, timestamp: ts, quantity: quantity, key: key)))
        }
        state.with { s in
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
            "created_at": .string(RFC3339.format(b.created)), "close_time": b.closed.map { .string(RFC3339.format($0)) } ?? .null,
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
            if let key, let id = state.with({ $0.created[key] }), let known = state.with({ $0.backfills[id] }) { return Reply.json(200, json(known)) }
            let body = r.json
            guard let start = body?["timeframe_start"]?.stringValue.flatMap(RFC3339.parse) else { return validationError(["body", "timeframe_start"], "field required") }
            guard let end = body?["timeframe_end"]?.stringValue.flatMap(RFC3339.parse) else { return validationError(["body", "timeframe_end"], "field required") }
            guard start < end else { return validationError(["body", "timeframe_end"], "timeframe_end must be after timeframe_start") }
            guard end.timeIntervalSince(start) <= 31 * 86_400 else { return validationError(["body", "timeframe_end"], "a backfill spans at most 31 days") }
            let created = now()
            let backfill: Backfill = state.with { s in
                let b = Backfill(id: "bf_emu_\(s.backfills.count + 1)", start: start, end: end, customerID: body?["customer_id"]?.stringValue,
                                 externalCustomerID: body?["external_customer_id"]?.stringValue, created: created)
                s.backfills[b.id] = b
                if let key { s.created[key] = b.id }
                return b
            }
            return Reply.json(200, json(backfill))
        }
        guard let id = parts.first, let known = state.with({ $0.backfills[id] }) else { return notFound("No backfill with id \(parts.first ?? "")") }
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

    /// `POST /v1/events/search`: the counted events whose idempotency keys are in `event_ids`,
    /// with timestamps in [timeframe_start, timeframe_end) (default: the last 7 days); none is an
    /// empty `data`.
    private func search(_ r: EmulatedRequest) -> HTTPResponse {
        guard let ids = r.json?["event_ids"]?.arrayValue?.compactMap(\.stringValue) else { return validationError(["body", "event_ids"], "field required") }
        let at = now()
        let start = r.json?["timeframe_start"]?.stringValue.flatMap(RFC3339.parse) ?? at.addingTimeInterval(-7 * 86_400)
        let end = r.json?["timeframe_end"]?.stringValue.flatMap(RFC3339.parse) ?? at
        let wanted = Set(ids)
        let found = state.with { $0.usage.filter { $0.key.map(wanted.contains) == true && $0.timestamp >= start && $0.timestamp < end } }
        return Reply.json(200, .object(["data": .array(found.map { u in
            .object(["id": .string(u.key ?? ""), "customer_id": .string("cus_emu_" + u.customer), "external_customer_id": .string(u.customer),
                     "deprecated": .bool(false), "event_name": .string(u.meter), "properties": .object(["quantity": Reply.number(u.quantity)]),
                     "timestamp": .string(RFC3339.format(u.timestamp))])
        })]))
    }

    private func usage(subscription: String, _ r: EmulatedRequest) -> HTTPResponse {
        guard let start = r.query("timeframe_start").flatMap(RFC3339.parse), let end = r.query("timeframe_end").flatMap(RFC3339.parse), start < end else {
            return Reply.json(400, .object(["status": .number(400), "title": .string("Request validation error"), "type": .string("https://docs.withorb.com/reference/error-responses#400-request-validation-errors")]))
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
                let q = mine.filter { $0.meter == metric && $0.timestamp >= w.0 && $0.timestamp < w.1 }.reduce(Decimal(0)) { $0 + $1.quantity }
                return .object(["quantity": Reply.number(q), "timeframe_start": .string(RFC3339.format(w.0)), "timeframe_end": .string(RFC3339.format(w.1))])
            }
            return .object(["billable_metric": .object(["id": .string("bm_\(metric)"), "name": .string(metric)]), "usage": .array(usage), "view_mode": .string("periodic")])
        }
        return Reply.json(200, .object(["data": .array(data)]))
    }
}

/// Metronome `POST /v1/ingest` (a bare array; dedup by `transaction_id` for 34 days, silently)
/// and `POST /v1/usage` (per customer and billable metric = event type, summing the event
/// type's value property, in day or hour windows).
final class MetronomeEmulation: EmulatedProvider {
    let prefix = "metronome"
    private let valueProperties: MeterValueProperties
    private struct State { var usage: [AcceptedUsage] = []; var keys: Set<String> = [] }
    private let state = Locked(State())
    func reset() { state.with { $0 = State() } }

    init(valueProperties: MeterValueProperties) { self.valueProperties = valueProperties }

    func accepted() async -> [AcceptedUsage] { state.with { $0.usage } }

    func injected(status: Int, retryAfter: Bool) -> HTTPResponse {
        var h: HeaderFields = status == 429 ? ["X-Metronome-Rate-Limit-Type": "client"] : [:]
        if status == 429 && retryAfter { h["Retry-After"] = "1" }
        return Reply.json(status, .object(["message": .string(status == 429 ? "Too many requests" : "Internal server error")]), headers: h)
    }

    func handle(_ r: EmulatedRequest) -> HTTPResponse {
        guard r.headers["Authorization"]?.hasPrefix("Bearer ") == true else { return Reply.json(401, .object(["message": .string("Unauthorized")])) }
        switch (r.method, r.path) {
        case ("POST", "/v1/ingest"):
            guard let events = r.json?.arrayValue, (1...100).contains(events.count) else {
                return Reply.json(400, .object(["message": .string("body must be an array of 1 to 100 events")]))
            }
            var valid: [AcceptedUsage] = []
            valid.reserveCapacity(events.count)
            for (i, e) in events.enumerated() {
                guard let key = e["transaction_id"]?.stringValue, let customer = e["customer_id"]?.stringValue, let type = e["event_type"]?.stringValue,
                      let at = e["timestamp"]?.stringValue.flatMap(RFC3339.parse) else {
                    return Reply.json(400, .object(["message": .string("body/\(i) must have transaction_id, customer_id, event_type and an RFC 3339 timestamp")]))
                }
                valid.append(AcceptedUsage(customer: customer, meter: type, timestamp: at,
                                           quantity: Reply.decimal(e["properties"]?[valueProperties.property(for: type, default: "quantity")]) ?? 0, key: key))
            }
            state.with { s in
                for usage in valid where s.keys.insert(usage.key ?? "").inserted { s.usage.append(usage) }  // a repeat: silently the same 200
            }
            return Reply.empty(200)
        case ("POST", "/v1/usage"):
            let body = r.json
            guard let start = body?["starting_on"]?.stringValue.flatMap(RFC3339.parse), let end = body?["ending_before"]?.stringValue.flatMap(RFC3339.parse) else {
                return Reply.json(400, .object(["message": .string("starting_on and ending_before are required")]))
            }
            let step: TimeInterval = body?["window_size"]?.stringValue == "hour" ? 3600 : 86_400
            let customers = body?["customer_ids"]?.arrayValue?.compactMap(\.stringValue)
            let usage = state.with { $0.usage }.filter { customers == nil || customers?.contains($0.customer) == true }
            var rows: [JSONValue] = []
            for customer in Set(usage.map(\.customer)).sorted() {
                for metric in Set(usage.filter { $0.customer == customer }.map(\.meter)).sorted() {
                    var s = start
                    while s < end {
                        let e = s.addingTimeInterval(step)
                        let items = usage.filter { $0.customer == customer && $0.meter == metric && $0.timestamp >= s && $0.timestamp < e }
                        rows.append(.object(["customer_id": .string(customer), "billable_metric_id": .string("bm_\(metric)"), "billable_metric_name": .string(metric),
                                             "start_timestamp": .string(RFC3339.format(s)), "end_timestamp": .string(RFC3339.format(e)),
                                             "value": items.isEmpty ? .null : Reply.number(items.reduce(Decimal(0)) { $0 + $1.quantity })]))
                        s = e
                    }
                }
            }
            // Pages of `limit` rows (default 100) with an opaque `next_page` cursor, as Metronome's.
            let limit = r.query("limit").flatMap(Int.init).map { min(100, max(1, $0)) } ?? 100
            let offset = r.query("next_page").flatMap { Int($0.dropFirst("emu-".count)) } ?? 0
            let page = Array(rows.dropFirst(offset).prefix(limit))
            let next: JSONValue = offset + page.count < rows.count ? .string("emu-\(offset + page.count)") : .null
            return Reply.json(200, .object(["data": .array(page), "next_page": next]))
        default:
            return Reply.json(404, .object(["message": .string("Not found")]))
        }
    }
}

/// OpenMeter `POST /api/v1/events` (CloudEvents, single or batch; dedup by (source, id),
/// silently; 204) and `GET /api/v1/meters/{slug}/query` (meter slug = event type, summing the
/// type's value property, default `value`).
final class OpenMeterEmulation: EmulatedProvider {
    let prefix = "openmeter"
    private let valueProperties: MeterValueProperties
    private struct State { var usage: [AcceptedUsage] = []; var keys: Set<String> = [] }
    private let state = Locked(State())
    func reset() { state.with { $0 = State() } }

    init(valueProperties: MeterValueProperties) { self.valueProperties = valueProperties }

    func accepted() async -> [AcceptedUsage] { state.with { $0.usage } }

    private func problem(_ status: Int, _ title: String, _ detail: String, headers: HeaderFields = [:]) -> HTTPResponse {
        var h = headers
        h["Content-Type"] = "application/problem+json"
        return HTTPResponse(status: status, headers: h, body: JSONValue.object([
            "type": .string("about:blank"), "title": .string(title), "status": .number(Double(status)), "detail": .string(detail),
        ]).encoded())
    }

    func injected(status: Int, retryAfter: Bool) -> HTTPResponse {
        problem(status, status == 429 ? "Too Many Requests" : "Internal Server Error", "injected by the emulator",
                headers: status == 429 && retryAfter ? ["Retry-After": "1"] : [:])
    }

    func handle(_ r: EmulatedRequest) -> HTTPResponse {
        switch (r.method, r.path) {
        case ("POST", "/api/v1/events"):
            let type = r.headers["Content-Type"] ?? ""
            let events: [JSONValue]
            if type.hasPrefix("application/cloudevents-batch+json"), let list = r.json?.arrayValue {
                events = list
            } else if type.hasPrefix("application/cloudevents+json"), let one = r.json {
                events = [one]
            } else {
                return problem(400, "Bad Request", "Content-Type must be application/cloudevents+json or application/cloudevents-batch+json")
            }
            // Read outside the lock, which concurrent requests share; OpenMeter dedupes by (source, id).
            var valid: [(key: String, usage: AcceptedUsage)] = []
            valid.reserveCapacity(events.count)
            for e in events {
                guard let id = e["id"]?.stringValue, let source = e["source"]?.stringValue, let type = e["type"]?.stringValue,
                      let subject = e["subject"]?.stringValue else {
                    return problem(400, "Bad Request", "every event needs id, source, type and subject")
                }
                valid.append((source + "\u{1F}" + id,
                              AcceptedUsage(customer: subject, meter: type, timestamp: e["time"]?.stringValue.flatMap(RFC3339.parse) ?? Date(),
                                            quantity: Reply.decimal(e["data"]?[valueProperties.property(for: type, default: "value")]) ?? 0, key: id)))
            }
            state.with { s in
                for item in valid where s.keys.insert(item.key).inserted { s.usage.append(item.usage) }
            }
            return Reply.empty(204)
        case ("GET", _) where r.path.hasPrefix("/api/v1/meters/") && r.path.hasSuffix("/query"):
            let slug = String(r.path.dropFirst("/api/v1/meters/".count).dropLast("/query".count))
            guard let from = r.query("from").flatMap(RFC3339.parse), let to = r.query("to").flatMap(RFC3339.parse) else {
                return problem(400, "Bad Request", "from and to are required")
            }
            let subjects = r.queryAll("subject")
            let usage = state.with { $0.usage }.filter { $0.meter == slug && (subjects.isEmpty || subjects.contains($0.customer)) }
            let step: TimeInterval? = switch r.query("windowSize") { case "HOUR": 3600; case "DAY": 86_400; case "MINUTE": 60; default: nil }
            var rows: [JSONValue] = []
            for subject in (subjects.isEmpty ? Set(usage.map(\.customer)).sorted() : subjects) {
                var windows: [(Date, Date)] = []
                if let step { var s = from; while s < to { windows.append((s, min(s.addingTimeInterval(step), to))); s = s.addingTimeInterval(step) } } else { windows = [(from, to)] }
                for w in windows {
                    let v = usage.filter { $0.customer == subject && $0.timestamp >= w.0 && $0.timestamp < w.1 }.reduce(Decimal(0)) { $0 + $1.quantity }
                    rows.append(.object(["subject": .string(subject), "value": Reply.number(v), "windowStart": .string(RFC3339.format(w.0)),
                                         "windowEnd": .string(RFC3339.format(w.1)), "groupBy": .object([:])]))
                }
            }
            var result: [String: JSONValue] = ["data": .array(rows), "from": .string(RFC3339.format(from)), "to": .string(RFC3339.format(to))]
            if let size = r.query("windowSize") { result["windowSize"] = .string(size) }
            return Reply.json(200, .object(result))
        default:
            return problem(404, "Not Found", "no route for \(r.method) \(r.path)")
        }
    }
}
