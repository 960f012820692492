import Foundation
import UsageBilling

/// Metronome's ingest API as `usage-billing serve` speaks it under `/metronome`: metronome-sdk
/// with `base_url="http://HOST:8480/metronome"` and the ingest token as its bearer token keeps
/// calling `v1.usage.ingest(usage=[...])`. `POST /v1/ingest` takes a bare array of up to 100
/// events and answers 200 with no body once all are recorded; a bad event refuses the request
/// with Metronome's `{"message": ...}`, nothing recorded.
///
/// Mapping: `transaction_id` is the id, `customer_id` the customer (an ingest alias such as a
/// Stripe customer id stays as it is), `event_type` the name, `timestamp`; the quantity is the
/// property `serve.compat.metronome.quantity_property` names (`value` unless set), the other
/// properties stay properties.
public struct MetronomeDoor: IngestDoor {
    public let prefix = "metronome"
    public var settingsKeys: Set<String> { ["quantity_property"] }
    /// Metronome's batch limit.
    static let batchLimit = 100

    public init() {}

    public func handle(_ request: IngestDoorRequest, context: IngestDoorContext) async -> IngestDoorResponse {
        guard let token = request.bearerToken, context.authorises(token) else {
            return Self.message(
                401,
                "Unauthorized: the bearer token is not one of usage-billing serve's serve.tokens. Give the Metronome client the ingest token; your Metronome token stays in the routing config."
            )
        }
        guard request.method == "POST", request.path == "/v1/ingest" else {
            return Self.message(
                404,
                "Not found: usage-billing serve speaks only Metronome's ingest API (\(request.method) /metronome\(request.path) is not it). Give metering its own client, e.g. "
                    + "metering = metronome.Metronome(bearer_token=INGEST_TOKEN, base_url=\"http://HOST:8480/metronome\"), and keep your usual client for the rest of Metronome."
            )
        }
        guard let items = JSONValue.parse(request.body)?.arrayValue else {
            return Self.message(400, "body must be an array of 1 to \(Self.batchLimit) usage events")
        }
        let limit = min(Self.batchLimit, context.maxEvents)
        guard !items.isEmpty, items.count <= limit else {
            return Self.message(400, "body must be an array of 1 to \(limit) usage events; this one has \(items.count)")
        }
        let property = context.settings["quantity_property"]?.stringValue ?? "value"
        var batch: [(event: UsageEvent, hasQuantity: Bool)] = []
        for (i, item) in items.enumerated() {
            switch Self.event(item, property: property) {
            case .failure(let invalid): return Self.message(400, "body/\(i): \(invalid.problem)")
            case .success(let event): batch.append(event)
            }
        }
        let results: [IngestDoorResult]
        do {
            results = try await context.record(batch, "properties.\(property)")
        } catch {
            return .json(
                503,
                .object([
                    "message": .string(
                        "Nothing was recorded: \(IngestDoorUnavailable.of(error).reason). Retry with the same transaction ids."
                    )
                ]),
                headers: [IngestDoorUnavailable.of(error).header])
        }
        let refused = results.enumerated().compactMap { i, result -> String? in
            if case .refused(let field, let reason, let fix) = result {
                return "body/\(i) (\(field)): \(reason). \(fix)"
            }
            return nil
        }
        if !refused.isEmpty {
            // Those taken are recorded; the message names each refused one (a resend with the
            // same transaction ids records nothing twice).
            return Self.message(400, refused.joined(separator: "; "))
        }
        return IngestDoorResponse(status: 200)
    }

    static func event(_ value: JSONValue, property: String) -> Result<(event: UsageEvent, hasQuantity: Bool), Invalid> {
        guard case .object(let o) = value else { return .failure(Invalid(problem: "an event must be a JSON object")) }
        guard let id = o["transaction_id"]?.stringValue, !id.isEmpty else {
            return .failure(
                Invalid(problem: "transaction_id is required (a key per event, so a resent request is billed once)"))
        }
        guard let customer = o["customer_id"]?.stringValue, !customer.isEmpty else {
            return .failure(Invalid(problem: "customer_id is required"))
        }
        guard let name = o["event_type"]?.stringValue, !name.isEmpty else {
            return .failure(Invalid(problem: "event_type is required"))
        }
        guard let timestamp = o["timestamp"]?.stringValue.flatMap(RFC3339.parse) else {
            return .failure(Invalid(problem: "timestamp must be an RFC 3339 time, e.g. 2026-12-07T12:03:00Z"))
        }
        let split = IngestDoorProperties.split(o["properties"], quantityProperty: property, door: "metronome")
        if let problem = split.problems.first { return .failure(Invalid(problem: problem)) }
        return .success(
            (
                UsageEvent(
                    id: id, name: name, customer: customer, timestamp: timestamp, quantity: split.quantity,
                    properties: split.properties),
                split.hasQuantity
            ))
    }

    /// Why an event was not taken.
    struct Invalid: Error {
        var problem: String
    }

    static func message(_ status: Int, _ text: String) -> IngestDoorResponse {
        .json(status, .object(["message": .string(text)]))
    }
}
