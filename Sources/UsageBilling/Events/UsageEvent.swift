import Foundation

/// One metered usage fact: "customer `acme` made 150 `api_request`s at 12:03".
///
/// The `id` is the event's idempotency key. It is fixed when the event is recorded and is sent
/// unchanged on every delivery attempt to every provider (as Stripe's `identifier`, Orb's
/// `idempotency_key`, Metronome's `transaction_id`, ...). Never regenerate it on retry.
public struct UsageEvent: Sendable, Hashable, Codable {
    /// Stable idempotency key. Defaults to a time-ordered UUIDv7-style id (``EventID/generate(at:)``).
    public var id: String
    /// The event (meter) name in your own vocabulary, e.g. `api_request`. Routes map it per provider.
    public var name: String
    /// Your own customer id. Each adapter maps it to the provider's customer id.
    public var customer: String
    /// When the usage happened (not when it is sent).
    public var timestamp: Date
    /// The amount of usage; `1` for count-style meters. Decimal, so `0.1 + 0.2` stays `0.3`.
    public var quantity: Decimal
    /// Flat, typed extra properties (dimensions). No nesting: providers differ too much on it.
    public var properties: [String: UsageValue]

    /// Creates an event. Only `name` and `customer` are required; the id is generated if omitted.
    public init(
        id: String = EventID.generate(),
        name: String,
        customer: String,
        timestamp: Date = Date(),
        quantity: Decimal = 1,
        properties: [String: UsageValue] = [:]
    ) {
        self.id = id
        self.name = name
        self.customer = customer
        self.timestamp = timestamp
        self.quantity = quantity
        self.properties = properties
    }

    private enum CodingKeys: String, CodingKey {
        case id, name, customer, timestamp, quantity, properties
    }

    /// A decoder `userInfo` key: when its value is `true`, an event without an `id` (or with an
    /// empty one) decodes with an empty id instead of a new random one, so the reader can give
    /// it an id derived from its content (``EventID/content(of:occurrence:)``). File imports set
    /// it: a random id would make a re-import bill the event again.
    public static let leavesMissingIDEmpty = CodingUserInfoKey(rawValue: "UsageEvent.leavesMissingIDEmpty")

    /// Decodes `{"id","name","customer","timestamp","quantity","properties"}`. `timestamp` is an
    /// RFC 3339 string (fractional seconds allowed) or Unix seconds; `quantity` a JSON number or a
    /// decimal string (strings keep full decimal precision).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let given = try c.decodeIfPresent(String.self, forKey: .id)
        if let key = Self.leavesMissingIDEmpty, decoder.userInfo[key] as? Bool == true {
            self.id = given ?? ""
        } else {
            self.id = given ?? EventID.generate()
        }
        self.name = try c.decode(String.self, forKey: .name)
        self.customer = try c.decode(String.self, forKey: .customer)
        if let text = try? c.decode(String.self, forKey: .timestamp) {
            guard let date = RFC3339.parse(text) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .timestamp, in: c,
                    debugDescription: "timestamp '\(text)' is not RFC 3339; write e.g. 2026-11-25T12:03:00Z")
            }
            self.timestamp = date
        } else if let seconds = try? c.decode(Double.self, forKey: .timestamp) {
            self.timestamp = Date(timeIntervalSince1970: seconds)
        } else {
            throw DecodingError.dataCorruptedError(
                forKey: .timestamp, in: c,
                debugDescription: "timestamp is missing; write an RFC 3339 time such as 2026-11-25T12:03:00Z")
        }
        if let text = try? c.decode(String.self, forKey: .quantity) {
            guard let value = DecimalFormat.parse(text) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .quantity, in: c, debugDescription: "quantity '\(text)' is not a decimal number")
            }
            self.quantity = value
        } else {
            self.quantity = try c.decodeIfPresent(Decimal.self, forKey: .quantity) ?? 1
        }
        self.properties = try c.decodeIfPresent([String: UsageValue].self, forKey: .properties) ?? [:]
    }

    /// Encodes with an RFC 3339 timestamp and the quantity as a decimal string (exact).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(name, forKey: .name)
        try c.encode(customer, forKey: .customer)
        try c.encode(RFC3339.format(timestamp, fractional: true), forKey: .timestamp)
        try c.encode(DecimalFormat.plain(quantity), forKey: .quantity)
        if !properties.isEmpty { try c.encode(properties, forKey: .properties) }
    }
}

/// A flat property value: a string, a number or a bool. Providers cannot all take nested values.
public enum UsageValue: Sendable, Hashable, Codable, CustomStringConvertible {
    case string(String)
    case number(Decimal)
    case bool(Bool)

    /// Decodes a JSON string, number or boolean; a nested value is refused (providers take flat properties).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let d = try? c.decode(Decimal.self) {
            self = .number(d)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else {
            throw DecodingError.dataCorruptedError(
                in: c,
                debugDescription: "property values must be a string, number or bool (no objects, arrays or null)")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .string(let s): try c.encode(s)
        case .number(let d): try c.encode(d)
        case .bool(let b): try c.encode(b)
        }
    }

    /// The value as providers that only take strings want it (`true`, `12.5`, text as is).
    public var description: String {
        switch self {
        case .string(let s): return s
        case .number(let d): return DecimalFormat.plain(d)
        case .bool(let b): return b ? "true" : "false"
        }
    }
}
