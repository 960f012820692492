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
    /// v3 meter ids by key, looked up once per client: a reconciliation reads every meter for
    /// every customer.
    private let meterIDs = Locked<[String: String]>([:])

    public init(settings: OpenMeterSettings, client: any HTTPClient) throws {
        try settings.validate()
        self.settings = settings
        self.client = client
    }

    /// `GET /api/v1/meters/{slug}/query` for [from, to], optionally per window and per subject.
    public func query(meter: String, from: Date, to: Date, windowSize: WindowSize? = nil, subjects: [String] = [])
        async throws -> [OpenMeterQueryRow]
    {
        guard meter.wholeMatch(of: /[a-z0-9]+(?:_[a-z0-9]+)*/) != nil || meter.count == 26 else {
            throw UsageBillingError(
                .invalidInput, "'\(meter)' is not a meter slug or ULID", fix: "use the slug, e.g. api_requests",
                field: "meter")
        }
        guard from < to else { throw UsageBillingError(.invalidInput, "from must be before to", field: "from") }
        if settings.api == .v3 {
            return try await queryV3(meter: meter, from: from, to: to, windowSize: windowSize, subjects: subjects)
        }
        var query = [("from", RFC3339.format(from)), ("to", RFC3339.format(to))]
        if let windowSize { query.append(("windowSize", windowSize.rawValue)) }
        query += subjects.map { ("subject", $0) }
        let response = try await client.send(
            HTTPRequest(
                method: .get,
                url: URLBuilder.url(
                    base: settings.endpoint, path: "/api/v1/meters/\(URLBuilder.pathSegment(meter))/query", query: query
                ),
                headers: headers))
        guard response.status == 200 else { throw failure(response, "meter query") }
        struct Result: Decodable { var data: [OpenMeterQueryRow] }
        guard let result = try? JSONDecoder().decode(Result.self, from: response.body) else {
            throw UsageBillingError(
                .unexpectedResponse, "OpenMeter's meter query answer does not decode", fix: "check endpoint")
        }
        return result.data
    }

    // MARK: v3 (Kong Konnect)

    private var headers: HeaderFields {
        var headers: HeaderFields = ["Accept": "application/json"]
        if let key = settings.apiKey { headers["Authorization"] = "Bearer \(key.exposedValue)" }
        return headers
    }

    private func failure(_ response: HTTPResponse, _ what: String) -> UsageBillingError {
        let detail = JSONValue.parse(response.body)?["detail"]?.stringValue ?? "HTTP \(response.status)"
        return UsageBillingError.forFailedCall(
            response, message: "OpenMeter \(what) failed (\(response.status)): \(detail)",
            credentialField: "api_key", notFoundFix: "check the meter's slug (v1) or key (v3)")
    }

    /// The id (a ULID) of the meter whose key is `key`: `GET /openmeter/meters?filter[key][eq]=`.
    public func meterID(key: String) async throws -> String {
        if key.wholeMatch(of: /[0-7][0-9A-HJKMNP-TV-Z]{25}/) != nil { return key }
        if let known = meterIDs.current[key] { return known }
        let response = try await client.send(
            HTTPRequest(
                method: .get,
                url: URLBuilder.url(
                    base: settings.endpoint, path: "/openmeter/meters", query: [("filter[key][eq]", key)]),
                headers: headers))
        guard response.status == 200 else { throw failure(response, "meter lookup") }
        let ids = (JSONValue.parse(response.body)?["data"]?.arrayValue ?? []).filter { $0["key"]?.stringValue == key }
            .compactMap { $0["id"]?.stringValue }
        guard let id = ids.first else {
            throw UsageBillingError(
                .notFound, "OpenMeter has no meter with the key '\(key)'",
                fix: "create the meter in Konnect, or map the event type to its meter's key under meter_slugs",
                field: "meter_slugs")
        }
        meterIDs.with { $0[key] = id }
        return id
    }

    /// `POST /openmeter/meters/{id}/query` grouped by subject, filtered to `subjects`.
    private func queryV3(meter: String, from: Date, to: Date, windowSize: WindowSize?, subjects: [String]) async throws
        -> [OpenMeterQueryRow]
    {
        let id = try await meterID(key: meter)
        var body: [String: JSONValue] = [
            "from": .string(RFC3339.format(from)), "to": .string(RFC3339.format(to)),
            "group_by_dimensions": .array([.string("subject")]),
        ]
        if let windowSize {
            let granularity =
                switch windowSize {
                case .minute: "PT1M";
                case .hour: "PT1H";
                case .day: "P1D";
                case .month: "P1M"
                }
            body["granularity"] = .string(granularity)
        }
        if !subjects.isEmpty {
            body["filters"] = .object([
                "dimensions": .object(["subject": .object(["in": .array(subjects.map(JSONValue.string))])])
            ])
        }
        var headers = self.headers
        headers["Content-Type"] = "application/json"
        let response = try await client.send(
            HTTPRequest(
                method: .post,
                url: URLBuilder.url(
                    base: settings.endpoint, path: "/openmeter/meters/\(URLBuilder.pathSegment(id))/query"),
                headers: headers, body: JSONValue.object(body).encoded()))
        guard response.status == 200 else { throw failure(response, "meter query") }
        guard let rows = JSONValue.parse(response.body)?["data"]?.arrayValue else {
            throw UsageBillingError(
                .unexpectedResponse, "OpenMeter's v3 meter query answer does not decode", fix: "check endpoint")
        }
        return try rows.map { row in
            guard let value = row["value"]?.stringValue.flatMap(Double.init), let start = row["from"]?.stringValue,
                let end = row["to"]?.stringValue
            else {
                throw UsageBillingError(
                    .unexpectedResponse, "an OpenMeter v3 meter query row lacks value, from or to",
                    fix: "check endpoint")
            }
            return OpenMeterQueryRow(
                value: value, windowStart: start, windowEnd: end, subject: row["dimensions"]?["subject"]?.stringValue)
        }
    }
}
