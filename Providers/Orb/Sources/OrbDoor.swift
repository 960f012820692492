import Foundation
import UsageBilling

/// Orb's ingest API as `usage-billing serve` speaks it under `/orb`: orb-billing (or any Orb
/// SDK) with `base_url="http://HOST:8480/orb/v1"` and the ingest token as its API key keeps
/// calling `events.ingest(...)`. `POST /v1/ingest` takes `{"events": [...]}` and answers Orb's
/// `{"validation_failed": [...]}`: each event not taken with its `idempotency_key` and reasons;
/// duplicates are success, as at Orb.
///
/// Mapping: `idempotency_key` is the id, `external_customer_id` (or `customer_id`) the
/// customer, `event_name` the name, `timestamp`; the quantity is the property
/// `serve.compat.orb.quantity_property` names (`value` unless set), the other properties stay
/// properties. Orb has no quantity of its own: an event without that property is taken only by
/// a route that counts events.
public struct OrbDoor: IngestDoor {
    public let prefix = "orb"
    public var settingsKeys: Set<String> { ["quantity_property"] }

    public init() {}

    public func handle(_ request: IngestDoorRequest, context: IngestDoorContext) async -> IngestDoorResponse {
        guard let token = request.bearerToken, context.authorises(token) else {
            return Self.problem(
                401, "401-authentication-error", "Authentication error",
                "The API key is not one of usage-billing serve's serve.tokens: give the Orb client the ingest token as its api_key; your Orb key stays in the routing config."
            )
        }
        guard request.method == "POST", request.path == "/v1/ingest" else {
            return Self.problem(
                404, "404-not-found", "Not found",
                "usage-billing serve speaks only Orb's ingest API (\(request.method) /orb\(request.path) is not it): give metering its own client, e.g. "
                    + "metering = orb.Orb(api_key=INGEST_TOKEN, base_url=\"http://HOST:8480/orb/v1\"), and keep your usual client for the rest of Orb."
            )
        }
        guard case .object(let body)? = JSONValue.parse(request.body), let events = body["events"]?.arrayValue else {
            return Self.validation(["body"], "the body must be a JSON object with an events array")
        }
        guard !events.isEmpty, events.count <= context.maxEvents else {
            return Self.validation(
                ["body", "events"],
                events.isEmpty
                    ? "events must not be empty"
                    : "at most \(context.maxEvents) events per request (serve.max_events_per_request); this one has \(events.count)"
            )
        }
        let property = context.settings["quantity_property"]?.stringValue ?? "value"
        var failed: [JSONValue] = []
        var batch: [(event: UsageEvent, hasQuantity: Bool)] = []
        var keys: [String] = []
        for (i, value) in events.enumerated() {
            switch Self.event(value, property: property) {
            case .failure(let invalid):
                let reasons = invalid.reasons
                // Without its key the event cannot be named: the whole request is refused, as Orb does.
                guard let key = value["idempotency_key"]?.stringValue else {
                    return Self.validation(["body", "events", "\(i)", "idempotency_key"], "field required")
                }
                failed.append(
                    .object([
                        "idempotency_key": .string(key), "validation_errors": .array(reasons.map(JSONValue.string)),
                    ]))
            case .success(let item):
                batch.append(item)
                keys.append(item.event.id)
            }
        }
        let results: [IngestDoorResult]
        do {
            results = batch.isEmpty ? [] : try await context.record(batch, "properties.\(property)")
        } catch {
            return Self.problem(
                503, "503-service-unavailable", "Service unavailable",
                "Nothing was recorded: \(IngestDoorUnavailable.of(error).reason). Retry with the same idempotency keys.",
                headers: [IngestDoorUnavailable.of(error).header])
        }
        for (key, result) in zip(keys, results) {
            if case .refused(_, let reason, let fix) = result {
                failed.append(
                    .object([
                        "idempotency_key": .string(key), "validation_errors": .array([.string("\(reason). \(fix)")]),
                    ]))
            }
        }
        return .json(200, .object(["validation_failed": .array(failed), "debug": .null]))
    }

    /// The event one ingest item makes, or its validation errors.
    static func event(_ value: JSONValue, property: String) -> Result<(event: UsageEvent, hasQuantity: Bool), Invalid> {
        guard case .object(let o) = value else { return .failure(Invalid(reasons: ["an event must be a JSON object"])) }
        var errors: [String] = []
        let key = o["idempotency_key"]?.stringValue ?? ""
        if key.isEmpty {
            errors.append("idempotency_key is required: a key per event, so a resent request is billed once")
        }
        let name = o["event_name"]?.stringValue ?? ""
        if name.isEmpty { errors.append("event_name is required") }
        let customer = o["external_customer_id"]?.stringValue ?? o["customer_id"]?.stringValue ?? ""
        if customer.isEmpty { errors.append("external_customer_id or customer_id is required") }
        let timestamp = o["timestamp"]?.stringValue.flatMap(RFC3339.parse)
        if timestamp == nil { errors.append("timestamp must be an ISO 8601 time, e.g. 2026-12-07T12:03:00Z") }
        let split = IngestDoorProperties.split(o["properties"], quantityProperty: property, door: "orb")
        errors += split.problems
        guard errors.isEmpty, let timestamp else { return .failure(Invalid(reasons: errors)) }
        return .success(
            (
                UsageEvent(
                    id: key, name: name, customer: customer, timestamp: timestamp, quantity: split.quantity,
                    properties: split.properties),
                split.hasQuantity
            ))
    }

    /// Why an ingest item was not taken.
    struct Invalid: Error {
        var reasons: [String]
    }

    /// Orb's problem document (`type`, `status`, `title`, `detail`).
    static func problem(
        _ status: Int, _ anchor: String, _ title: String, _ detail: String,
        headers: [(name: String, value: String)] = []
    ) -> IngestDoorResponse {
        .json(
            status,
            .object([
                "type": .string("https://docs.withorb.com/reference/error-responses#\(anchor)"),
                "status": .number(Double(status)),
                "title": .string(title), "detail": .string(detail),
            ]), headers: headers)
    }

    static func validation(_ loc: [String], _ message: String) -> IngestDoorResponse {
        .json(
            400,
            .object([
                "type": .string("https://docs.withorb.com/reference/error-responses#400-request-validation-errors"),
                "status": .number(400),
                "title": .string("Request validation error"), "detail": .string(message),
                "validation_errors": .array([
                    .object([
                        "loc": .array(loc.map(JSONValue.string)), "msg": .string(message),
                        "type": .string("value_error"),
                    ])
                ]),
            ]))
    }
}
