import Foundation
import UsageBilling
import UsageEmulatorCore

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
        state.with {
            $0 = State(); $0.meters = meters
        }
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
            ? error(
                429, "invalid_request_error", "rate_limit", "Request rate limit exceeded.",
                headers: retryAfter ? ["Retry-After": "1"] : [:])
            : error(status, "api_error", nil, "An unknown error occurred")
    }

    private func error(
        _ status: Int, _ type: String, _ code: String?, _ message: String, param: String? = nil,
        headers: HeaderFields = [:]
    ) -> HTTPResponse {
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
                return error(
                    400, "invalid_request_error", "parameter_missing",
                    "Missing required param: display_name or event_name.", param: "event_name")
            }
            guard
                state.with({ s in
                    s.meters.contains(name)
                        ? false
                        : {
                            s.meters.append(name); return true
                        }()
                })
            else {
                return error(
                    400, "invalid_request_error", nil, "An active meter with event_name \(name) already exists.",
                    param: "event_name")
            }
            return Reply.json(200, meter(name))
        case ("GET", "/v1/billing/meters"):
            let (names, inactive) = state.with { ($0.meters, $0.inactive) }
            let wanted = r.query("status")
            let data = names.filter { wanted == nil || (inactive[$0] == nil ? "active" : "inactive") == wanted }.map {
                meter($0, deactivated: inactive[$0])
            }
            return Reply.json(
                200,
                .object([
                    "object": .string("list"), "data": .array(data), "has_more": .bool(false),
                    "url": .string("/v1/billing/meters"),
                ]))
        case ("GET", _) where r.path.hasPrefix("/v1/billing/meters/") && r.path.hasSuffix("/event_summaries"):
            return summaries(
                meterID: String(r.path.dropFirst("/v1/billing/meters/".count).dropLast("/event_summaries".count)), r)
        case ("POST", "/v1/billing/meter_event_adjustments"): return adjustment(r, v2: false)
        case ("POST", "/v2/billing/meter_event_adjustments"): return adjustment(r, v2: true)
        case (_, _) where r.path.hasPrefix("/v1/billing/meters/mtr_emu_"):
            return meterLifecycle(r)
        default:
            return error(
                404, "invalid_request_error", "resource_missing", "Unrecognized request URL (\(r.method): \(r.path)).")
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
            return error(
                400, "invalid_request_error", "parameter_missing", "Missing required param: event_name.",
                param: "event_name")
        }
        guard let customer = f["payload[stripe_customer_id]"],
            let value = f["payload[value]"].flatMap(DecimalFormat.parse)
        else {
            return error(
                400, "invalid_request_error", "parameter_missing",
                "Missing required param: payload[stripe_customer_id] or payload[value].", param: "payload")
        }
        let identifier = f["identifier"] ?? UUID().uuidString
        let timestamp = f["timestamp"].flatMap(Double.init) ?? received.timeIntervalSince1970
        // The answer is built outside the lock; recording it and keeping it for its key is one
        // locked step (event-loop threads share this state).
        let accepted = Reply.json(
            200,
            encoded: JSONValue.encodeObject([  // members in key order: written as they are
                ("created", .number(received.timeIntervalSince1970.rounded(.down))), ("event_name", .string(name)),
                ("identifier", .string(identifier)), ("livemode", .bool(false)),
                ("object", .string("billing.meter_event")),
                (
                    "payload",
                    .object(["stripe_customer_id": .string(customer), "value": .string(DecimalFormat.plain(value))])
                ),
                ("timestamp", .number(timestamp.rounded(.down))),
            ]).data)
        return state.with { s in
            if let key, let replay = s.reply(for: key, at: received) {  // the same key raced in on another connection
                var h = replay.headers
                h["Idempotent-Replayed"] = "true"
                return HTTPResponse(status: replay.status, headers: h, body: replay.body)
            }
            let response =
                Self.record(
                    name: name, identifier: identifier, customer: customer, value: value,
                    at: Date(timeIntervalSince1970: timestamp),
                    received: received, autoMeters: autoMeters, in: &s)
                ? accepted
                : error(
                    400, "invalid_request_error", nil, "An event already exists with identifier \(identifier).",
                    headers: ["Stripe-Should-Retry": "false"])
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
            return state.with { s in
                Self.record(
                    name: a.name, identifier: a.identifier, customer: a.customer, value: a.value, at: a.at,
                    received: received, autoMeters: autoMeters, in: &s) ? a : nil
            }
        }
    }

    /// One v2 event's fields, or the refusal Stripe answers for it.
    private func read(_ e: JSONValue) -> Result<Accepted, Refusal> {
        guard let name = e["event_name"]?.stringValue, !name.isEmpty else {
            return .failure(
                Refusal(response: v2Error(400, "invalid_request_error", "parameter_missing", "event_name is required."))
            )
        }
        guard let customer = e["payload"]?["stripe_customer_id"]?.stringValue else {
            return .failure(
                Refusal(
                    response: v2Error(
                        400, "invalid_request_error", "payload_no_customer_defined",
                        "The payload has no value for the meter's customer mapping key 'stripe_customer_id'.")))
        }
        guard let text = e["payload"]?["value"]?.stringValue else {
            return .failure(
                Refusal(
                    response: v2Error(
                        400, "invalid_request_error", "payload_no_value_defined",
                        "The payload has no value for the meter's value key 'value'.")))
        }
        guard let value = DecimalFormat.parse(text) else {
            return .failure(
                Refusal(
                    response: v2Error(
                        400, "invalid_request_error", "payload_invalid_value",
                        "The value for payload key 'value' must be a positive integer.")))
        }
        let identifier = e["identifier"]?.stringValue ?? UUID().uuidString
        let at = e["timestamp"]?.stringValue.flatMap(RFC3339.parse) ?? now()
        return .success((name, identifier, customer, value, at))
    }

    /// Adds an event to the ledger (and its meter, the first time); false when its identifier
    /// was seen before, on any API.
    /// An event for a deactivated meter is taken (true) and not counted: Stripe reports it later.
    private static func record(
        name: String, identifier: String, customer: String, value: Decimal, at: Date, received: Date,
        autoMeters: Bool, in s: inout State
    ) -> Bool {
        guard s.identifiers.insert(identifier).inserted else { return false }
        if !s.meters.contains(name) {
            guard autoMeters else { return true }  // no meter: taken, counted nowhere (Stripe reports no_meter later)
            s.meters.append(name)
        }
        guard s.inactive.isEmpty || s.inactive[name] == nil else { return true }
        s.usage.append(
            AcceptedUsage(
                customer: customer, meter: name, timestamp: at, quantity: value, key: identifier, receivedAt: received))
        return true
    }

    /// v2 `POST /v2/billing/meter_events` takes one call at a time per customer and meter
    /// (stripe.md §1.9): a second one while the first is in progress (an injected delay stands
    /// for Stripe's processing time) is `409 too_many_concurrent_requests`
    /// (`v2.error.too_many_concurrent_requests`; body as the conformance fixture has it).
    func admit(_ r: inout EmulatedRequest) -> Admission {
        guard r.method == "POST", r.path == "/v2/billing/meter_events" else { return .admitted(token: nil) }
        r.parsedJSON = .some(r.json)  // the handler reads the same body: parse it once
        guard let body = r.json, let customer = body["payload"]?["stripe_customer_id"]?.stringValue,
            let name = body["event_name"]?.stringValue
        else {
            return .admitted(token: nil)
        }
        let key = customer + "\u{1F}" + name
        guard state.with({ $0.inProgress.insert(key).inserted }) else {
            return .refused(
                v2Error(
                    409, "invalid_request_error", "too_many_concurrent_requests",
                    "Too many concurrent requests for this customer and meter."))
        }
        return .admitted(token: key)
    }

    func finish(_ token: String) { state.with { _ = $0.inProgress.remove(token) } }

    private func v2Error(_ status: Int, _ type: String, _ code: String, _ message: String) -> HTTPResponse {
        Reply.json(
            status,
            .object(["error": .object(["type": .string(type), "code": .string(code), "message": .string(message)])]))
    }

    /// `POST /v2/billing/meter_events`: one event, validated at once; a reused identifier is
    /// `400 duplicate_meter_event`, as Stripe answers it.
    private func meterEventV2(_ r: EmulatedRequest) -> HTTPResponse {
        let key = r.headers["Idempotency-Key"]
        let received = now()
        if let key, let replay = state.with({ $0.reply(for: key, at: received) }) { return replay }
        guard let body = r.json, case .object = body else {
            return v2Error(400, "invalid_request_error", "invalid_json", "The body is not a JSON object.")
        }
        if !autoMeters, let name = body["event_name"]?.stringValue, !state.with({ $0.meters.contains(name) }) {
            return v2Error(
                400, "invalid_request_error", "no_meter", "No active meter was found for event_name '\(name)'.")
        }
        if let name = body["event_name"]?.stringValue, state.with({ $0.inactive[name] != nil }) {
            return v2Error(
                400, "invalid_request_error", "archived_meter",
                "The meter for event_name \(name) is inactive; reactivate it to send events.")
        }
        // v2 checks the value at once (the stream and v1 report a bad one later, asynchronously).
        if let text = body["payload"]?["value"]?.stringValue, let value = DecimalFormat.parse(text),
            !DecimalFormat.isWhole(value)
        {
            return v2Error(
                400, "invalid_request_error", "payload_invalid_value",
                "The value for payload key 'value' must be a positive integer.")
        }
        let response: HTTPResponse
        switch accept(body) {
        case .failure(let refusal): return refusal.response
        case .success(nil):
            let id = body["identifier"]?.stringValue ?? ""
            response = v2Error(
                400, "invalid_request_error", "duplicate_meter_event",
                "An event with identifier \(id) was already submitted.")
        case .success(let e?):
            response = Reply.json(
                200,
                .object([
                    "object": .string("v2.billing.meter_event"),
                    "created": .string(RFC3339.format(now(), fractional: true)), "event_name": .string(e.name),
                    "identifier": .string(e.identifier), "livemode": .bool(false),
                    "payload": .object([
                        "stripe_customer_id": .string(e.customer), "value": .string(DecimalFormat.plain(e.value)),
                    ]),
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
        return Reply.json(
            200,
            .object([
                "object": .string("v2.billing.meter_event_session"),
                "id": .string("mtr_sess_emu_\(token.dropFirst("mes_tok_emu_".count))"),
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
            return v2Error(
                404, "invalid_request_error", "not_found",
                "Unrecognized request URL (\(r.method): \(r.path.dropFirst(StripeEmulation.meterEventsHost.count))).")
        }
        let token = r.headers["Authorization"].map { String($0.dropFirst("Bearer ".count)) } ?? ""
        guard let expiry = state.with({ $0.sessions[token] }), expiry > now() else {
            return Reply.json(
                401,
                .object([
                    "error": .object([
                        "type": .string("temporary_session_expired"),
                        "code": .string("billing_meter_event_session_expired"),
                        "message": .string("The meter event session has expired. Create a new session."),
                        "doc_url": .string("https://docs.stripe.com/api/v2/billing-meter-stream"),
                    ])
                ]))
        }
        guard let events = r.json?["events"]?.arrayValue, !events.isEmpty else {
            return v2Error(400, "invalid_request_error", "parameter_missing", "events is required.")
        }
        guard events.count <= 100 else {
            return v2Error(
                400, "invalid_request_error", "too_many_events",
                "A stream request takes at most 100 events; this one has \(events.count).")
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
            for a in batch {
                _ = Self.record(
                    name: a.name, identifier: a.identifier, customer: a.customer, value: a.value, at: a.at,
                    received: received, autoMeters: autoMeters, in: &s)
            }
        }
        return Reply.json(200, .object([:]))
    }

    private func meter(_ name: String, deactivated: Date? = nil) -> JSONValue {
        .object([
            "id": .string("mtr_emu_\(name)"), "object": .string("billing.meter"), "created": .number(0),
            "updated": .number(0),
            "customer_mapping": .object(["event_payload_key": .string("stripe_customer_id"), "type": .string("by_id")]),
            "default_aggregation": .object(["formula": .string("sum")]), "display_name": .string(name),
            "event_name": .string(name),
            "event_time_window": .null, "livemode": .bool(false),
            "status": .string(deactivated == nil ? "active" : "inactive"),
            "status_transitions": .object([
                "deactivated_at": deactivated.map { .number($0.timeIntervalSince1970.rounded(.down)) } ?? .null
            ]),
            "value_settings": .object(["event_payload_key": .string("value")]),
        ])
    }

    /// `GET /v1/billing/meters/{id}`, `POST …/deactivate` and `POST …/reactivate`. A deactivated
    /// meter takes no more events: v2 refuses them with `400 archived_meter`; v1 and the stream,
    /// which Stripe checks after answering, accept the request and count nothing (Stripe reports
    /// `archived_meter` later, in a meter error report).
    private func meterLifecycle(_ r: EmulatedRequest) -> HTTPResponse {
        let rest = r.path.dropFirst("/v1/billing/meters/mtr_emu_".count).split(
            separator: "/", omittingEmptySubsequences: false
        ).map(String.init)
        guard let name = rest.first?.removingPercentEncoding, state.with({ $0.meters.contains(name) }) else {
            return error(
                404, "invalid_request_error", "resource_missing",
                "No such billing meter: '\(r.path.dropFirst("/v1/billing/meters/".count).split(separator: "/").first ?? "")'",
                param: "id")
        }
        switch (r.method, rest.count == 2 ? rest[1] : nil) {
        case ("GET", nil): break
        case ("POST", "deactivate"?): state.with { s in if s.inactive[name] == nil { s.inactive[name] = now() } }
        case ("POST", "reactivate"?): state.with { _ = $0.inactive.removeValue(forKey: name) }
        default:
            return error(
                404, "invalid_request_error", "resource_missing", "Unrecognized request URL (\(r.method): \(r.path)).")
        }
        return Reply.json(200, meter(name, deactivated: state.with { $0.inactive[name] }))
    }

    /// `POST /v1/billing/meter_event_adjustments` (form) and `POST /v2/billing/meter_event_adjustments`
    /// (JSON): cancel one event by identifier. Stripe answers `pending` and applies it later (an
    /// identifier it does not hold is reported asynchronously); here an event of that name received
    /// within the last 24 hours leaves the ledger at once, so summaries stop counting it. Stripe
    /// documents the 24 hours but not how a later cancel fails: the emulator refuses it with the
    /// 400 `invalid_cancel_configuration` the v2 spec lists, so a client can be shown handling the
    /// refusal (the adapter also refuses before sending when it knows the event is that old).
    static let cancelWindow: TimeInterval = 24 * 3600

    private func adjustment(_ r: EmulatedRequest, v2: Bool) -> HTTPResponse {
        let name: String?, type: String?, identifier: String?
        if v2 {
            let body = r.json
            (name, type, identifier) = (
                body?["event_name"]?.stringValue, body?["type"]?.stringValue,
                body?["cancel"]?["identifier"]?.stringValue
            )
        } else {
            let f = r.form
            (name, type, identifier) = (f["event_name"], f["type"], f["cancel[identifier]"])
        }
        guard let name, !name.isEmpty, name.count <= 100 else {
            return v2
                ? v2Error(400, "invalid_request_error", "invalid_cancel_configuration", "event_name is required.")
                : error(
                    400, "invalid_request_error", "parameter_missing", "Missing required param: event_name.",
                    param: "event_name")
        }
        guard type == "cancel", let identifier, !identifier.isEmpty, identifier.count <= 100 else {
            return v2
                ? v2Error(
                    400, "invalid_request_error", "invalid_cancel_configuration",
                    "type must be cancel, with cancel.identifier.")
                : error(
                    400, "invalid_request_error", "parameter_missing",
                    "Missing required param: type (cancel) and cancel[identifier].", param: "cancel[identifier]")
        }
        let at = now()
        let late = state.with { s -> Bool in
            guard let i = s.usage.lastIndex(where: { $0.key == identifier && $0.meter == name }),
                let received = s.usage[i].receivedAt
            else { return false }
            guard at.timeIntervalSince(received) <= Self.cancelWindow else { return true }
            s.usage.remove(at: i)
            return false
        }
        if late {
            let message =
                "The meter event '\(identifier)' was received more than 24 hours ago; you can only cancel events within 24 hours of Stripe receiving them."
            return v2
                ? v2Error(400, "invalid_request_error", "invalid_cancel_configuration", message)
                : error(
                    400, "invalid_request_error", "invalid_cancel_configuration", message, param: "cancel[identifier]")
        }
        var reply: [String: JSONValue] = [
            "object": .string(v2 ? "v2.billing.meter_event_adjustment" : "billing.meter_event_adjustment"),
            "event_name": .string(name),
            "livemode": .bool(false), "status": .string("pending"), "type": .string("cancel"),
            "cancel": .object(["identifier": .string(identifier)]),
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
            return error(
                404, "invalid_request_error", "resource_missing", "No such billing meter: '\(meterID)'", param: "id")
        }
        guard let customer = r.query("customer"), let start = r.query("start_time").flatMap(Int.init),
            let end = r.query("end_time").flatMap(Int.init)
        else {
            return error(
                400, "invalid_request_error", "parameter_missing",
                "Missing required param: customer, start_time or end_time.")
        }
        let step: Int? =
            switch r.query("value_grouping_window") {
            case "hour": 3600;
            case "day": 86_400;
            default: nil
            }
        var buckets: [(Int, Int)] = []
        if let step {
            var s = start; while s < end { buckets.append((s, min(s + step, end))); s += step }
        } else {
            buckets = [(start, end)]
        }
        let mine = state.with { $0.usage }.filter { $0.meter == name && $0.customer == customer }
        let data: [JSONValue] = buckets.reversed().map { b in
            let total = mine.filter {
                Int($0.timestamp.timeIntervalSince1970) >= b.0 && Int($0.timestamp.timeIntervalSince1970) < b.1
            }.reduce(Decimal(0)) { $0 + $1.quantity }
            return .object([
                "id": .string("mtrusg_emu_\(b.0)"), "object": .string("billing.meter_event_summary"),
                "aggregated_value": Reply.number(total),
                "start_time": .number(Double(b.0)), "end_time": .number(Double(b.1)), "livemode": .bool(false),
                "meter": .string(meterID),
            ])
        }
        // Pages as Stripe's lists do: newest first, `limit` (default 10) per page, `starting_after` an id.
        let limit = r.query("limit").flatMap(Int.init).map { min(100, max(1, $0)) } ?? 10
        let after =
            r.query("starting_after").flatMap { id in data.firstIndex { $0["id"]?.stringValue == id } }.map { $0 + 1 }
            ?? 0
        let page = Array(data.dropFirst(after).prefix(limit))
        return Reply.json(
            200,
            .object([
                "object": .string("list"), "data": .array(page), "has_more": .bool(after + page.count < data.count),
                "url": .string("/v1/billing/meters/\(meterID)/event_summaries"),
            ]))
    }
}

extension StripeEmulation {
    /// Stripe's documented limits (stripe.md §1.9): live meter events (v1 and v2) have a limiter
    /// of their own; test-mode keys count toward the sandbox's basic limit; the v2 stream has its
    /// own (its session token does not tell the mode: live assumed). The values are the
    /// provider's, written here rather than read from the adapter, which paces under them.
    func rateLimits(for r: EmulatedRequest) -> [EmulatedRateLimit] {
        guard r.method == "POST" else { return [] }
        let auth = r.headers["Authorization"] ?? ""
        if r.path.hasSuffix("/v2/billing/meter_event_stream") {
            return [EmulatedRateLimit(bucket: "stripe.stream", capacity: 10_000, perSecond: 10_000, cost: 1)]
        }
        guard r.path.hasSuffix("/billing/meter_events") else { return [] }
        return auth.contains("_test_")
            ? [EmulatedRateLimit(bucket: "stripe.test", capacity: 25, perSecond: 25, cost: 1)]
            : [EmulatedRateLimit(bucket: "stripe.meter_events", capacity: 1_000, perSecond: 1_000, cost: 1)]
    }
}
