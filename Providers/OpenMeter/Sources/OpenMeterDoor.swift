import Foundation
import UsageBilling

/// OpenMeter's ingest API as `usage-billing serve` speaks it under `/openmeter`: the `openmeter`
/// SDK with `Client(endpoint="http://HOST:8480/openmeter", token=INGEST_TOKEN)` keeps calling
/// `events.ingest_event(...)` and `events.ingest_events([...])`.
/// - `POST /api/v1/events` (self-hosted and OpenMeter Cloud) answers 204 once every event is
///   recorded;
/// - `POST /v3/openmeter/events` (Kong Konnect Metering, whose base is
///   `https://{region}.api.konghq.com/v3`) answers 202.
///
/// Both take `application/cloudevents+json` (one event), `application/cloudevents-batch+json`
/// (an array) and `application/json` (either). A body that does not parse, or an event that is
/// not a valid CloudEvent, refuses the request with nothing recorded, as OpenMeter does; errors
/// are RFC 7807 problem documents. Mapping: `id` is the id, `subject` the customer, `type` the
/// name, `time`, and `data.<quantity_property>` (`value` unless `serve.compat.openmeter` says
/// otherwise) the quantity; the rest of `data` become properties.
public struct OpenMeterDoor: IngestDoor {
    public let prefix = "openmeter"
    public var settingsKeys: Set<String> { ["quantity_property"] }

    public init() {}

    public func handle(_ request: IngestDoorRequest, context: IngestDoorContext) async -> IngestDoorResponse {
        guard let token = request.bearerToken, context.authorises(token) else {
            return Self.problem(
                401,
                "the bearer token is not one of usage-billing serve's serve.tokens. Give the OpenMeter client the ingest token; your OpenMeter token stays in the routing config."
            )
        }
        let accepted: Int
        switch (request.method, request.path) {
        case ("POST", "/api/v1/events"): accepted = 204
        case ("POST", "/v3/openmeter/events"): accepted = 202
        default:
            return Self.problem(
                404,
                "usage-billing serve speaks only OpenMeter's event ingest API (\(request.method) /openmeter\(request.path) is not it). Give metering its own client, e.g. "
                    + "metering = openmeter.Client(endpoint=\"http://HOST:8480/openmeter\", token=INGEST_TOKEN), and keep your usual client for the rest of OpenMeter."
            )
        }
        let type =
            request.header("Content-Type")?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces)
            .lowercased() ?? ""
        guard ["application/cloudevents+json", "application/cloudevents-batch+json", "application/json"].contains(type)
        else {
            return Self.problem(
                400,
                "invalid content type: \(type.isEmpty ? "none" : type). Send application/cloudevents+json (one event) or application/cloudevents-batch+json (an array)."
            )
        }
        let items: [JSONValue]
        switch (type, JSONValue.parse(request.body)) {
        case ("application/cloudevents+json", .object(let o)?), ("application/json", .object(let o)?):
            items = [.object(o)]
        case ("application/cloudevents-batch+json", .array(let a)?), ("application/json", .array(let a)?): items = a
        default:
            return Self.problem(
                400,
                "invalid event: the body is not \(type == "application/cloudevents-batch+json" ? "a JSON array of CloudEvents" : type == "application/json" ? "a CloudEvent or an array of them" : "one CloudEvent (a JSON object)")."
            )
        }
        guard !items.isEmpty else { return Self.problem(400, "invalid event: no events found") }
        guard items.count <= context.maxEvents else {
            return Self.problem(
                400,
                "at most \(context.maxEvents) events per request (serve.max_events_per_request); this one has \(items.count). Send smaller batches."
            )
        }
        let property = context.settings["quantity_property"]?.stringValue ?? "value"
        var batch: [(event: UsageEvent, hasQuantity: Bool)] = []
        for (i, item) in items.enumerated() {
            switch CloudEventDecoding.event(item, quantityProperty: property) {
            case .failure(let p):
                return Self.problem(
                    400,
                    "invalid event: event \(i)\(p.id.map { " (id \($0))" } ?? "")\(p.field.isEmpty ? "" : ", \(p.field)"): \(p.reason). \(p.fix). Nothing was recorded."
                )
            case .success(let read): batch.append((read.event, !read.missingQuantity))
            }
        }
        let results: [IngestDoorResult]
        do {
            results = try await context.record(batch, "data.\(property)")
        } catch {
            return Self.problem(
                503, "Nothing was recorded: \(IngestDoorUnavailable.of(error).reason). Retry with the same event ids.",
                headers: [IngestDoorUnavailable.of(error).header])
        }
        let refused = zip(batch, results).enumerated().compactMap { i, pair -> String? in
            if case .refused(let field, let reason, let fix) = pair.1 {
                return "event \(i) (id \(pair.0.event.id)), \(field): \(reason). \(fix)"
            }
            return nil
        }
        if !refused.isEmpty {
            // The others are recorded; a resend with the same ids records nothing twice.
            return Self.problem(400, "invalid event: " + refused.joined(separator: "; "))
        }
        return IngestDoorResponse(status: accepted)
    }

    /// OpenMeter's problem document (RFC 7807), `detail` carrying the message.
    static func problem(_ status: Int, _ detail: String, headers: [(name: String, value: String)] = [])
        -> IngestDoorResponse
    {
        let title =
            [400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 503: "Service Unavailable"][status] ?? "Error"
        return IngestDoorResponse(
            status: status, headers: [("Content-Type", "application/problem+json")] + headers,
            body: JSONValue.object([
                "type": .string("about:blank"), "title": .string(title), "status": .number(Double(status)),
                "detail": .string(detail),
            ]).encoded())
    }
}
