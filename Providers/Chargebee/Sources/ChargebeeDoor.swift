import Foundation
import UsageBilling

/// Chargebee's Usage Events API as `usage-billing serve` speaks it under `/chargebee`:
/// `POST /api/v2/usage_events` (one event, answered `{"usage_event": …}`) and
/// `POST /api/v2/batch/usage_events` (up to 500, answered `{"batch_id", "failed_events"}` with
/// each event not taken and its reason), with the ingest token as the Basic-auth user name, as
/// Chargebee's SDKs send their API key.
///
/// Chargebee's SDKs build the host from the site name (`https://{site}.ingest.chargebee.com`)
/// and have no base-URL setting that adds a path, so an app points its HTTP call, not the SDK,
/// at `http://HOST:8480/chargebee/api/v2/…` (see the README).
///
/// Mapping: `deduplication_id` is the id, `subscription_id` the customer, `usage_timestamp`
/// (epoch milliseconds) the time; the quantity is `properties.<quantity_property>` (`quantity`
/// unless `serve.compat.chargebee` says otherwise). Chargebee's events have no name: the name is
/// `properties.<event_name_property>` when that setting is given and the property is there, else
/// the `event_name` setting (`usage_event` unless set). The other properties stay properties.
public struct ChargebeeDoor: IngestDoor {
    public let prefix = "chargebee"
    public var settingsKeys: Set<String> { ["quantity_property", "event_name", "event_name_property"] }
    /// Chargebee's batch limit.
    static let batchLimit = 500

    public init() {}

    public func check(_ settings: [String: JSONValue]) -> [(key: String, message: String, fix: String)] {
        IngestDoorProperties.checkQuantityProperty(settings)
            + ["event_name", "event_name_property"].compactMap { key in
                guard let value = settings[key], value.stringValue?.isEmpty ?? true else { return nil }
                return (
                    key, "\(key) must be a non-empty string",
                    key == "event_name"
                        ? "write e.g. event_name: api_requests"
                        : "write the property that names the event, e.g. event_name_property: metric"
                )
            }
    }

    public func handle(_ request: IngestDoorRequest, context: IngestDoorContext) async -> IngestDoorResponse {
        guard let key = request.basicUser ?? request.bearerToken, context.authorises(key) else {
            return Self.error(
                401, "api_authentication_failed", type: "untyped",
                "Sorry, authentication failed: the API key is not one of usage-billing serve's serve.tokens. Give your Chargebee calls the ingest token as the API key; your Chargebee key stays in the routing config."
            )
        }
        let batch: Bool
        switch (request.method, request.path) {
        case ("POST", "/api/v2/usage_events"): batch = false
        case ("POST", "/api/v2/batch/usage_events"): batch = true
        default:
            return Self.error(
                404, "resource_not_found", type: "invalid_request",
                "usage-billing serve speaks only Chargebee's usage events ingest API (\(request.method) /chargebee\(request.path) is not it): POST /chargebee/api/v2/usage_events or /chargebee/api/v2/batch/usage_events. Keep your usual Chargebee client for the rest."
            )
        }
        guard case .object(let body)? = JSONValue.parse(request.body) else {
            return Self.error(
                400, "invalid_request", type: "invalid_request",
                "the body must be a JSON object (Content-Type: application/json)")
        }
        let items: [JSONValue]
        if batch {
            let limit = min(Self.batchLimit, context.maxEvents)
            guard let events = body["events"]?.arrayValue, (1...limit).contains(events.count) else {
                return Self.error(
                    400, "param_wrong_value", type: "invalid_request", "events : must hold 1 to \(limit) events",
                    param: "events")
            }
            items = events
        } else {
            items = [.object(body)]
        }
        let settings = Mapping(context.settings)
        var failed: [JSONValue] = []
        var taken: [(event: UsageEvent, hasQuantity: Bool)] = []
        for item in items {
            switch settings.event(item) {
            case .failure(let problem):
                if !batch {
                    return Self.error(
                        400, "param_wrong_value", type: "invalid_request", "\(problem.param) : \(problem.message)",
                        param: problem.param)
                }
                failed.append(
                    Self.failedEvent(
                        item["deduplication_id"]?.stringValue ?? "", "param_wrong_value",
                        "\(problem.param) : \(problem.message)"))
            case .success(let event): taken.append(event)
            }
        }
        let results: [IngestDoorResult]
        do {
            results = taken.isEmpty ? [] : try await context.record(taken, "properties.\(settings.quantityProperty)")
        } catch {
            return Self.error(
                503, "internal_temporary_error", type: "untyped",
                "Nothing was recorded: \(IngestDoorUnavailable.of(error).reason). Retry with the same deduplication ids.",
                headers: [IngestDoorUnavailable.of(error).header])
        }
        for (item, result) in zip(taken, results) {
            guard case .refused(let field, let reason, let fix) = result else { continue }
            if !batch {
                return Self.error(
                    400, "param_wrong_value", type: "invalid_request", "\(field) : \(reason). \(fix)", param: field)
            }
            failed.append(Self.failedEvent(item.event.id, "param_wrong_value", "\(field) : \(reason). \(fix)"))
        }
        if !batch, let event = taken.first?.event {
            return .json(
                200,
                .object([
                    "usage_event": .object([
                        "deduplication_id": .string(event.id), "subscription_id": .string(event.customer),
                        "usage_timestamp": .number((event.timestamp.timeIntervalSince1970 * 1000).rounded()),
                        "properties": items.first?["properties"] ?? .object([:]), "object": .string("usage_event"),
                    ])
                ]))
        }
        let batchID =
            "batch_ub_" + EventID.derived(from: taken.map(\.event.id) + ["\(Date().timeIntervalSince1970)"]).suffix(20)
        return .json(200, .object(["batch_id": .string(String(batchID)), "failed_events": .array(failed)]))
    }

    /// The door's mapping settings.
    struct Mapping {
        var quantityProperty: String
        var eventName: String
        var eventNameProperty: String?

        init(_ settings: [String: JSONValue]) {
            quantityProperty = settings["quantity_property"]?.stringValue ?? "quantity"
            eventName = settings["event_name"]?.stringValue ?? "usage_event"
            eventNameProperty = settings["event_name_property"]?.stringValue
        }

        /// The event one usage event makes, or the parameter at fault.
        func event(_ value: JSONValue) -> Result<(event: UsageEvent, hasQuantity: Bool), Problem> {
            guard case .object(let o) = value else {
                return .failure(Problem(param: "events", message: "an event must be a JSON object"))
            }
            guard let id = o["deduplication_id"]?.stringValue, !id.isEmpty else {
                return .failure(
                    Problem(
                        param: "deduplication_id",
                        message: "cannot be blank (a key per event, so a resent request is billed once)"))
            }
            guard let subscription = o["subscription_id"]?.stringValue, !subscription.isEmpty else {
                return .failure(Problem(param: "subscription_id", message: "cannot be blank"))
            }
            guard
                let millis = o["usage_timestamp"]?.numberValue ?? o["usage_timestamp"]?.stringValue.flatMap(Double.init)
            else {
                return .failure(
                    Problem(
                        param: "usage_timestamp", message: "must be the time in epoch milliseconds, e.g. 1765108980000")
                )
            }
            var properties = o["properties"]
            var name = eventName
            if let nameProperty = eventNameProperty, case .object(var props)? = properties,
                let value = props[nameProperty]?.stringValue, !value.isEmpty
            {
                name = value
                props[nameProperty] = nil
                properties = .object(props)
            }
            let split = IngestDoorProperties.split(properties, quantityProperty: quantityProperty, door: "chargebee")
            if let problem = split.problems.first { return .failure(Problem(param: "properties", message: problem)) }
            return .success(
                (
                    UsageEvent(
                        id: id, name: name, customer: subscription,
                        timestamp: Date(timeIntervalSince1970: millis / 1000),
                        quantity: split.quantity, properties: split.properties), split.hasQuantity
                ))
        }
    }

    struct Problem: Error {
        var param: String
        var message: String
    }

    static func failedEvent(_ id: String, _ code: String, _ message: String) -> JSONValue {
        .object(["deduplication_id": .string(id), "error_code": .string(code), "error_message": .string(message)])
    }

    /// Chargebee's error body, as its SDKs read it (`api_error_code` picks the exception).
    static func error(
        _ status: Int, _ code: String, type: String, _ message: String, param: String? = nil,
        headers: [(name: String, value: String)] = []
    ) -> IngestDoorResponse {
        var body: [String: JSONValue] = [
            "message": .string(message), "type": .string(type), "api_error_code": .string(code),
            "http_status_code": .number(Double(status)),
        ]
        if let param { body["param"] = .string(param) }
        return .json(status, .object(body), headers: headers)
    }
}
