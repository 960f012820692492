import Foundation

/// A provider's own ingest API, spoken by `usage-billing serve` under `/<prefix>/`, so an app
/// that calls that provider's SDK keeps its code and changes only the SDK's base URL. The door
/// turns the SDK's request into ``UsageEvent``s, hands them to ``IngestDoorContext/record`` (the
/// same pipeline as `POST /v1/events`: durable before the answer, routed by the config), and
/// answers in the provider's own format, status code and error shape, so the SDK returns what it
/// would from the provider and raises its own exception on a refusal.
///
/// Each provider folder declares its door next to its sink; the door registry lists them. The
/// server names no provider.
public protocol IngestDoor: Sendable {
    /// The path prefix (`stripe` serves `/stripe/…`) and the `serve.compat` key.
    var prefix: String { get }
    /// The settings keys `serve.compat.<prefix>` takes (mapping keys); `enabled` is always taken.
    var settingsKeys: Set<String> { get }
    /// Checks `serve.compat.<prefix>`: each problem as (key, message, fix).
    func check(_ settings: [String: JSONValue]) -> [(key: String, message: String, fix: String)]
    /// Answers one request under the prefix (`request.path` without it).
    func handle(_ request: IngestDoorRequest, context: IngestDoorContext) async -> IngestDoorResponse
}

extension IngestDoor {
    public var settingsKeys: Set<String> { [] }
    /// By default, a door that takes `quantity_property` has it checked (a property name);
    /// a door with other settings checks them itself.
    public func check(_ settings: [String: JSONValue]) -> [(key: String, message: String, fix: String)] {
        settingsKeys.contains("quantity_property") ? IngestDoorProperties.checkQuantityProperty(settings) : []
    }
}

/// A request as a door sees it.
public struct IngestDoorRequest: Sendable {
    public var method: String
    /// The path after the door's prefix, starting with `/` (`/v1/billing/meter_events`).
    public var path: String
    public var query: [(name: String, value: String)]
    public var headers: [(name: String, value: String)]
    public var body: Data

    public init(
        method: String, path: String, query: [(name: String, value: String)] = [],
        headers: [(name: String, value: String)] = [], body: Data = Data()
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
    }

    /// The first header named `name`, case-insensitively.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    /// The bearer token of `Authorization: Bearer …` (the scheme in any case).
    public var bearerToken: String? {
        guard let value = header("Authorization"), value.count > 7, value.prefix(7).lowercased() == "bearer " else {
            return nil
        }
        return String(value.dropFirst(7)).trimmingCharacters(in: .whitespaces)
    }

    /// The user name of `Authorization: Basic …` (where SDKs put an API key), if any.
    public var basicUser: String? {
        guard let value = header("Authorization"), value.count > 6, value.prefix(6).lowercased() == "basic ",
            let data = Data(base64Encoded: String(value.dropFirst(6)).trimmingCharacters(in: .whitespaces))
        else { return nil }
        let text = String(decoding: data, as: UTF8.self)
        return String(text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
    }
}

/// What a door answers. An `Error` too, so a door's parsing returns its refusal as a
/// `Result`'s failure, answered as it is.
public struct IngestDoorResponse: Sendable, Error {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: Data

    public init(status: Int, headers: [(name: String, value: String)] = [], body: Data = Data()) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A JSON answer.
    public static func json(_ status: Int, _ value: JSONValue, headers: [(name: String, value: String)] = [])
        -> IngestDoorResponse
    {
        IngestDoorResponse(
            status: status, headers: [("Content-Type", "application/json")] + headers, body: value.encoded())
    }
}

/// What became of one event a door handed over.
public enum IngestDoorResult: Sendable, Equatable {
    /// Recorded now, durably.
    case accepted
    /// Its id was recorded before with the same payload: success, recorded once.
    case duplicate
    /// Not recorded: the field, what is wrong, and the fix.
    case refused(field: String, reason: String, fix: String)
}

/// Why nothing of a request was recorded (the ledger cannot be reached, the backlog is full):
/// the client retries with the same ids after `retryAfter`.
public struct IngestDoorUnavailable: Error, Sendable {
    public var reason: String
    public var retryAfter: Int

    public init(reason: String, retryAfter: Int) {
        self.reason = reason
        self.retryAfter = retryAfter
    }
}

extension IngestDoorUnavailable {
    /// What a door answers a failed ``IngestDoorContext/record`` with: the unavailability it
    /// reports, or any other error as its text with a retry after a second.
    public static func of(_ error: any Error) -> IngestDoorUnavailable {
        error as? IngestDoorUnavailable ?? IngestDoorUnavailable(reason: "\(error)", retryAfter: 1)
    }

    /// The `Retry-After` header of the answer.
    public var header: (name: String, value: String) { ("Retry-After", "\(retryAfter)") }
}

/// What the server gives a door for one request.
public struct IngestDoorContext: Sendable {
    /// Whether a token (the SDK's API key) is one of `serve.tokens`, compared in constant time.
    public let authorises: @Sendable (String) -> Bool
    /// Records events (one result each, in order) or throws ``IngestDoorUnavailable``, in which
    /// case nothing was recorded. An event without a quantity (`hasQuantity` false) is refused,
    /// naming `quantityField` (where the door's format carries it), unless every route it takes
    /// counts events.
    public let record:
        @Sendable (_ events: [(event: UsageEvent, hasQuantity: Bool)], _ quantityField: String) async throws ->
            [IngestDoorResult]
    /// `serve.compat.<prefix>`: the door's checked settings.
    public let settings: [String: JSONValue]
    /// The most events one request may carry (`serve.max_events_per_request`).
    public let maxEvents: Int
    /// A secret only this server and its peers know (derived from `serve.tokens`), for tokens a
    /// door hands out and checks later (Stripe's meter event sessions) without shared state.
    public let signingKey: [UInt8]

    public init(
        authorises: @escaping @Sendable (String) -> Bool,
        record:
            @escaping @Sendable ([(event: UsageEvent, hasQuantity: Bool)], String) async throws -> [IngestDoorResult],
        settings: [String: JSONValue], maxEvents: Int, signingKey: [UInt8]
    ) {
        self.authorises = authorises
        self.record = record
        self.settings = settings
        self.maxEvents = maxEvents
        self.signingKey = signingKey
    }
}

/// HMAC-SHA-256 (RFC 2104) over the core's SHA-256: what a door signs its own tokens with.
public enum HMACSHA256 {
    /// The MAC of `message` under `key`, as lowercase hex.
    public static func hex(key: [UInt8], _ message: String) -> String {
        var block = key.count > 64 ? SHA256.digest(key) : key
        block += [UInt8](repeating: 0, count: 64 - block.count)
        let inner = SHA256.digest(block.map { $0 ^ 0x36 } + Array(message.utf8))
        return SHA256.hex(block.map { $0 ^ 0x5C } + inner)
    }
}

/// What doors whose events carry a property bag (Orb, Metronome) share: the quantity is one
/// property, named by the door's `quantity_property` setting, and the rest stay properties.
public enum IngestDoorProperties {
    /// The problem with a `quantity_property` setting, if any.
    public static func checkQuantityProperty(_ settings: [String: JSONValue]) -> [(
        key: String, message: String, fix: String
    )] {
        if let value = settings["quantity_property"], value.stringValue?.isEmpty ?? true {
            return [
                (
                    "quantity_property", "quantity_property must be a property name",
                    "write e.g. quantity_property: tokens"
                )
            ]
        }
        return []
    }

    /// `properties` split into the quantity (`quantityProperty`; 1 and `hasQuantity` false when
    /// absent) and the rest, or the problems (each naming `properties.<name>`). `door` names the
    /// setting in a problem (`serve.compat.<door>.quantity_property`).
    public static func split(_ properties: JSONValue?, quantityProperty: String, door: String)
        -> (quantity: Decimal, hasQuantity: Bool, properties: [String: UsageValue], problems: [String])
    {
        var quantity = Decimal(1), hasQuantity = false
        var rest: [String: UsageValue] = [:]
        var problems: [String] = []
        guard case .object(let props)? = properties else { return (quantity, hasQuantity, rest, problems) }
        for (name, value) in props.sorted(by: { $0.key < $1.key }) {
            if name == quantityProperty {
                guard
                    let q = value.stringValue.flatMap(DecimalFormat.parse)
                        ?? value.numberValue.flatMap({ DecimalFormat.parse("\($0)") })
                else {
                    problems.append(
                        "properties.\(name) must be a number (the quantity; serve.compat.\(door).quantity_property names it)"
                    )
                    continue
                }
                quantity = q
                hasQuantity = true
            } else if let text = value.stringValue {
                rest[name] = .string(text)
            } else if let b = value.boolValue {
                rest[name] = .bool(b)
            } else if let n = value.numberValue {
                rest[name] = .number(DecimalFormat.parse("\(n)") ?? Decimal(n))
            } else {
                problems.append("properties.\(name) must be a string, number or boolean")
            }
        }
        return (quantity, hasQuantity, rest, problems)
    }
}
