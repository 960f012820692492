import Foundation
import UsageBilling

/// One recorded scenario: adapter settings, input events, the HTTP exchanges in order, and the
/// expected outcome per event. Stored as JSON under `Providers/<Name>/Fixtures/`.
///
/// A fixture with a `correction` (`{"void": "evt_1", "correction_id": "ubc_…", "delivered_at":
/// "…"}`) voids that event instead of delivering the events: the sink's
/// ``CorrectionSink/void(_:deliveredAt:correctionID:)`` must make the exchanges, and its answer is
/// checked against `expected[correction_id]` (one outcome).
///
/// ```json
/// {
///   "scenario": "rate_limited_with_retry_after",
///   "description": "429 with Retry-After: 2, then 200; the retry reuses identifier and Idempotency-Key",
///   "source": "where each response body comes from (spec, official fixture, docs, SDK capture)",
///   "now": "2026-11-20T12:00:00Z",
///   "settings": { "secret_key": "sk_test_REDACTED" },
///   "events": [ { "id": "evt_1", "name": "api_request", "customer": "cus_1",
///                 "timestamp": "2026-11-20T11:59:00Z", "quantity": "5" } ],
///   "exchanges": [
///     { "request": { "method": "POST", "url": "https://api.example.com/v1/x",
///                    "headers": { "Idempotency-Key": "evt_1" }, "form": "a=1&b[c]=2" },
///       "response": { "status": 429, "headers": { "Retry-After": "2" }, "json": { } } },
///     { "request": { ... }, "failure": "connection_reset" }
///   ],
///   "expected": { "evt_1": [ { "outcome": "retryable", "kind": "rate_limited", "retry_after": 2 },
///                            { "outcome": "accepted" } ] },
///   "expected_error": null
/// }
/// ```
public struct Fixture: Sendable, Codable {
    /// The catalogue scenario (its raw name), or a provider-specific name.
    public var scenario: String?
    public var description: String
    /// Where the recorded bodies come from.
    public var source: String?
    /// The clock's wall time during the run (for timestamp-window checks).
    public var now: Date?
    /// Adapter settings, decoded by the provider's conformance subject.
    public var settings: JSONValue?
    /// The input events, delivered in this order.
    public var events: [UsageEvent]
    /// The HTTP exchanges the adapter must make, in order.
    public var exchanges: [FixtureExchange]
    /// Per event id, the outcome of each delivery attempt in order.
    public var expected: [String: [ExpectedOutcome]]
    /// For scenarios where the sink throws: the error code (`configuration`, `not_found`, ...).
    public var expectedError: String?
    /// A void to make instead of delivering `events`.
    public var correction: FixtureCorrection?

    private enum CodingKeys: String, CodingKey {
        case scenario, description, source, now, settings, events, exchanges, expected, correction
        case expectedError = "expected_error"
    }

    /// A fixture built in code (tests that compose one); the JSON file form decodes with `init(from:)`.
    public init(
        scenario: String?, description: String, source: String? = nil, now: Date? = nil,
        settings: JSONValue? = nil, events: [UsageEvent] = [], exchanges: [FixtureExchange],
        expected: [String: [ExpectedOutcome]] = [:], expectedError: String? = nil
    ) {
        self.scenario = scenario
        self.description = description
        self.source = source
        self.now = now
        self.settings = settings
        self.events = events
        self.exchanges = exchanges
        self.expected = expected
        self.expectedError = expectedError
    }

    /// Decodes a fixture file; `now` must be RFC 3339.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        scenario = try c.decodeIfPresent(String.self, forKey: .scenario)
        description = try c.decodeIfPresent(String.self, forKey: .description) ?? ""
        source = try c.decodeIfPresent(String.self, forKey: .source)
        if let text = try c.decodeIfPresent(String.self, forKey: .now) {
            guard let date = RFC3339.parse(text) else {
                throw DecodingError.dataCorruptedError(forKey: .now, in: c, debugDescription: "now must be RFC 3339")
            }
            now = date
        } else {
            now = nil
        }
        settings = try c.decodeIfPresent(JSONValue.self, forKey: .settings)
        events = try c.decodeIfPresent([UsageEvent].self, forKey: .events) ?? []
        exchanges = try c.decodeIfPresent([FixtureExchange].self, forKey: .exchanges) ?? []
        expected = try c.decodeIfPresent([String: [ExpectedOutcome]].self, forKey: .expected) ?? [:]
        expectedError = try c.decodeIfPresent(String.self, forKey: .expectedError)
        correction = try c.decodeIfPresent(FixtureCorrection.self, forKey: .correction)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(scenario, forKey: .scenario)
        try c.encode(description, forKey: .description)
        try c.encodeIfPresent(source, forKey: .source)
        try c.encodeIfPresent(now.map { RFC3339.format($0) }, forKey: .now)
        try c.encodeIfPresent(settings, forKey: .settings)
        if !events.isEmpty { try c.encode(events, forKey: .events) }
        try c.encode(exchanges, forKey: .exchanges)
        if !expected.isEmpty { try c.encode(expected, forKey: .expected) }
        try c.encodeIfPresent(expectedError, forKey: .expectedError)
        try c.encodeIfPresent(correction, forKey: .correction)
    }

    /// Loads a fixture file, with the file name in any error.
    public static func load(_ url: URL) throws -> Fixture {
        do {
            return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
        } catch {
            throw UsageBillingError(
                .invalidInput, "fixture \(url.lastPathComponent) does not load: \(error)",
                fix: "fix the JSON against the format documented on `Fixture`")
        }
    }

    /// Pretty, key-sorted JSON, as fixtures are committed.
    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }
}

/// The void a correction fixture makes: of which of its events, under which correction id, and
/// when the ledger marked the event delivered.
public struct FixtureCorrection: Sendable, Codable, Hashable {
    /// The id of the event (one of the fixture's `events`) to void.
    public var void: String
    /// The correction's id (its idempotency key at the provider).
    public var correctionID: String
    /// When the ledger marked the event delivered (RFC 3339), if it did.
    public var deliveredAt: String?

    private enum CodingKeys: String, CodingKey {
        case void
        case correctionID = "correction_id"
        case deliveredAt = "delivered_at"
    }
}

/// One request and what came back for it.
public struct FixtureExchange: Sendable, Codable {
    /// What the adapter must send.
    public var request: FixtureRequest
    /// The response, unless the exchange failed at the transport level.
    public var response: FixtureResponse?
    /// A transport failure instead of a response.
    public var failure: TransportFailure?

    /// An exchange answered by `response`, or failing with `failure`.
    public init(request: FixtureRequest, response: FixtureResponse? = nil, failure: TransportFailure? = nil) {
        self.request = request
        self.response = response
        self.failure = failure
    }
}

/// A transport-level failure a fixture can script.
public enum TransportFailure: String, Sendable, Codable, CaseIterable {
    /// Connection refused: nothing was sent.
    case connectRefused = "connect_refused"
    /// The connection was reset after the request was sent.
    case connectionReset = "connection_reset"
    /// The request was sent and no answer came in time.
    case timeoutAfterSend = "timeout_after_send"

    /// The error an HTTP client throws for it.
    public var error: UsageBillingError {
        switch self {
        case .connectRefused:
            return UsageBillingError(
                .transport, "cannot connect (scripted): connection refused", mayHaveReachedServer: false)
        case .connectionReset:
            return UsageBillingError(.transport, "connection reset by peer (scripted)", mayHaveReachedServer: true)
        case .timeoutAfterSend:
            return UsageBillingError(.timeout, "no answer in time (scripted)", mayHaveReachedServer: true)
        }
    }
}

/// A recorded request. Only the headers listed are compared (`"*"` means "present, any value").
public struct FixtureRequest: Sendable, Codable {
    /// The HTTP method (`POST`).
    public var method: String
    /// The absolute URL; its query is compared as a multiset of fields.
    public var url: String
    /// The headers that matter, compared case-insensitively by name.
    public var headers: [String: String]
    /// A form-encoded body, compared as a multiset of fields.
    public var form: String?
    /// A JSON body, compared by value.
    public var json: JSONValue?
    /// Any other body, compared as text.
    public var body: String?

    /// A recorded request.
    public init(
        method: String, url: String, headers: [String: String] = [:], form: String? = nil,
        json: JSONValue? = nil, body: String? = nil
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.form = form
        self.json = json
        self.body = body
    }

    /// Decodes a recorded request; its body is `form`, `json` or `body`, by how it was sent.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        method = try c.decode(String.self, forKey: .method)
        url = try c.decode(String.self, forKey: .url)
        headers = try c.decodeIfPresent([String: String].self, forKey: .headers) ?? [:]
        form = try c.decodeIfPresent(String.self, forKey: .form)
        json = try c.decodeIfPresent(JSONValue.self, forKey: .json)
        body = try c.decodeIfPresent(String.self, forKey: .body)
    }
}

/// A recorded response. `json` for JSON bodies, `body` for anything else.
public struct FixtureResponse: Sendable, Codable {
    /// The HTTP status code.
    public var status: Int
    /// The headers that matter, compared case-insensitively by name.
    public var headers: [String: String]
    /// A JSON body.
    public var json: JSONValue?
    /// A non-JSON body, as text.
    public var body: String?

    /// A recorded response.
    public init(status: Int, headers: [String: String] = [:], json: JSONValue? = nil, body: String? = nil) {
        self.status = status
        self.headers = headers
        self.json = json
        self.body = body
    }

    /// Decodes a recorded response; its body is `json` or `body`.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        status = try c.decode(Int.self, forKey: .status)
        headers = try c.decodeIfPresent([String: String].self, forKey: .headers) ?? [:]
        json = try c.decodeIfPresent(JSONValue.self, forKey: .json)
        body = try c.decodeIfPresent(String.self, forKey: .body)
    }

    /// As an ``HTTPResponse`` (JSON bodies get `Content-Type: application/json` unless given).
    public var httpResponse: HTTPResponse {
        var headerFields = HeaderFields(headers.sorted { $0.key < $1.key }.map { (name: $0.key, value: $0.value) })
        var data = Data()
        if let json {
            data = json.encoded()
            if headerFields["Content-Type"] == nil { headerFields["Content-Type"] = "application/json" }
        } else if let body {
            data = Data(body.utf8)
        }
        return HTTPResponse(status: status, headers: headerFields, body: data)
    }
}

/// What one delivery attempt of one event should have given.
public struct ExpectedOutcome: Sendable, Codable, Hashable, CustomStringConvertible {
    /// The outcome label: `accepted`, `duplicate`, `rejected`, `retryable`, `possibly_delivered`.
    public var outcome: String
    /// For `rejected`: the reason code.
    public var code: String?
    /// For `rejected`: `local` or `provider`.
    public var origin: String?
    /// For `rejected`: the field at fault.
    public var field: String?
    /// For `rejected` and `retryable`: a fragment the message must contain.
    public var messageContains: String?
    /// For `retryable`: the kind (`rate_limited`, `server_error`, `transport`, ...).
    public var kind: String?
    /// For `retryable`: the Retry-After in seconds the adapter must report (absent: none).
    public var retryAfter: Double?

    private enum CodingKeys: String, CodingKey {
        case outcome, code, origin, field, kind
        case messageContains = "message_contains"
        case retryAfter = "retry_after"
    }

    /// An expectation; fields left nil are not compared.
    public init(
        outcome: String, code: String? = nil, origin: String? = nil, field: String? = nil,
        messageContains: String? = nil, kind: String? = nil, retryAfter: Double? = nil
    ) {
        self.outcome = outcome
        self.code = code
        self.origin = origin
        self.field = field
        self.messageContains = messageContains
        self.kind = kind
        self.retryAfter = retryAfter
    }

    /// Differences between this expectation and `actual`; empty when it matches.
    public func mismatches(_ actual: DeliveryOutcome) -> [String] {
        var problems: [String] = []
        if actual.label != outcome { problems.append("outcome \(actual.label), expected \(outcome)") }
        switch actual {
        case .rejected(let reason):
            if let code, reason.code != code { problems.append("rejection code \(reason.code), expected \(code)") }
            if let origin, reason.origin.rawValue != origin {
                problems.append("origin \(reason.origin.rawValue), expected \(origin)")
            }
            if let field, reason.field != field { problems.append("field \(reason.field ?? "nil"), expected \(field)") }
            if let messageContains, !reason.message.contains(messageContains) {
                problems.append("message '\(reason.message)' lacks '\(messageContains)'")
            }
            if reason.message.isEmpty { problems.append("rejection without a message") }
        case .retryable(let reason, let after):
            if let kind, reason.kind.rawValue != kind {
                problems.append("retry kind \(reason.kind.rawValue), expected \(kind)")
            }
            if let messageContains, !reason.message.contains(messageContains) {
                problems.append("retry message '\(reason.message)' lacks '\(messageContains)'")
            }
            if outcome == "retryable" {
                let actualSeconds = after?.seconds
                if let retryAfter {
                    if actualSeconds.map({ abs($0 - retryAfter) > 0.001 }) ?? true {
                        problems.append(
                            "retry_after \(actualSeconds.map { "\($0)" } ?? "none"), expected \(retryAfter)")
                    }
                } else if actualSeconds != nil {
                    problems.append("retry_after \(actualSeconds ?? 0), expected none")
                }
            }
        default:
            break
        }
        return problems
    }

    public var description: String {
        var parts = [outcome]
        if let code { parts.append("code=\(code)") }
        if let kind { parts.append("kind=\(kind)") }
        if let retryAfter { parts.append("retry_after=\(retryAfter)") }
        return parts.joined(separator: " ")
    }
}
