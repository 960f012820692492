import Foundation

/// Sends one HTTP request. Production uses `CurlHTTPClient`; tests use `ReplayHTTPClient` or a
/// loopback server.
///
/// Implementations return every response they get, whatever its status (a 500 is a response, not
/// an error), and throw ``UsageBillingError`` with code `.transport`, `.timeout` or `.cancelled`
/// when no complete response arrived, setting `mayHaveReachedServer` when bytes were sent.
public protocol HTTPClient: Sendable {
    func send(_ request: HTTPRequest) async throws -> HTTPResponse
}

/// An HTTP method.
public struct HTTPMethod: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
    /// The method name, upper-case.
    public var rawValue: String
    /// A method from its name (any case).
    public init(rawValue: String) { self.rawValue = rawValue.uppercased() }
    /// `GET`.
    public static let get = HTTPMethod(rawValue: "GET")
    /// `POST`.
    public static let post = HTTPMethod(rawValue: "POST")
    /// `PUT`.
    public static let put = HTTPMethod(rawValue: "PUT")
    /// `PATCH`.
    public static let patch = HTTPMethod(rawValue: "PATCH")
    /// `DELETE`.
    public static let delete = HTTPMethod(rawValue: "DELETE")
    public var description: String { rawValue }

    /// Decodes a method from its name.
    public init(from decoder: any Decoder) throws {
        self.init(rawValue: try decoder.singleValueContainer().decode(String.self))
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
}

/// An HTTP request.
public struct HTTPRequest: Sendable, Hashable {
    /// The HTTP method.
    public var method: HTTPMethod
    /// The absolute URL, query string included.
    public var url: String
    /// The headers, in order, repeated names kept.
    public var headers: HeaderFields
    /// The body, if any.
    public var body: Data?
    /// A total timeout for this request, overriding the client's default.
    public var timeout: Duration?

    /// A request.
    public init(
        method: HTTPMethod, url: String, headers: HeaderFields = [:], body: Data? = nil, timeout: Duration? = nil
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
    }
}

/// An HTTP response: status, all headers (in order, repeated names kept), body.
public struct HTTPResponse: Sendable, Hashable {
    /// The HTTP status code.
    public var status: Int
    /// The headers, in order, repeated names kept.
    public var headers: HeaderFields
    /// The body bytes.
    public var body: Data

    /// A response.
    public init(status: Int, headers: HeaderFields = [:], body: Data = Data()) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The body as UTF-8 text (lossy), for messages.
    public var bodyText: String { String(decoding: body, as: UTF8.self) }

    /// The `Retry-After` header as a duration (delta-seconds or an HTTP date relative to `now`).
    public func retryAfter(now: Date = Date()) -> Duration? {
        headers["Retry-After"].flatMap { RetryAfter.parse($0, now: now) }
    }
}

/// Ordered HTTP header fields with case-insensitive lookup.
public struct HeaderFields: Sendable, Hashable, Sequence, ExpressibleByDictionaryLiteral, CustomStringConvertible {
    /// The fields in order, as sent or received.
    public private(set) var fields: [(name: String, value: String)]

    /// Header fields from ordered pairs.
    public init(_ fields: [(name: String, value: String)] = []) { self.fields = fields }

    /// Header fields from a literal, in the literal's order.
    public init(dictionaryLiteral elements: (String, String)...) {
        self.fields = elements.map { (name: $0.0, value: $0.1) }
    }

    /// The first value for `name` (case-insensitive); setting replaces all values for it.
    public subscript(name: String) -> String? {
        get { fields.first { Self.sameName($0.name, name) }?.value }
        set {
            fields.removeAll { Self.sameName($0.name, name) }
            if let newValue { fields.append((name: name, value: newValue)) }
        }
    }

    /// All values for `name`.
    public func values(for name: String) -> [String] {
        fields.filter { Self.sameName($0.name, name) }.map(\.value)
    }

    /// Whether two field names are the same, ASCII letters compared without case (field names
    /// are ASCII tokens); no lowercased copies, as every header lookup compared every field.
    public static func sameName(_ a: String, _ b: String) -> Bool {
        var a = a, b = b
        return a.withUTF8 { x in
            b.withUTF8 { y in
                guard x.count == y.count else { return false }
                for i in 0..<x.count where x[i] != y[i] {
                    let p = x[i], q = y[i]
                    guard p | 0x20 == q | 0x20, (0x61...0x7A).contains(p | 0x20) else { return false }
                }
                return true
            }
        }
    }

    /// Appends a field, keeping any existing ones of the same name.
    public mutating func add(name: String, value: String) { fields.append((name: name, value: value)) }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> { fields.makeIterator() }

    public static func == (lhs: HeaderFields, rhs: HeaderFields) -> Bool {
        lhs.fields.elementsEqual(rhs.fields) { $0.name == $1.name && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        for f in fields { hasher.combine(f.name); hasher.combine(f.value) }
    }

    /// Header names and values with credentials masked (safe to log).
    public var description: String {
        fields.map { "\($0.name): \(Redaction.isSensitiveHeader($0.name) ? Redaction.mask($0.value) : $0.value)" }
            .joined(separator: "\n")
    }
}

/// Parsing of the `Retry-After` header.
public enum RetryAfter {
    /// `"120"` → 120 s; an IMF-fixdate (`Wed, 21 Oct 2026 07:28:00 GMT`) → time from `now`
    /// (zero if past). Anything else → `nil`.
    public static func parse(_ value: String, now: Date = Date()) -> Duration? {
        let trimmed = value.trimmingCharacters(in: .whitespaces)
        if let seconds = Double(trimmed), seconds >= 0, seconds.isFinite {
            return .milliseconds(Int64((seconds * 1000).rounded()))
        }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: trimmed) else { return nil }
        return .milliseconds(Int64(max(0, date.timeIntervalSince(now)) * 1000))
    }
}

extension HeaderFields: CustomReflectable {
    /// Each field with credentials masked, as ``description`` shows them: `dump` and debuggers
    /// never see an `Authorization` value.
    public var customMirror: Mirror {
        Mirror(
            self,
            children: fields.map {
                (label: $0.name, value: Redaction.isSensitiveHeader($0.name) ? Redaction.mask($0.value) : $0.value)
                    as Mirror.Child
            },
            displayStyle: .dictionary)
    }
}

/// A client that gives every request without a timeout of its own `timeout`: how a lane applies
/// its provider's request timeout (``ProviderKind/requestTimeout`` or the config's `timeout`)
/// without the adapter knowing.
public struct TimeoutHTTPClient: HTTPClient {
    /// The client requests go through.
    public let base: any HTTPClient
    /// The timeout of requests that name none.
    public let timeout: Duration

    /// `base`, with `timeout` for requests that name none.
    public init(_ base: any HTTPClient, timeout: Duration) {
        self.base = base
        self.timeout = timeout
    }

    public func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        guard request.timeout == nil else { return try await base.send(request) }
        var request = request
        request.timeout = timeout
        return try await base.send(request)
    }
}
