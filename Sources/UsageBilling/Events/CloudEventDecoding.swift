import Foundation

/// Reads a CloudEvent (JSON format, CloudEvents 1.0) as OpenMeter takes it, into a
/// ``UsageEvent``: `id`, `type` (the event name), `subject` (the customer), `time`, and `data`,
/// whose `quantityProperty` is the quantity and whose other fields become properties. Shared by
/// `serve`'s `/v1/events` (CloudEvents content types) and OpenMeter's own ingest API.
public enum CloudEventDecoding {
    /// Why one CloudEvent was not taken: its id when it had one, the field, what is wrong, the fix.
    public struct Problem: Error, Sendable, Hashable {
        public var id: String?
        public var field: String
        public var reason: String
        public var fix: String
    }

    /// The event `value` describes, and whether its `data` lacked the quantity field (the event
    /// then reads as quantity 1, which only a route that counts events may take).
    public static func event(_ value: JSONValue, quantityProperty: String) -> Result<
        (event: UsageEvent, missingQuantity: Bool), Problem
    > {
        func refuse(_ id: String?, _ field: String, _ reason: String, _ fix: String) -> Result<
            (event: UsageEvent, missingQuantity: Bool), Problem
        > {
            .failure(Problem(id: id, field: field, reason: reason, fix: fix))
        }
        guard case .object(let o) = value else {
            return refuse(
                nil, "", "a CloudEvent must be a JSON object",
                "send {\"specversion\": \"1.0\", \"id\": …, \"source\": …, \"type\": …}")
        }
        guard let id = o["id"]?.stringValue, !id.isEmpty else {
            return refuse(
                nil, "id", "the CloudEvent has no id", "set id; a retried request with the same id is billed once")
        }
        guard o["specversion"]?.stringValue == "1.0" else {
            return refuse(id, "specversion", "specversion must be \"1.0\"", "set specversion: \"1.0\"")
        }
        guard let source = o["source"]?.stringValue, !source.isEmpty else {
            return refuse(id, "source", "the CloudEvent has no source", "set source, e.g. my-service")
        }
        guard let type = o["type"]?.stringValue, !type.isEmpty else {
            return refuse(
                id, "type", "the CloudEvent has no type", "set type to the meter's event type, e.g. api_request")
        }
        guard let subject = o["subject"]?.stringValue, !subject.isEmpty else {
            return refuse(id, "subject", "the CloudEvent has no subject", "set subject to your customer id")
        }
        var timestamp = Date()
        if let time = o["time"], time != .null {
            guard let text = time.stringValue, let date = RFC3339.parse(text) else {
                return refuse(id, "time", "time is not RFC 3339", "write e.g. 2026-11-25T12:03:00Z")
            }
            timestamp = date
        }
        var quantity = Decimal(1)
        var properties: [String: UsageValue] = [:]
        var missingQuantity = true
        switch o["data"] {
        case nil, .null?: break
        case .object(let data)?:
            missingQuantity = data[quantityProperty] == nil
            for (key, value) in data {
                if key == quantityProperty {
                    switch value {
                    case .number(let n): quantity = DecimalFormat.parse("\(n)") ?? Decimal(n)
                    case .string(let text):
                        guard let d = DecimalFormat.parse(text) else {
                            return refuse(
                                id, "data.\(key)", "data.\(key) '\(text)' is not a decimal number",
                                "write e.g. 150 or \"0.25\"")
                        }
                        quantity = d
                    default:
                        return refuse(
                            id, "data.\(key)", "data.\(key) must be a number or a decimal string", "write e.g. 150")
                    }
                    continue
                }
                guard let v = UsageValue(json: value) else {
                    return refuse(
                        id, "data.\(key)", "data.\(key) is not a string, number or bool",
                        "flatten it (no objects, arrays or null)")
                }
                properties[key] = v
            }
        default: return refuse(id, "data", "data must be a JSON object", "write {\"\(quantityProperty)\": 150}")
        }
        return .success(
            (
                UsageEvent(
                    id: id, name: type, customer: subject, timestamp: timestamp, quantity: quantity,
                    properties: properties), missingQuantity
            ))
    }

    /// The CloudEvents binary-mode headers (`ce-id`, `ce-source`, …; names lowercased, the
    /// `ce-` prefix dropped) when `headers` carry a CloudEvent in binary mode, else nil.
    public static func binaryModeAttributes(_ headers: [(name: String, value: String)]) -> [String: String]? {
        var attributes: [String: String] = [:]
        for (name, value) in headers where name.lowercased().hasPrefix("ce-") {
            attributes[String(name.lowercased().dropFirst(3))] = value
        }
        return attributes["specversion"] != nil || attributes["id"] != nil ? attributes : nil
    }
}

extension UsageValue {
    /// A flat JSON value as a property (string, number or bool); nil for objects, arrays, null.
    public init?(json value: JSONValue) {
        switch value {
        case .string(let s): self = .string(s)
        case .bool(let b): self = .bool(b)
        case .number(let n): self = .number(DecimalFormat.parse("\(n)") ?? Decimal(n))
        default: return nil
        }
    }
}
