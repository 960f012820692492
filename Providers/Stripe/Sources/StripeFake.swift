import Foundation
import UsageBilling

/// An in-memory stand-in for the Stripe metering endpoints the adapter uses, answering with
/// Stripe's status codes and body shapes (those of the fixtures): `POST /v1/billing/meter_events`
/// (validation, identifier dedup answered as Stripe does, optional scripted 429/500 faults),
/// `GET /v1/billing/meters` and `GET /v1/billing/meters/{id}/event_summaries` (hourly or whole
/// range sums). Serve it with `LoopbackHTTPServer` for demos and tests; the provider emulator
/// issue grows it into the full emulator.
public actor StripeFake {
    /// A scripted failure for the n-th meter-event request (1-based).
    public enum Fault: Sendable, Hashable {
        case rateLimited(retryAfterSeconds: Int?)
        case serverError
    }

    private struct Recorded { var customer: String; var value: Decimal; var timestamp: Int }
    private var meters: [String: String] = [:]  // event_name -> meter id
    private var events: [String: [Recorded]] = [:]  // event_name -> events
    private var identifiers: Set<String> = []
    private var requestCount = 0
    private let faults: [Int: Fault]
    private let now: @Sendable () -> Date

    /// - Parameters:
    ///   - meters: the event names that have a meter (others get `no meter` errors later).
    ///   - faults: failures to answer for given request numbers, to show retries.
    public init(meters: [String], faults: [Int: Fault] = [:], now: @escaping @Sendable () -> Date = { Date() }) {
        for (i, name) in meters.enumerated() { self.meters[name] = String(format: "mtr_fake_%04d", i + 1) }
        self.faults = faults
        self.now = now
    }

    /// Statistics: requests seen, distinct events accepted.
    public var stats: (requests: Int, accepted: Int) { (requestCount, identifiers.count) }

    /// Every identifier recorded (each once), and how many events were recorded in total: equal
    /// counts prove nothing was counted twice.
    public var recorded: (identifiers: Set<String>, events: Int) { (identifiers, events.values.map(\.count).reduce(0, +)) }

    /// Answers one request.
    public func handle(method: String, target: String, headers: HeaderFields, body: Data) -> HTTPResponse {
        let path = String(target.split(separator: "?", maxSplits: 1).first ?? "")
        let query = target.firstIndex(of: "?").map { FormEncoding.decode(String(target[target.index(after: $0)...])) } ?? []
        guard headers["Authorization"]?.hasPrefix("Bearer sk_") == true || headers["Authorization"]?.hasPrefix("Bearer rk_") == true else {
            return error(401, type: "invalid_request_error", code: nil, message: "You did not provide an API key.")
        }
        switch (method, path) {
        case ("POST", "/v1/billing/meter_events"):
            return meterEvent(FormEncoding.decode(String(decoding: body, as: UTF8.self)))
        case ("GET", "/v1/billing/meters"):
            let data = meters.sorted { $0.value < $1.value }.map { meterObject(id: $0.value, eventName: $0.key) }
            return json(200, .object(["object": .string("list"), "data": .array(data), "has_more": .bool(false),
                                      "url": .string("/v1/billing/meters")]))
        case ("GET", _) where path.hasPrefix("/v1/billing/meters/") && path.hasSuffix("/event_summaries"):
            let id = path.dropFirst("/v1/billing/meters/".count).dropLast("/event_summaries".count)
            return summaries(meterID: String(id), query: query)
        default:
            return error(404, type: "invalid_request_error", code: "resource_missing", message: "Unrecognized request URL (\(method): \(path)).")
        }
    }

    private func meterEvent(_ form: [(String, String)]) -> HTTPResponse {
        requestCount += 1
        switch faults[requestCount] {
        case .rateLimited(let after)?:
            var h: HeaderFields = [:]
            if let after { h["Retry-After"] = String(after) }
            return error(429, type: "invalid_request_error", code: "rate_limit",
                         message: "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.", headers: h)
        case .serverError?:
            return error(500, type: "api_error", code: nil, message: "An unknown error occurred")
        case nil:
            break
        }
        let fields = Dictionary(form, uniquingKeysWith: { $1 })
        guard let eventName = fields["event_name"], !eventName.isEmpty else {
            return error(400, type: "invalid_request_error", code: "parameter_missing", message: "Missing required param: event_name.", param: "event_name")
        }
        guard let customer = fields["payload[stripe_customer_id]"], let valueText = fields["payload[value]"] else {
            return error(400, type: "invalid_request_error", code: "parameter_missing", message: "Missing required param: payload.", param: "payload")
        }
        guard let value = Decimal(string: valueText, locale: Locale(identifier: "en_US_POSIX")) else {
            return error(400, type: "invalid_request_error", code: "parameter_invalid_integer", message: "Invalid value.", param: "payload[value]")
        }
        let identifier = fields["identifier"] ?? UUID().uuidString
        if identifiers.contains(identifier) {
            return error(400, type: "invalid_request_error", code: nil,
                         message: "An event already exists with identifier \(identifier).", headers: ["Stripe-Should-Retry": "false"])
        }
        let timestamp = fields["timestamp"].flatMap(Int.init) ?? Int(now().timeIntervalSince1970)
        identifiers.insert(identifier)
        events[eventName, default: []].append(Recorded(customer: customer, value: value, timestamp: timestamp))
        return json(200, .object([
            "object": .string("billing.meter_event"), "created": .number(now().timeIntervalSince1970.rounded(.down)),
            "event_name": .string(eventName), "identifier": .string(identifier), "livemode": .bool(false),
            "payload": .object(form.filter { $0.0.hasPrefix("payload[") }.reduce(into: [String: JSONValue]()) {
                $0[String($1.0.dropFirst(8).dropLast())] = .string($1.1)
            }),
            "timestamp": .number(Double(timestamp)),
        ]))
    }

    private func summaries(meterID: String, query: [(String, String)]) -> HTTPResponse {
        let q = Dictionary(query, uniquingKeysWith: { $1 })
        guard let eventName = meters.first(where: { $0.value == meterID })?.key else {
            return error(404, type: "invalid_request_error", code: "resource_missing", message: "No such billing meter: '\(meterID)'", param: "id")
        }
        guard let customer = q["customer"], let start = q["start_time"].flatMap(Int.init), let end = q["end_time"].flatMap(Int.init) else {
            return error(400, type: "invalid_request_error", code: "parameter_missing", message: "Missing required param: customer, start_time or end_time.")
        }
        let step: Int? = switch q["value_grouping_window"] { case "hour": 3600; case "day": 86_400; default: nil }
        var buckets: [(Int, Int)] = []
        if let step {
            var s = start
            while s < end { buckets.append((s, min(s + step, end))); s += step }
        } else {
            buckets = [(start, end)]
        }
        let mine = (events[eventName] ?? []).filter { $0.customer == customer }
        let data: [JSONValue] = buckets.reversed().map { bucket in
            let total = mine.filter { $0.timestamp >= bucket.0 && $0.timestamp < bucket.1 }.reduce(Decimal(0)) { $0 + $1.value }
            return .object([
                "id": .string("mtrusg_fake_\(meterID)_\(bucket.0)"), "object": .string("billing.meter_event_summary"),
                "aggregated_value": .number(NSDecimalNumber(decimal: total).doubleValue), "start_time": .number(Double(bucket.0)),
                "end_time": .number(Double(bucket.1)), "livemode": .bool(false), "meter": .string(meterID),
            ])
        }
        return json(200, .object(["object": .string("list"), "data": .array(data), "has_more": .bool(false),
                                  "url": .string("/v1/billing/meters/\(meterID)/event_summaries")]))
    }

    private func meterObject(id: String, eventName: String) -> JSONValue {
        .object([
            "id": .string(id), "object": .string("billing.meter"), "created": .number(0), "updated": .number(0),
            "customer_mapping": .object(["event_payload_key": .string("stripe_customer_id"), "type": .string("by_id")]),
            "default_aggregation": .object(["formula": .string("sum")]), "display_name": .string(eventName),
            "event_name": .string(eventName), "event_time_window": .null, "livemode": .bool(false), "status": .string("active"),
            "status_transitions": .object(["deactivated_at": .null]),
            "value_settings": .object(["event_payload_key": .string("value")]),
        ])
    }

    private func json(_ status: Int, _ body: JSONValue, headers: HeaderFields = [:]) -> HTTPResponse {
        var h = headers
        h["Content-Type"] = "application/json"
        h["Request-Id"] = "req_fake_\(requestCount)"
        return HTTPResponse(status: status, headers: h, body: body.encoded())
    }

    private func error(_ status: Int, type: String, code: String?, message: String, param: String? = nil,
                       headers: HeaderFields = [:]) -> HTTPResponse {
        var e: [String: JSONValue] = ["type": .string(type), "message": .string(message)]
        if let code { e["code"] = .string(code) }
        if let param { e["param"] = .string(param) }
        return json(status, .object(["error": .object(e)]), headers: headers)
    }
}
