import Foundation
import UsageBilling

/// Lago's event API as `usage-billing serve` speaks it under `/lago`, for teams leaving Lago:
/// lago-python-client with `Client(api_key=INGEST_TOKEN, api_url="http://HOST:8480/lago/")`
/// (the trailing slash keeps the path) keeps calling `events.create(...)` and
/// `events.batch_create(...)`. Lago is not a destination; its events go wherever the routing
/// config sends them.
/// - `POST /api/v1/events` takes `{"event": {…}}` and answers `{"event": {…}}`;
/// - `POST /api/v1/events/batch` takes `{"events": [… up to 100]}` and answers `{"events": […]}`.
///
/// A bad event refuses the request with Lago's 422 `validation_errors` (`error_details` by
/// field, or by position in a batch), nothing recorded. Mapping: `transaction_id` is the id,
/// `external_subscription_id` (or the older `external_customer_id`) the customer, `code` the
/// name, `timestamp` (Unix seconds, a number or a string; the time of receipt when absent), and
/// `properties.<quantity_property>` (`value` unless `serve.compat.lago` says otherwise) the
/// quantity; the other properties stay properties.
public struct LagoDoor: IngestDoor {
    public let prefix = "lago"
    public var settingsKeys: Set<String> { ["quantity_property"] }
    /// Lago's batch limit.
    static let batchLimit = 100

    public init() {}

    public func handle(_ request: IngestDoorRequest, context: IngestDoorContext) async -> IngestDoorResponse {
        guard let token = request.bearerToken, context.authorises(token) else {
            return Self.error(
                401, "Unauthorized",
                detail:
                    "the API key is not one of usage-billing serve's serve.tokens. Give the Lago client the ingest token as its api_key."
            )
        }
        let batch: Bool
        switch (request.method, request.path) {
        case ("POST", "/api/v1/events"): batch = false
        case ("POST", "/api/v1/events/batch"): batch = true
        default:
            return Self.error(
                404, "Not Found", code: "not_found",
                detail:
                    "usage-billing serve speaks only Lago's event ingest API (\(request.method) /lago\(request.path) is not it). Give metering its own client, e.g. "
                    + "metering = Client(api_key=INGEST_TOKEN, api_url=\"http://HOST:8480/lago/\"), and keep your usual client for the rest of Lago."
            )
        }
        guard case .object(let body)? = JSONValue.parse(request.body) else {
            return Self.error(400, "BadRequest: the body must be a JSON object")
        }
        let items: [JSONValue]
        if batch {
            let limit = min(Self.batchLimit, context.maxEvents)
            guard let events = body["events"]?.arrayValue, !events.isEmpty else {
                return Self.error(400, "BadRequest: param is missing or the value is empty: events")
            }
            guard events.count <= limit else {
                return Self.validation([
                    "events": .array([
                        .string("too_many_events: at most \(limit) per batch, this one has \(events.count)")
                    ])
                ])
            }
            items = events
        } else {
            guard let event = body["event"], case .object = event else {
                return Self.error(400, "BadRequest: param is missing or the value is empty: event")
            }
            items = [event]
        }
        let property = context.settings["quantity_property"]?.stringValue ?? "value"
        let now = Date()
        var taken: [(event: UsageEvent, hasQuantity: Bool)] = []
        var takenProperties: [JSONValue] = []
        var problems: [String: JSONValue] = [:]
        for (i, item) in items.enumerated() {
            switch Self.event(item, property: property, now: now) {
            case .failure(let invalid):
                let details = JSONValue.object(invalid.fields.mapValues { .array([.string($0)]) })
                problems[batch ? "\(i)" : ""] = details
            case .success(let event):
                taken.append(event)
                takenProperties.append(item["properties"] ?? .null)
            }
        }
        if !problems.isEmpty {
            return Self.validation(batch ? problems : Self.fields(problems[""]))
        }
        let results: [IngestDoorResult]
        do {
            results = try await context.record(taken, "properties.\(property)")
        } catch {
            return Self.error(
                503, "Service Unavailable", code: "service_unavailable",
                detail:
                    "Nothing was recorded: \(IngestDoorUnavailable.of(error).reason). Retry with the same transaction ids.",
                headers: [IngestDoorUnavailable.of(error).header])
        }
        var refused: [String: JSONValue] = [:]
        for (i, result) in results.enumerated() {
            guard case .refused(let field, let reason, let fix) = result else { continue }
            let detail: [String: JSONValue] = [field: .array([.string("\(reason). \(fix)")])]
            if batch { refused["\(i)"] = .object(detail) } else { refused = detail }
        }
        if !refused.isEmpty {
            // The others are recorded; a resend with the same transaction ids records nothing twice.
            return Self.validation(refused)
        }
        let answered = zip(taken, takenProperties).map { Self.answer($0.event, properties: $1, now: now) }
        return .json(200, batch ? .object(["events": .array(answered)]) : .object(["event": answered[0]]))
    }

    static func event(_ value: JSONValue, property: String, now: Date) -> Result<
        (event: UsageEvent, hasQuantity: Bool), Invalid
    > {
        guard case .object(let o) = value else { return .failure(Invalid(fields: ["event": "must be a JSON object"])) }
        var fields: [String: String] = [:]
        let id = o["transaction_id"]?.stringValue ?? ""
        if id.isEmpty {
            fields["transaction_id"] = "value_is_mandatory (a key per event, so a resent request is billed once)"
        }
        let code = o["code"]?.stringValue ?? ""
        if code.isEmpty { fields["code"] = "value_is_mandatory" }
        let customer = o["external_subscription_id"]?.stringValue ?? o["external_customer_id"]?.stringValue ?? ""
        if customer.isEmpty { fields["external_subscription_id"] = "value_is_mandatory" }
        var timestamp = now
        switch o["timestamp"] {
        case nil, .null?: break
        case .number(let seconds)?: timestamp = Date(timeIntervalSince1970: seconds)
        case .string(let text)?:
            if let seconds = Double(text) {
                timestamp = Date(timeIntervalSince1970: seconds)
            } else if let date = RFC3339.parse(text) {
                timestamp = date
            } else {
                fields["timestamp"] = "invalid_timestamp: write Unix seconds, e.g. 1765108980"
            }
        default: fields["timestamp"] = "invalid_timestamp: write Unix seconds, e.g. 1765108980"
        }
        let split = IngestDoorProperties.split(o["properties"], quantityProperty: property, door: "lago")
        if let problem = split.problems.first { fields["properties"] = problem }
        guard fields.isEmpty else { return .failure(Invalid(fields: fields)) }
        return .success(
            (
                UsageEvent(
                    id: id, name: code, customer: customer, timestamp: timestamp, quantity: split.quantity,
                    properties: split.properties),
                split.hasQuantity
            ))
    }

    static func fields(_ value: JSONValue?) -> [String: JSONValue] {
        if case .object(let o)? = value { return o }
        return [:]
    }

    struct Invalid: Error {
        var fields: [String: String]
    }

    /// The event as Lago answers it.
    static func answer(_ event: UsageEvent, properties: JSONValue, now: Date) -> JSONValue {
        .object([
            "lago_id": .string("ub_" + event.id), "transaction_id": .string(event.id), "lago_customer_id": .null,
            "lago_subscription_id": .null,
            "external_subscription_id": .string(event.customer), "code": .string(event.name),
            "timestamp": .string(RFC3339.format(event.timestamp)),
            "precise_total_amount_cents": .null, "properties": properties, "created_at": .string(RFC3339.format(now)),
        ])
    }

    /// Lago's error body: `{"status", "error", "code"?, "error_details"?}`.
    static func error(
        _ status: Int, _ error: String, code: String? = nil, detail: String? = nil,
        headers: [(name: String, value: String)] = []
    ) -> IngestDoorResponse {
        var body: [String: JSONValue] = ["status": .number(Double(status)), "error": .string(error)]
        if let code { body["code"] = .string(code) }
        if let detail { body["error_details"] = .object(["message": .string(detail)]) }
        return .json(status, .object(body), headers: headers)
    }

    static func validation(_ details: [String: JSONValue]) -> IngestDoorResponse {
        .json(
            422,
            .object([
                "status": .number(422), "error": .string("Unprocessable Entity"), "code": .string("validation_errors"),
                "error_details": .object(details),
            ]))
    }
}
