import Foundation
import UsageBilling

/// Stripe's meter-event API as `usage-billing serve` speaks it under `/stripe`, so stripe-python
/// (or any Stripe SDK) pointed there with the ingest token as its API key keeps working:
/// `POST /v1/billing/meter_events` (form), `POST /v2/billing/meter_events` (JSON),
/// `POST /v2/billing/meter_event_session` then `POST /v2/billing/meter_event_stream` with the
/// session's token, and `POST /v1|v2/billing/meter_event_adjustments` (refused until corrections
/// exist). Answers and errors are Stripe's shapes, so the SDK returns its own objects and raises
/// its own exceptions.
///
/// Mapping: `identifier` is the event id (without one, the request's `Idempotency-Key`, which
/// the SDKs keep across their retries); `event_name` the name; `payload[<customer key>]` the
/// customer and `payload[<value key>]` the quantity (the meter's `customer_mapping` and
/// `value_settings` keys: `stripe_customer_id` and `value` unless `serve.compat.stripe` says
/// otherwise); `timestamp`; the other payload keys become properties.
public struct StripeDoor: IngestDoor {
    public let prefix = "stripe"
    public var settingsKeys: Set<String> { ["customer_payload_key", "value_payload_key"] }

    public init() {}

    /// How long a meter event session's token is good for, as Stripe's are.
    static let sessionLifetime: TimeInterval = 15 * 60
    /// The stream's batch limit, as Stripe's.
    static let streamLimit = 100

    public func check(_ settings: [String: JSONValue]) -> [(key: String, message: String, fix: String)] {
        settingsKeys.sorted().compactMap { key in
            guard let value = settings[key] else { return nil }
            guard let text = value.stringValue, !text.isEmpty, !text.contains("[") else {
                return (
                    key, "\(key) must be a payload key, a non-empty string",
                    "write the meter's key, e.g. \(key): \(key == "value_payload_key" ? "value" : "stripe_customer_id")"
                )
            }
            return nil
        }
    }

    public func handle(_ request: IngestDoorRequest, context: IngestDoorContext) async -> IngestDoorResponse {
        let isStream = request.path == "/v2/billing/meter_event_stream"
        let v2 = request.path.hasPrefix("/v2/")
        if isStream {
            guard let token = request.bearerToken, Self.sessionValid(token, key: context.signingKey) else {
                return .json(
                    401,
                    .object([
                        "error": .object([
                            "type": .string("temporary_session_expired"),
                            "code": .string("billing_meter_event_session_expired"),
                            "message": .string(
                                "The meter event session has expired or is not one of this server's. Create a new session (client.v2.billing.meter_event_session.create())."
                            ),
                        ])
                    ]))
            }
        } else {
            guard let token = request.bearerToken ?? request.basicUser, context.authorises(token) else {
                return Self.error(
                    401, type: "invalid_request_error", code: nil,
                    message:
                        "Invalid API Key provided: the key is not one of usage-billing serve's serve.tokens. Give the Stripe client the ingest token as its API key; your Stripe secret key stays in the routing config.",
                    v2: v2)
            }
        }
        switch (request.method, request.path) {
        case ("POST", "/v1/billing/meter_events"): return await v1(request, context)
        case ("POST", "/v2/billing/meter_events"): return await v2Create(request, context)
        case ("POST", "/v2/billing/meter_event_session"): return session(context)
        case ("POST", "/v2/billing/meter_event_stream"): return await stream(request, context)
        case ("POST", "/v1/billing/meter_event_adjustments"), ("POST", "/v2/billing/meter_event_adjustments"):
            return Self.error(
                400, type: "invalid_request_error", code: "corrections_not_supported",
                message:
                    "usage-billing serve does not cancel meter events yet: corrections (void and amend, everywhere an event went) are coming. Nothing was recorded; until then, correct the event at each provider by hand.",
                v2: v2, param: "cancel")
        default:
            return Self.error(
                404, type: "invalid_request_error", code: "resource_missing",
                message:
                    "Unrecognized request URL (\(request.method): /stripe\(request.path)). usage-billing serve speaks only Stripe's meter-event API: give metering its own client, e.g. "
                    + "metering = stripe.StripeClient(INGEST_TOKEN, base_addresses={\"api\": \"http://HOST:8480/stripe\", \"meter_events\": \"http://HOST:8480/stripe\"}), and keep your usual client for the rest of Stripe.",
                v2: v2)
        }
    }

    // MARK: Requests

    private func v1(_ request: IngestDoorRequest, _ context: IngestDoorContext) async -> IngestDoorResponse {
        guard let pairs = FormEncoding.decodeStrict(request.body) else {
            return Self.error(
                400, type: "invalid_request_error", code: "parameter_invalid",
                message: "The body is not application/x-www-form-urlencoded.", v2: false)
        }
        var fields: [String: String] = [:]
        var payload: [String: JSONValue] = [:]
        for (key, value) in pairs {
            if key.hasPrefix("payload["), key.hasSuffix("]") {
                payload[String(key.dropFirst("payload[".count).dropLast())] = .string(value)
            } else {
                fields[key] = value
            }
        }
        let timestamp: Date?
        if let text = fields["timestamp"] {
            guard let seconds = Double(text) else {
                return Self.error(
                    400, type: "invalid_request_error", code: "parameter_invalid",
                    message: "Invalid timestamp: must be a Unix timestamp in seconds.", v2: false, param: "timestamp")
            }
            timestamp = Date(timeIntervalSince1970: seconds)
        } else {
            timestamp = nil
        }
        let body: [String: JSONValue?] = [
            "event_name": fields["event_name"].map(JSONValue.string),
            "identifier": fields["identifier"].map(JSONValue.string),
        ]
        switch event(
            body.compactMapValues { $0 }, payload: payload, timestamp: timestamp, request: request, context: context,
            v2: false)
        {
        case .failure(let refusal): return refusal
        case .success(let (event, hasQuantity)):
            return await recordOne(event, hasQuantity: hasQuantity, context: context, v2: false)
        }
    }

    private func v2Create(_ request: IngestDoorRequest, _ context: IngestDoorContext) async -> IngestDoorResponse {
        guard case .object(let body)? = JSONValue.parse(request.body) else {
            return Self.error(
                400, type: "invalid_request_error", code: "parameter_invalid",
                message: "The body is not a JSON object.", v2: true)
        }
        switch v2Event(body, request: request, context: context) {
        case .failure(let refusal): return refusal
        case .success(let (event, hasQuantity)):
            return await recordOne(event, hasQuantity: hasQuantity, context: context, v2: true)
        }
    }

    private func session(_ context: IngestDoorContext) -> IngestDoorResponse {
        let created = Date()
        let expires = created.addingTimeInterval(Self.sessionLifetime)
        let token = Self.sessionToken(expires: expires, key: context.signingKey)
        return .json(
            200,
            .object([
                "object": .string("v2.billing.meter_event_session"),
                "id": .string("mtr_sess_ub_\(Int(created.timeIntervalSince1970))"),
                "authentication_token": .string(token), "created": .string(RFC3339.format(created, fractional: true)),
                "expires_at": .string(RFC3339.format(expires, fractional: true)), "livemode": .bool(false),
            ]))
    }

    /// The stream: up to 100 events, every one valid or none recorded (Stripe refuses the
    /// request), answered `{}`.
    private func stream(_ request: IngestDoorRequest, _ context: IngestDoorContext) async -> IngestDoorResponse {
        guard let events = JSONValue.parse(request.body)?["events"]?.arrayValue, !events.isEmpty else {
            return Self.error(
                400, type: "invalid_request_error", code: "parameter_missing",
                message: "events is required: a list of 1 to 100 meter events.", v2: true, param: "events")
        }
        guard events.count <= min(Self.streamLimit, context.maxEvents) else {
            return Self.error(
                400, type: "invalid_request_error", code: "too_many_events",
                message:
                    "A stream request takes at most \(min(Self.streamLimit, context.maxEvents)) events; this one has \(events.count). Split them over several requests.",
                v2: true, param: "events")
        }
        var batch: [(event: UsageEvent, hasQuantity: Bool)] = []
        for (i, value) in events.enumerated() {
            guard case .object(let body) = value else {
                return Self.error(
                    400, type: "invalid_request_error", code: "parameter_invalid",
                    message: "events[\(i)] is not an object.", v2: true, param: "events[\(i)]")
            }
            switch v2Event(body, request: request, context: context, index: i) {
            case .failure(let refusal): return refusal
            case .success(let item): batch.append(item)
            }
        }
        let results: [IngestDoorResult]
        do {
            results = try await context.record(
                batch, "payload[\(context.settings["value_payload_key"]?.stringValue ?? "value")]")
        } catch {
            return Self.unavailable(error, v2: true)
        }
        // Stripe checks streamed events later; a refusal here is answered now, in its shape.
        for (i, result) in results.enumerated() {
            if case .refused(let field, let reason, let fix) = result {
                return Self.error(
                    400, type: "invalid_request_error", code: "invalid_event",
                    message: "events[\(i)]: \(reason). \(fix)", v2: true, param: "events[\(i)].\(field)")
            }
        }
        return .json(200, .object([:]))
    }

    // MARK: Mapping

    private func v2Event(
        _ body: [String: JSONValue], request: IngestDoorRequest, context: IngestDoorContext,
        index: Int? = nil
    ) -> Result<(event: UsageEvent, hasQuantity: Bool), IngestDoorResponse> {
        var payload: [String: JSONValue] = [:]
        if case .object(let p)? = body["payload"] { payload = p }
        var timestamp: Date?
        if let value = body["timestamp"] {
            guard let text = value.stringValue, let date = RFC3339.parse(text) else {
                return .failure(
                    Self.error(
                        400, type: "invalid_request_error", code: "parameter_invalid",
                        message:
                            "\(index.map { "events[\($0)]: " } ?? "")timestamp must be an RFC 3339 time, e.g. 2026-12-07T12:03:00Z.",
                        v2: true, param: "timestamp"))
            }
            timestamp = date
        }
        // The stream has no per-event Idempotency-Key: each event needs its identifier.
        if index != nil, body["identifier"]?.stringValue?.isEmpty ?? true {
            return .failure(
                Self.error(
                    400, type: "invalid_request_error", code: "parameter_missing",
                    message:
                        "events[\(index ?? 0)]: identifier is required on the stream, so a resent batch is billed once.",
                    v2: true, param: "identifier"))
        }
        return event(body, payload: payload, timestamp: timestamp, request: request, context: context, v2: true)
    }

    /// The event a request's fields make, or Stripe's error naming the missing parameter.
    private func event(
        _ body: [String: JSONValue], payload: [String: JSONValue], timestamp: Date?, request: IngestDoorRequest,
        context: IngestDoorContext, v2: Bool
    ) -> Result<(event: UsageEvent, hasQuantity: Bool), IngestDoorResponse> {
        let customerKey = context.settings["customer_payload_key"]?.stringValue ?? "stripe_customer_id"
        let valueKey = context.settings["value_payload_key"]?.stringValue ?? "value"
        guard let name = body["event_name"]?.stringValue, !name.isEmpty else {
            return .failure(
                Self.error(
                    400, type: "invalid_request_error", code: "parameter_missing",
                    message: "Missing required param: event_name.", v2: v2, param: "event_name"))
        }
        guard let customer = payload[customerKey]?.stringValue, !customer.isEmpty else {
            return .failure(
                Self.error(
                    400, type: "invalid_request_error", code: "parameter_missing",
                    message:
                        "Missing required param: payload[\(customerKey)] (the customer; serve.compat.stripe.customer_payload_key names another key).",
                    v2: v2,
                    param: "payload[\(customerKey)]"))
        }
        var quantity = Decimal(1)
        let hasQuantity = payload[valueKey] != nil
        if let value = payload[valueKey] {
            guard
                let parsed = value.stringValue.flatMap(DecimalFormat.parse)
                    ?? value.numberValue.flatMap({ DecimalFormat.parse("\($0)") })
            else {
                return .failure(
                    Self.error(
                        400, type: "invalid_request_error", code: "parameter_invalid",
                        message: "Invalid payload[\(valueKey)]: must be a number, e.g. \"25\".", v2: v2,
                        param: "payload[\(valueKey)]"))
            }
            quantity = parsed
        }
        guard
            let id = body["identifier"]?.stringValue.flatMap({ $0.isEmpty ? nil : $0 })
                ?? request.header("Idempotency-Key").map({ "stripe_idem_" + $0 })
        else {
            return .failure(
                Self.error(
                    400, type: "invalid_request_error", code: "parameter_missing",
                    message:
                        "Missing identifier: send one (or an Idempotency-Key, as Stripe's SDKs do), so a retried request is billed once.",
                    v2: v2, param: "identifier"))
        }
        var properties: [String: UsageValue] = [:]
        for (key, value) in payload where key != customerKey && key != valueKey {
            if let text = value.stringValue {
                properties[key] = .string(text)
            } else if let n = value.numberValue {
                properties[key] = .number(Decimal(n))
            }
        }
        return .success(
            (
                UsageEvent(
                    id: id, name: name, customer: customer, timestamp: timestamp ?? Date(), quantity: quantity,
                    properties: properties), hasQuantity
            ))
    }

    private func recordOne(_ event: UsageEvent, hasQuantity: Bool, context: IngestDoorContext, v2: Bool) async
        -> IngestDoorResponse
    {
        let results: [IngestDoorResult]
        do {
            results = try await context.record(
                [(event, hasQuantity)], "payload[\(context.settings["value_payload_key"]?.stringValue ?? "value")]")
        } catch {
            return Self.unavailable(error, v2: v2)
        }
        if case .refused(let field, let reason, let fix)? = results.first {
            return Self.error(
                400, type: "invalid_request_error", code: "invalid_event", message: "\(reason). \(fix)", v2: v2,
                param: field)
        }
        let created = Date()
        var payload: [String: JSONValue] = [
            context.settings["customer_payload_key"]?.stringValue ?? "stripe_customer_id": .string(event.customer),
            context.settings["value_payload_key"]?.stringValue ?? "value": .string(DecimalFormat.plain(event.quantity)),
        ]
        for (key, value) in event.properties { payload[key] = .string(value.description) }
        if v2 {
            return .json(
                200,
                .object([
                    "object": .string("v2.billing.meter_event"),
                    "created": .string(RFC3339.format(created, fractional: true)),
                    "event_name": .string(event.name), "identifier": .string(event.id), "livemode": .bool(false),
                    "payload": .object(payload),
                    "timestamp": .string(RFC3339.format(event.timestamp, fractional: true)),
                ]))
        }
        return .json(
            200,
            .object([
                "object": .string("billing.meter_event"),
                "created": .number(created.timeIntervalSince1970.rounded(.down)),
                "event_name": .string(event.name), "identifier": .string(event.id), "livemode": .bool(false),
                "payload": .object(payload), "timestamp": .number(event.timestamp.timeIntervalSince1970.rounded(.down)),
            ]))
    }

    // MARK: Answers

    /// Stripe's error object; stripe-python raises the exception its status and type name.
    static func error(_ status: Int, type: String, code: String?, message: String, v2: Bool, param: String? = nil)
        -> IngestDoorResponse
    {
        var error: [String: JSONValue] = ["type": .string(type), "message": .string(message)]
        if let code { error["code"] = .string(code) }
        if let param { error["param"] = .string(param) }
        return .json(
            status, .object(["error": .object(error)]), headers: status >= 500 ? [("Stripe-Should-Retry", "true")] : [])
    }

    /// Nothing was recorded: Stripe's 503, which its SDKs retry with the same Idempotency-Key.
    static func unavailable(_ error: any Error, v2: Bool) -> IngestDoorResponse {
        let reason = IngestDoorUnavailable.of(error).reason
        var response = Self.error(
            503, type: "api_error", code: nil,
            message: "Nothing was recorded: \(reason). Retry with the same identifier.", v2: v2)
        response.headers.append(IngestDoorUnavailable.of(error).header)
        return response
    }

    // MARK: Session tokens

    /// `ubmes_<expiry>_<mac>`: any serve instance with the same tokens checks it, with no state.
    static func sessionToken(expires: Date, key: [UInt8]) -> String {
        let expiry = String(Int(expires.timeIntervalSince1970))
        return "ubmes_\(expiry)_\(HMACSHA256.hex(key: key, "meter_event_session:\(expiry)"))"
    }

    static func sessionValid(_ token: String, key: [UInt8], now: Date = Date()) -> Bool {
        let parts = token.split(separator: "_")
        guard parts.count == 3, parts[0] == "ubmes", let expiry = Double(parts[1]), expiry > now.timeIntervalSince1970
        else { return false }
        let expected = HMACSHA256.hex(key: key, "meter_event_session:\(parts[1])")
        return Array(expected.utf8).count == parts[2].utf8.count
            && zip(expected.utf8, parts[2].utf8).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
