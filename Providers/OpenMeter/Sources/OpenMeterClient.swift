import Foundation
import UsageBilling

/// One row of a meter query.
public struct OpenMeterQueryRow: Sendable, Hashable, Decodable {
    /// The aggregated value.
    public var value: Double
    /// Window start.
    public var windowStart: String
    /// Window end.
    public var windowEnd: String
    /// The subject, when grouped or filtered by subject.
    public var subject: String?
}


/// OpenMeter's meter query read-back.
public struct OpenMeterClient: Sendable {
    /// The settings in use.
    public let settings: OpenMeterSettings
    private let client: any HTTPClient

    /// Window sizes a meter query takes.
    public enum WindowSize: String, Sendable { case minute = "MINUTE", hour = "HOUR", day = "DAY", month = "MONTH" }

    /// A client; throws on unusable settings.
    public init(settings: OpenMeterSettings, client: any HTTPClient) throws {
        try settings.validate()
        self.settings = settings
        self.client = client
    }

    /// `GET /api/v1/meters/{slug}/query` for [from, to], optionally per window and per subject.
    public func query(meter: String, from: Date, to: Date, windowSize: WindowSize? = nil, subjects: [String] = []) async throws -> [OpenMeterQueryRow] {
        guard meter.wholeMatch(of: /[a-z0-9]+(?:_[a-z0-9]+)*/) != nil || meter.count == 26 else {
            throw UsageBillingError(.invalidInput, "'\(meter)' is not a meter slug or ULID", fix: "use the slug, e.g. api_requests", field: "meter")
        }
        guard from < to else { throw UsageBillingError(.invalidInput, "from must be before to", field: "from") }
        var query = [("from", RFC3339.format(from)), ("to", RFC3339.format(to))]
        if let windowSize { query.append(("windowSize", windowSize.rawValue)) }
        query += subjects.map { ("subject", $0) }
        var headers: HeaderFields = ["Accept": "application/json"]
        if let key = settings.apiKey { headers["Authorization"] = "Bearer \(key.exposedValue)" }
        let response = try await client.send(HTTPRequest(
            method: .get, url: URLBuilder.url(base: settings.endpoint, path: "/api/v1/meters/\(URLBuilder.pathSegment(meter))/query", query: query),
            headers: headers))
        guard response.status == 200 else {
            let detail = JSONValue.parse(response.body)?["detail"]?.stringValue ?? "HTTP \(response.status)"
            throw UsageBillingError.forFailedCall(response, message: "OpenMeter meter query failed (\(response.status)): \(detail)",
                                                  credentialField: "api_key", notFoundFix: "check the meter slug")
        }
        struct Result: Decodable { var data: [OpenMeterQueryRow] }
        guard let result = try? JSONDecoder().decode(Result.self, from: response.body) else {
            throw UsageBillingError(.unexpectedResponse, "OpenMeter's meter query answer does not decode", fix: "check endpoint")
        }
        return result.data
    }
}
