import Foundation
import UsageBilling

/// Wraps a real ``HTTPClient`` (e.g. `CurlHTTPClient` against a sandbox account) and records
/// every exchange, so new fixtures are captured rather than written by hand. Credentials are
/// redacted when the exchanges are read: sensitive headers are masked and every configured
/// secret is replaced wherever it appears (URL, headers, body).
public final class RecordingHTTPClient: HTTPClient {
    private let inner: any HTTPClient
    private let secrets: [String]
    private let recorded = Locked<[FixtureExchange]>([])

    /// - Parameters:
    ///   - inner: the client that really sends.
    ///   - secrets: values to redact wherever they appear (API keys, session tokens).
    public init(wrapping inner: any HTTPClient, secrets: [String] = []) {
        self.inner = inner
        self.secrets = secrets.filter { !$0.isEmpty }
    }

    /// Sends `request` (see the type's documentation for how it is answered).
    public func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        let fixtureRequest = redact(request)
        do {
            let response = try await inner.send(request)
            recorded.with { $0.append(FixtureExchange(request: fixtureRequest, response: redact(response))) }
            return response
        } catch let error as UsageBillingError {
            let failure: TransportFailure? =
                switch error.code {
                case .timeout: .timeoutAfterSend
                case .transport: error.mayHaveReachedServer ? .connectionReset : .connectRefused
                default: nil
                }
            if let failure {
                recorded.with { $0.append(FixtureExchange(request: fixtureRequest, failure: failure)) }
            }
            throw error
        }
    }

    /// The redacted exchanges recorded so far.
    public var exchanges: [FixtureExchange] { recorded.with { $0 } }

    /// Writes a fixture with the recorded exchanges to `url`.
    public func writeFixture(
        to url: URL, scenario: String?, description: String, settings: JSONValue?, events: [UsageEvent],
        now: Date?, expected: [String: [ExpectedOutcome]], expectedError: String? = nil
    ) throws {
        let fixture = Fixture(
            scenario: scenario, description: description, source: "recorded with RecordingHTTPClient",
            now: now, settings: settings.map(redact), events: events, exchanges: exchanges,
            expected: expected, expectedError: expectedError)
        try fixture.encoded().write(to: url, options: .atomic)
    }

    private func scrub(_ text: String) -> String {
        var out = text
        for secret in secrets { out = out.replacingOccurrences(of: secret, with: Redaction.mask(secret)) }
        return SecretScanner.redactKnownPatterns(out)
    }

    private func redact(_ value: JSONValue) -> JSONValue {
        JSONValue.parse(Data(scrub(value.description).utf8)) ?? value
    }

    private func redact(_ request: HTTPRequest) -> FixtureRequest {
        var headers: [String: String] = [:]
        for field in request.headers {
            headers[field.name] =
                Redaction.isSensitiveHeader(field.name) ? Redaction.mask(field.value) : scrub(field.value)
        }
        let text = scrub(String(decoding: request.body ?? Data(), as: UTF8.self))
        let contentType = request.headers["Content-Type"]?.lowercased() ?? ""
        var fixture = FixtureRequest(method: request.method.rawValue, url: scrub(request.url), headers: headers)
        if text.isEmpty {
        } else if contentType.contains("json"), let json = JSONValue.parse(Data(text.utf8)) {
            fixture.json = json
        } else if contentType.contains("x-www-form-urlencoded") {
            fixture.form = text
        } else {
            fixture.body = text
        }
        return fixture
    }

    private func redact(_ response: HTTPResponse) -> FixtureResponse {
        var headers: [String: String] = [:]
        for field in response.headers {
            headers[field.name] =
                Redaction.isSensitiveHeader(field.name) ? Redaction.mask(field.value) : scrub(field.value)
        }
        let text = scrub(response.bodyText)
        if let json = JSONValue.parse(Data(text.utf8)) {
            return FixtureResponse(status: response.status, headers: headers, json: json)
        }
        return FixtureResponse(status: response.status, headers: headers, body: text.isEmpty ? nil : text)
    }
}
