import Foundation
import UsageBilling

/// One window of `POST /v1/usage`.
public struct MetronomeUsageRow: Sendable, Hashable, Decodable {
    /// The Metronome customer id.
    public var customerID: String
    /// The billable metric's id.
    public var billableMetricID: String
    /// The billable metric's name.
    public var billableMetricName: String
    /// Window start (inclusive).
    public var startTimestamp: String
    /// Window end (exclusive).
    public var endTimestamp: String
    /// The aggregated value, or nil when there was no usage.
    public var value: Double?

    enum CodingKeys: String, CodingKey {
        case customerID = "customer_id", billableMetricID = "billable_metric_id", billableMetricName =
            "billable_metric_name"
        case startTimestamp = "start_timestamp", endTimestamp = "end_timestamp", value
    }
}

/// Metronome's usage read-back.
public struct MetronomeClient: Sendable {
    /// The settings in use.
    public let settings: MetronomeSettings
    private let client: any HTTPClient

    /// A client; throws on unusable settings.
    public init(settings: MetronomeSettings, client: any HTTPClient) throws {
        try settings.validate()
        self.settings = settings
        self.client = client
    }

    /// Usage per customer and billable metric in `window` buckets over [start, end), all pages.
    /// Both ends must be on UTC midnight and at least a day apart (checked before asking).
    public func usage(start: Date, end: Date, window: String = "day", customerIDs: [String] = []) async throws
        -> [MetronomeUsageRow]
    {
        for (field, date) in [("starting_on", start), ("ending_before", end)]
        where Int(date.timeIntervalSince1970) % 86_400 != 0 {
            let aligned = Date(timeIntervalSince1970: (date.timeIntervalSince1970 / 86_400).rounded(.down) * 86_400)
            throw UsageBillingError(
                .invalidInput, "\(field) \(RFC3339.format(date)) is not on UTC midnight",
                fix: "use e.g. \(RFC3339.format(aligned))", field: field)
        }
        guard end.timeIntervalSince(start) >= 86_400 else {
            throw UsageBillingError(
                .invalidInput, "ending_before must be at least one day after starting_on", field: "ending_before")
        }
        guard ["hour", "day", "none"].contains(window.lowercased()) else {
            throw UsageBillingError(
                .invalidInput, "window_size '\(window)' is not hour, day or none", field: "window_size")
        }
        var body: [String: JSONValue] = [
            "starting_on": .string(RFC3339.format(start)), "ending_before": .string(RFC3339.format(end)),
            "window_size": .string(window.lowercased()),
        ]
        if !customerIDs.isEmpty { body["customer_ids"] = .array(customerIDs.map(JSONValue.string)) }
        struct Page: Decodable { var data: [MetronomeUsageRow]; var next_page: String? }
        let settings = self.settings, client = self.client, encoded = JSONValue.object(body).encoded()
        let pages = PaginatorSequence<String, MetronomeUsageRow>("Metronome's usage query") { cursor in
            let query = cursor.map { [("next_page", $0)] } ?? []
            let request = HTTPRequest(
                method: .post, url: URLBuilder.url(base: settings.endpoint, path: "/v1/usage", query: query),
                headers: [
                    "Authorization": "Bearer \(settings.apiKey.exposedValue)", "Content-Type": "application/json",
                    "Accept": "application/json",
                ],
                body: encoded)
            let response = try await client.send(request)
            guard response.status == 200 else {
                let message = JSONValue.parse(response.body)?["message"]?.stringValue ?? "HTTP \(response.status)"
                throw UsageBillingError.forFailedCall(
                    response, message: "Metronome usage query failed (\(response.status)): \(message)",
                    credentialField: settings.credentialField)
            }
            guard let page = try? JSONDecoder().decode(Page.self, from: response.body) else {
                throw UsageBillingError(
                    .unexpectedResponse, "Metronome's usage answer does not decode", fix: "check endpoint")
            }
            return (page.data, page.next_page.flatMap { $0.isEmpty ? nil : $0 })
        }
        return try await pages.all()
    }

    /// Whether `customer` is a Metronome customer id (a UUID) rather than an ingest alias.
    public static func isCustomerID(_ customer: String) -> Bool { UUID(uuidString: customer) != nil }

    /// The Metronome customer id behind an ingest alias (`GET /v1/customers?ingest_alias=`):
    /// usage is reported per customer id, while events may name the customer by any alias, such
    /// as the Stripe customer id kept during a Stripe→Metronome migration.
    public func customerID(forAlias alias: String) async throws -> String {
        let request = HTTPRequest(
            method: .get,
            url: URLBuilder.url(base: settings.endpoint, path: "/v1/customers", query: [("ingest_alias", alias)]),
            headers: ["Authorization": "Bearer \(settings.apiKey.exposedValue)", "Accept": "application/json"])
        let response = try await client.send(request)
        guard response.status == 200 else {
            let message = JSONValue.parse(response.body)?["message"]?.stringValue ?? "HTTP \(response.status)"
            throw UsageBillingError.forFailedCall(
                response, message: "Metronome customer lookup by ingest alias failed (\(response.status)): \(message)",
                credentialField: settings.credentialField)
        }
        guard let found = JSONValue.parse(response.body)?["data"]?.arrayValue else {
            throw UsageBillingError(
                .unexpectedResponse, "Metronome's customer list does not decode", fix: "check endpoint")
        }
        let ids = found.compactMap { $0["id"]?.stringValue }
        guard let id = ids.first else {
            throw UsageBillingError(
                .notFound, "no Metronome customer has the ingest alias '\(alias)'",
                fix:
                    "add '\(alias)' to the customer's ingest_aliases in Metronome, or map it to the customer's Metronome id under customers:",
                field: "customers")
        }
        guard ids.count == 1 else {
            throw UsageBillingError(
                .unexpectedResponse, "\(ids.count) Metronome customers have the ingest alias '\(alias)'",
                fix: "keep the alias on one customer, or map '\(alias)' to a Metronome customer id under customers:",
                field: "customers")
        }
        return id
    }
}
