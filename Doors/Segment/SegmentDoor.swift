import Foundation
import UsageBilling

/// Segment's HTTP Tracking API as `usage-billing serve` speaks it under `/segment`, so any
/// language's Segment library that already sends usage as `track` calls can meter through the
/// routing config: analytics-python with `analytics.host = "http://HOST:8480/segment"` and the
/// ingest token as its write key keeps calling `analytics.track(...)`. Segment is not a
/// destination; its events go wherever the routing config sends them.
/// - `POST /v1/batch` takes `{"batch": [messages]}`, `POST /v1/track` one message;
/// - the write key is the Basic-auth user name (or a bearer token, or the body's `writeKey`), as
///   Segment's libraries send it; the answer is Segment's `{"success": true}`.
///
/// Only `track` messages are usage: `identify`, `page`, `screen`, `group` and `alias` messages
/// in a batch are answered as taken and not recorded. A bad track message refuses the request
/// with Segment's `{"code", "message"}`, nothing recorded. Mapping: `messageId` is the id,
/// `userId` the customer, `event` the name, `timestamp` (ISO 8601; the time of receipt when
/// absent), and `properties.<quantity_property>` (`value` unless `serve.compat.segment` says
/// otherwise) the quantity; the other properties stay properties.
public struct SegmentDoor: IngestDoor {
    public let prefix = "segment"
    public var settingsKeys: Set<String> { ["quantity_property"] }
    /// The message types that are not usage.
    static let otherTypes: Set<String> = ["identify", "page", "screen", "group", "alias"]

    public init() {}

    public func handle(_ request: IngestDoorRequest, context: IngestDoorContext) async -> IngestDoorResponse {
        let single: Bool
        switch (request.method, request.path) {
        case ("POST", "/v1/batch"): single = false
        case ("POST", "/v1/track"): single = true
        default:
            return Self.error(
                404, "not_found",
                "usage-billing serve speaks only Segment's track and batch calls (\(request.method) /segment\(request.path) is not it): set the library's host to http://HOST:8480/segment."
            )
        }
        if let encoding = request.header("Content-Encoding"), encoding.lowercased() != "identity" {
            return Self.error(
                400, "unsupported_encoding",
                "Content-Encoding \(encoding) is not taken: switch the library's gzip option off (analytics.gzip = False)."
            )
        }
        guard case .object(let body)? = JSONValue.parse(request.body) else {
            return Self.error(
                400, "invalid_json",
                "the body must be a JSON object (\(single ? "one track call" : "{\"batch\": [...]}"))")
        }
        // The write key as Basic-auth user (the libraries' default), a bearer token (their OAuth
        // mode), or the body's writeKey.
        guard let key = request.basicUser ?? request.bearerToken ?? body["writeKey"]?.stringValue,
            context.authorises(key)
        else {
            return Self.error(
                401, "invalid_write_key",
                "the write key is not one of usage-billing serve's serve.tokens. Give the library the ingest token as its write key."
            )
        }
        let messages: [JSONValue]
        if single {
            messages = [.object(body)]
        } else {
            guard let batch = body["batch"]?.arrayValue else {
                return Self.error(400, "invalid_batch", "batch must be an array of messages")
            }
            messages = batch
        }
        let tracks = messages.filter { ($0["type"]?.stringValue ?? (single ? "track" : "")) == "track" }
        guard tracks.count <= context.maxEvents else {
            return Self.error(
                400, "batch_too_large",
                "at most \(context.maxEvents) track calls per request (serve.max_events_per_request); this one has \(tracks.count). Lower the library's upload_size."
            )
        }
        for (i, message) in messages.enumerated() {
            let type = message["type"]?.stringValue ?? (single ? "track" : "")
            guard type == "track" || Self.otherTypes.contains(type) else {
                return Self.error(
                    400, "invalid_type",
                    "batch[\(i)].type '\(type)' is not a Segment call type: use track (identify, page, screen, group and alias are taken and not recorded)"
                )
            }
        }
        let property = context.settings["quantity_property"]?.stringValue ?? "value"
        var taken: [(event: UsageEvent, hasQuantity: Bool)] = []
        for (i, message) in tracks.enumerated() {
            switch Self.event(message, property: property, now: Date()) {
            case .failure(let invalid):
                return Self.error(400, "invalid_track", "track call \(i): \(invalid.problem). Nothing was recorded.")
            case .success(let event): taken.append(event)
            }
        }
        guard !taken.isEmpty else { return .json(200, .object(["success": .bool(true)])) }
        let results: [IngestDoorResult]
        do {
            results = try await context.record(taken, "properties.\(property)")
        } catch {
            return Self.error(
                503, "service_unavailable",
                "Nothing was recorded: \(IngestDoorUnavailable.of(error).reason). Retry with the same message ids.",
                headers: [IngestDoorUnavailable.of(error).header])
        }
        let refused = zip(taken, results).compactMap { item, result -> String? in
            if case .refused(let field, let reason, let fix) = result {
                return "\(item.event.id) (\(field)): \(reason). \(fix)"
            }
            return nil
        }
        if !refused.isEmpty {
            // The others are recorded; a resend with the same message ids records nothing twice.
            return Self.error(400, "invalid_track", refused.joined(separator: "; "))
        }
        return .json(200, .object(["success": .bool(true)]))
    }

    static func event(_ value: JSONValue, property: String, now: Date) -> Result<
        (event: UsageEvent, hasQuantity: Bool), Invalid
    > {
        guard case .object(let o) = value else { return .failure(Invalid(problem: "a message must be a JSON object")) }
        guard let id = o["messageId"]?.stringValue, !id.isEmpty else {
            return .failure(
                Invalid(
                    problem: "messageId is required (Segment's libraries set one; a resent batch is billed once by it)")
            )
        }
        guard let name = o["event"]?.stringValue, !name.isEmpty else {
            return .failure(Invalid(problem: "event is required (\(id))"))
        }
        guard let customer = o["userId"]?.stringValue, !customer.isEmpty else {
            return .failure(
                Invalid(
                    problem:
                        "userId is required (\(id)): usage bills a known customer, so track with user_id, not only an anonymousId"
                ))
        }
        var timestamp = now
        if let text = o["timestamp"]?.stringValue {
            guard let date = RFC3339.parse(text) else {
                return .failure(Invalid(problem: "timestamp '\(text)' is not ISO 8601 (\(id))"))
            }
            timestamp = date
        }
        let split = IngestDoorProperties.split(o["properties"], quantityProperty: property, door: "segment")
        if let problem = split.problems.first { return .failure(Invalid(problem: "\(problem) (\(id))")) }
        return .success(
            (
                UsageEvent(
                    id: id, name: name, customer: customer, timestamp: timestamp, quantity: split.quantity,
                    properties: split.properties),
                split.hasQuantity
            ))
    }

    struct Invalid: Error {
        var problem: String
    }

    /// Segment's error body, as its libraries read it (`code`, `message`).
    static func error(_ status: Int, _ code: String, _ message: String, headers: [(name: String, value: String)] = [])
        -> IngestDoorResponse
    {
        .json(
            status, .object(["success": .bool(false), "code": .string(code), "message": .string(message)]),
            headers: headers)
    }
}
