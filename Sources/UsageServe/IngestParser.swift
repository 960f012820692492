import Foundation
import UsageBilling

/// The body formats `POST /v1/events` takes, by `Content-Type`.
public enum IngestFormat: String, Sendable, CaseIterable {
    /// `application/json`: one event object, or an array of them (the shape `import` reads).
    case json
    /// `application/x-ndjson`: one event object per line.
    case ndjson
    /// `application/cloudevents+json`: one CloudEvent (OpenMeter's ingest shape).
    case cloudEvent
    /// `application/cloudevents-batch+json`: an array of CloudEvents.
    case cloudEventBatch

    /// The media types, as clients send them.
    public var mediaType: String {
        switch self {
        case .json: "application/json"
        case .ndjson: "application/x-ndjson"
        case .cloudEvent: "application/cloudevents+json"
        case .cloudEventBatch: "application/cloudevents-batch+json"
        }
    }

    /// The format a `Content-Type` names (parameters such as `charset` ignored); nil for others.
    public init?(contentType: String?) {
        guard let type = contentType?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased()
        else { return nil }
        guard let format = Self.allCases.first(where: { $0.mediaType == type }) else { return nil }
        self = format
    }
}

/// One event of a request that was not taken, with where it was and what to change.
public struct IngestRefusal: Error, Sendable, Hashable {
    /// 0-based position in the request (the array index, or the NDJSON line's event number).
    public var index: Int
    /// 1-based NDJSON line, when the body is NDJSON.
    public var line: Int?
    /// The event's id, when it had one.
    public var id: String?
    /// The field at fault (`timestamp`, `data.value`, `name`).
    public var field: String
    /// What is wrong.
    public var reason: String
    /// What to change.
    public var fix: String

    var json: JSONValue {
        var object: [String: JSONValue] = [
            "index": .number(Double(index)), "field": .string(field), "reason": .string(reason), "fix": .string(fix),
        ]
        if let line { object["line"] = .number(Double(line)) }
        if let id { object["id"] = .string(id) }
        return .object(object)
    }
}

/// A body that is not what its `Content-Type` says (not JSON, or not the expected shape): the
/// whole request is refused, nothing recorded.
public struct MalformedBody: Error, Sendable, Hashable {
    public var reason: String
    public var fix: String
}

/// What a body held: its events with their positions, the refusals, and the CloudEvents whose
/// `data` had no quantity field.
public struct IngestParsed: Sendable {
    public var events: [(index: Int, event: UsageEvent)] = []
    public var refusals: [IngestRefusal] = []
    /// Positions of CloudEvents without the quantity field, which read as quantity 1: the handler
    /// takes them only on a route that counts events, and refuses them otherwise.
    public var missingQuantity: Set<Int> = []
}

/// Turns a request body into events, each one valid or refused on its own: a bad event never
/// fails its neighbours.
public enum IngestParser {
    /// The CloudEvents binary-mode attributes of `headers` (``CloudEventDecoding/binaryModeAttributes(_:)``).
    public static func binaryModeAttributes(_ headers: [(name: String, value: String)]) -> [String: String]? {
        CloudEventDecoding.binaryModeAttributes(headers)
    }

    /// One CloudEvent sent in binary mode: its attributes from the `ce-` headers, its `data`
    /// the body (a JSON object, as the CloudEvents SDKs' `to_binary` sends it).
    public static func parseBinary(_ body: Data, attributes: [String: String], quantityProperty: String)
        throws(MalformedBody) -> IngestParsed
    {
        var object: [String: JSONValue] = attributes.mapValues(JSONValue.string)
        if !body.isEmpty {
            guard let data = JSONValue.parse(body) else {
                throw MalformedBody(
                    reason: "the body of a binary-mode CloudEvent (ce-* headers) is not JSON",
                    fix:
                        "send the event's data as a JSON object with Content-Type: application/json, e.g. {\"\(quantityProperty)\": 150}"
                )
            }
            object["data"] = data
        }
        var parsed = IngestParsed()
        take(.object(object), index: 0, line: nil, cloudEvents: true, quantityProperty: quantityProperty, into: &parsed)
        return parsed
    }

    /// The events of `body`, with their positions, and the refusals.
    /// - Parameter quantityProperty: for CloudEvents, the `data` field that carries the quantity
    ///   (the rest of `data` becomes properties).
    public static func parse(_ body: Data, format: IngestFormat, quantityProperty: String = "value")
        throws(MalformedBody) -> IngestParsed
    {
        var parsed = IngestParsed()
        func take(_ value: JSONValue, index: Int, line: Int?) {
            Self.take(
                value, index: index, line: line, cloudEvents: format == .cloudEvent || format == .cloudEventBatch,
                quantityProperty: quantityProperty, into: &parsed)
        }
        switch format {
        case .ndjson:
            var index = 0
            for (number, line) in body.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
                .enumerated()
            {
                let text = line.last == UInt8(ascii: "\r") ? line.dropLast() : line[...]
                if text.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
                if let value = JSONValue.parse(Data(text)) {
                    take(value, index: index, line: number + 1)
                } else {
                    parsed.refusals.append(
                        IngestRefusal(
                            index: index, line: number + 1, id: nil, field: "",
                            reason: "line \(number + 1) is not JSON",
                            fix: "write one JSON event object per line"))
                }
                index += 1
            }
        case .json, .cloudEvent, .cloudEventBatch:
            guard let root = JSONValue.parse(body) else {
                throw MalformedBody(
                    reason: "the body is not JSON",
                    fix:
                        "send \(format == .json ? "an event object or an array of them" : "CloudEvents JSON") as \(format.mediaType)"
                )
            }
            switch (format, root) {
            case (.json, .array(let items)), (.cloudEventBatch, .array(let items)):
                for (index, item) in items.enumerated() { take(item, index: index, line: nil) }
            case (.json, .object), (.cloudEvent, .object):
                take(root, index: 0, line: nil)
            case (.cloudEventBatch, _):
                throw MalformedBody(
                    reason: "a CloudEvents batch must be a JSON array",
                    fix: "send [ {…}, {…} ], or one event as application/cloudevents+json")
            case (.cloudEvent, .array):
                throw MalformedBody(
                    reason: "application/cloudevents+json carries one CloudEvent, and this body is an array",
                    fix: "send a batch as Content-Type: application/cloudevents-batch+json")
            case (.cloudEvent, _):
                throw MalformedBody(
                    reason: "a CloudEvent must be a JSON object",
                    fix: "send {\"specversion\": \"1.0\", \"id\": …, \"source\": …, \"type\": …}")
            default:
                throw MalformedBody(
                    reason: "the body must be a JSON object or an array of objects",
                    fix: "send {\"id\": …, \"name\": …} or [ {…}, {…} ]")
            }
        }
        return parsed
    }

    /// Adds one event (or its refusal) at `index` to `parsed`.
    private static func take(
        _ value: JSONValue, index: Int, line: Int?, cloudEvents: Bool, quantityProperty: String,
        into parsed: inout IngestParsed
    ) {
        var missing = false
        let result =
            cloudEvents
            ? cloudEvent(value, quantityProperty: quantityProperty, missingQuantity: &missing) : event(value)
        switch result {
        case .success(let e):
            parsed.events.append((index, e))
            if missing { parsed.missingQuantity.insert(index) }
        case .failure(var refusal):
            refusal.index = index
            refusal.line = line
            parsed.refusals.append(refusal)
        }
    }

    /// A refusal before its position is known.
    private static func refuse(_ id: String?, _ field: String, _ reason: String, _ fix: String) -> Result<
        UsageEvent, IngestRefusal
    > {
        .failure(IngestRefusal(index: 0, line: nil, id: id, field: field, reason: reason, fix: fix))
    }

    /// An event in the shape `import` reads: `id`, `name`, `customer`, `timestamp` (RFC 3339 or
    /// Unix seconds), `quantity` (number or decimal string, default 1), `properties`.
    static func event(_ value: JSONValue) -> Result<UsageEvent, IngestRefusal> {
        guard case .object(let o) = value else {
            return refuse(
                nil, "", "an event must be a JSON object",
                "send {\"id\": …, \"name\": …, \"customer\": …, \"timestamp\": …}")
        }
        let id = o["id"]?.stringValue
        guard let id, !id.isEmpty else {
            return refuse(
                nil, "id", "the event has no id",
                "give every event a stable id (e.g. a UUID made when the usage happened), so a retried request is not billed twice"
            )
        }
        if let unknown = o.keys.sorted().first(where: {
            !["id", "name", "customer", "timestamp", "quantity", "properties"].contains($0)
        }) {
            return refuse(
                id, unknown, "unknown field '\(unknown)'",
                "use id, name, customer, timestamp, quantity, properties (put your own fields under properties)")
        }
        guard let name = o["name"]?.stringValue, !name.isEmpty else {
            return refuse(id, "name", "the event has no name", "set name to the meter, e.g. api_request")
        }
        guard let customer = o["customer"]?.stringValue, !customer.isEmpty else {
            return refuse(id, "customer", "the event has no customer", "set customer to your own customer id")
        }
        let timestamp: Date
        switch o["timestamp"] {
        case .string(let text)?:
            guard let date = RFC3339.parse(text) else {
                return refuse(id, "timestamp", "timestamp '\(text)' is not RFC 3339", "write e.g. 2026-11-25T12:03:00Z")
            }
            timestamp = date
        case .number(let seconds)?: timestamp = Date(timeIntervalSince1970: seconds)
        default:
            return refuse(
                id, "timestamp", "the event has no timestamp", "write an RFC 3339 time such as 2026-11-25T12:03:00Z")
        }
        var quantity = Decimal(1)
        switch o["quantity"] {
        case nil, .null?: break
        case .number(let n)?: quantity = DecimalFormat.parse("\(n)") ?? Decimal(n)
        case .string(let text)?:
            guard let d = DecimalFormat.parse(text) else {
                return refuse(
                    id, "quantity", "quantity '\(text)' is not a decimal number", "write e.g. 150 or \"0.25\"")
            }
            quantity = d
        default:
            return refuse(id, "quantity", "quantity must be a number or a decimal string", "write e.g. 150 or \"0.25\"")
        }
        var properties: [String: UsageValue] = [:]
        switch o["properties"] {
        case nil, .null?: break
        case .object(let p)?:
            for (key, value) in p {
                guard let v = UsageValue(json: value) else {
                    return refuse(
                        id, "properties.\(key)", "property '\(key)' is not a string, number or bool",
                        "flatten it (no objects, arrays or null)")
                }
                properties[key] = v
            }
        default: return refuse(id, "properties", "properties must be an object", "write {\"region\": \"eu\"}")
        }
        return .success(
            UsageEvent(
                id: id, name: name, customer: customer, timestamp: timestamp, quantity: quantity, properties: properties
            ))
    }

    /// A CloudEvent as OpenMeter takes it (``CloudEventDecoding``).
    static func cloudEvent(_ value: JSONValue, quantityProperty: String, missingQuantity: inout Bool) -> Result<
        UsageEvent, IngestRefusal
    > {
        switch CloudEventDecoding.event(value, quantityProperty: quantityProperty) {
        case .success(let read):
            missingQuantity = read.missingQuantity
            return .success(read.event)
        case .failure(let problem):
            return refuse(problem.id, problem.field, problem.reason, problem.fix)
        }
    }
}
