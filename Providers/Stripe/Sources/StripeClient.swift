import Foundation
import UsageBilling

/// A Stripe `billing.meter`. Enums are open strings (Stripe adds values).
public struct StripeMeter: Sendable, Hashable, Decodable {
    /// Which payload key holds the customer id.
    public struct CustomerMapping: Sendable, Hashable, Decodable {
        /// The payload key.
        public var eventPayloadKey: String
        /// The mapping or adjustment type (`by_id`, `cancel`), or the error type.
        public var type: String
        enum CodingKeys: String, CodingKey { case eventPayloadKey = "event_payload_key", type }
    }
    /// Which payload key holds the value.
    public struct ValueSettings: Sendable, Hashable, Decodable {
        /// The payload key.
        public var eventPayloadKey: String
        enum CodingKeys: String, CodingKey { case eventPayloadKey = "event_payload_key" }
    }
    /// The meter's aggregation formula (`sum`, `count`, `last`).
    public struct Aggregation: Sendable, Hashable, Decodable { public var formula: String }

    /// Stripe's id.
    public var id: String
    /// The meter's display name.
    public var displayName: String
    /// The meter event name.
    public var eventName: String
    /// `active`/`inactive` for meters, `pending`/`complete` for adjustments.
    public var status: String
    /// Where the customer id is in the payload.
    public var customerMapping: CustomerMapping
    /// Where the value is in the payload.
    public var valueSettings: ValueSettings
    /// How the meter aggregates.
    public var defaultAggregation: Aggregation
    /// `day`, `hour` or nil (raw).
    public var eventTimeWindow: String?
    /// Whether this lives in live mode.
    public var livemode: Bool
    /// Creation time, Unix seconds.
    public var created: Int

    enum CodingKeys: String, CodingKey {
        case id, status, livemode, created
        case displayName = "display_name", eventName = "event_name", customerMapping = "customer_mapping"
        case valueSettings = "value_settings", defaultAggregation = "default_aggregation", eventTimeWindow =
            "event_time_window"
    }
}

/// One `billing.meter_event_summary`: the aggregated value for a customer over [start, end).
public struct StripeMeterEventSummary: Sendable, Hashable, Decodable {
    /// Stripe's id.
    public var id: String
    /// The meter's id.
    public var meter: String
    /// Aggregated value; Stripe sends a JSON number, possibly fractional.
    public var aggregatedValue: Double
    /// Inclusive start, Unix seconds.
    public var startTime: Int
    /// Exclusive end, Unix seconds.
    public var endTime: Int
    /// Whether this lives in live mode.
    public var livemode: Bool

    enum CodingKeys: String, CodingKey {
        case id, meter, livemode
        case aggregatedValue = "aggregated_value", startTime = "start_time", endTime = "end_time"
    }
}

/// The result of cancelling a meter event.
public struct StripeMeterEventAdjustment: Sendable, Hashable, Decodable {
    /// v2 adjustments have an id; v1 adjustments do not.
    public var id: String?
    /// The meter event name.
    public var eventName: String
    /// `active`/`inactive` for meters, `pending`/`complete` for adjustments.
    public var status: String
    /// The mapping or adjustment type (`by_id`, `cancel`), or the error type.
    public var type: String
    enum CodingKeys: String, CodingKey { case id, status, type, eventName = "event_name" }
}

/// Grouping window for event summaries.
public enum StripeSummaryWindow: String, Sendable, CaseIterable {
    case hour, day
}

/// Stripe's meter management and read-back endpoints: meters (create, list, get, deactivate,
/// reactivate), event summaries (paginated, with the window alignment checked before asking),
/// and meter event adjustments (cancel by identifier).
public struct StripeClient: Sendable {
    /// The settings in use (the secret prints masked).
    public let settings: StripeSettings
    private let client: any HTTPClient

    /// A client; throws `.invalidInput`/`.configuration` naming a bad setting.
    public init(settings: StripeSettings, client: any HTTPClient) throws {
        try settings.validate()
        self.settings = settings
        self.client = client
    }

    // MARK: Meters

    /// Creates a meter (`POST /v1/billing/meters`).
    public func createMeter(
        displayName: String, eventName: String, formula: String = "sum", customerKey: String? = nil,
        valueKey: String? = nil, eventTimeWindow: StripeSummaryWindow? = nil, idempotencyKey: String? = nil
    ) async throws -> StripeMeter {
        guard !displayName.isEmpty, displayName.count <= 250 else {
            throw UsageBillingError(.invalidInput, "display_name must be 1–250 characters", field: "display_name")
        }
        guard !eventName.isEmpty, eventName.count <= 100 else {
            throw UsageBillingError(.invalidInput, "event_name must be 1–100 characters", field: "event_name")
        }
        var fields: [(String, String)] = [
            ("display_name", displayName), ("event_name", eventName), ("default_aggregation[formula]", formula),
        ]
        if let customerKey {
            fields += [("customer_mapping[event_payload_key]", customerKey), ("customer_mapping[type]", "by_id")]
        }
        if let valueKey { fields.append(("value_settings[event_payload_key]", valueKey)) }
        if let eventTimeWindow { fields.append(("event_time_window", eventTimeWindow.rawValue)) }
        return try await post(
            "/v1/billing/meters", form: fields, idempotencyKey: idempotencyKey ?? UUID().uuidString.lowercased())
    }

    /// Fetches one meter.
    public func meter(id: String) async throws -> StripeMeter {
        try await get("/v1/billing/meters/\(URLBuilder.pathSegment(id))", query: [])
    }

    /// Lists every meter, following `has_more` / `starting_after` pages of `pageSize` (1–100).
    public func listMeters(status: String? = nil, pageSize: Int = 100) async throws -> [StripeMeter] {
        var query: [(String, String)] = [("limit", String(min(100, max(1, pageSize))))]
        if let status { query.append(("status", status)) }
        return try await paginate("/v1/billing/meters", query: query, id: \StripeMeter.id)
    }

    /// Deactivates a meter: Stripe then refuses its events.
    public func deactivateMeter(id: String) async throws -> StripeMeter {
        try await post(
            "/v1/billing/meters/\(URLBuilder.pathSegment(id))/deactivate", form: [],
            idempotencyKey: UUID().uuidString.lowercased())
    }

    /// Reactivates a meter.
    public func reactivateMeter(id: String) async throws -> StripeMeter {
        try await post(
            "/v1/billing/meters/\(URLBuilder.pathSegment(id))/reactivate", form: [],
            idempotencyKey: UUID().uuidString.lowercased())
    }

    // MARK: Event summaries

    /// Checks Stripe's alignment rules for an event-summary query: start before end, both on a
    /// minute boundary; on the hour for `hour` grouping; on UTC midnight for `day` grouping.
    public static func validateSummaryRange(start: Date, end: Date, window: StripeSummaryWindow?) throws {
        let s = Int(start.timeIntervalSince1970), e = Int(end.timeIntervalSince1970)
        guard Double(s) == start.timeIntervalSince1970, Double(e) == end.timeIntervalSince1970 else {
            throw UsageBillingError(
                .invalidInput, "start and end must be whole seconds", fix: "drop the fractional seconds",
                field: "start_time")
        }
        guard s < e else {
            throw UsageBillingError(.invalidInput, "start_time must be before end_time", field: "start_time")
        }
        let (unit, label): (Int, String) =
            switch window {
            case nil: (60, "a minute boundary")
            case .hour?: (3600, "an hour boundary (UTC)")
            case .day?: (86_400, "UTC midnight")
            }
        for (field, value) in [("start_time", s), ("end_time", e)] where value % unit != 0 {
            let aligned = RFC3339.format(Date(timeIntervalSince1970: TimeInterval(value - value % unit)))
            throw UsageBillingError(
                .invalidInput,
                "\(field) \(RFC3339.format(Date(timeIntervalSince1970: TimeInterval(value)))) is not on \(label)",
                fix: "use e.g. \(aligned)", field: field)
        }
    }

    /// The meter's aggregated usage for `customer` (a Stripe customer id) over [start, end),
    /// one summary for the range or one per hour/day, all pages fetched. Stripe returns newest first.
    public func eventSummaries(
        meterID: String, customer: String, start: Date, end: Date, window: StripeSummaryWindow? = nil,
        pageSize: Int = 100
    ) async throws -> [StripeMeterEventSummary] {
        try Self.validateSummaryRange(start: start, end: end, window: window)
        guard !customer.isEmpty else {
            throw UsageBillingError(.invalidInput, "customer is required for event summaries", field: "customer")
        }
        var query: [(String, String)] = [
            ("customer", customer),
            ("start_time", String(Int(start.timeIntervalSince1970))),
            ("end_time", String(Int(end.timeIntervalSince1970))),
        ]
        if let window { query.append(("value_grouping_window", window.rawValue)) }
        query.append(("limit", String(min(100, max(1, pageSize)))))
        return try await paginate(
            "/v1/billing/meters/\(URLBuilder.pathSegment(meterID))/event_summaries",
            query: query, id: \StripeMeterEventSummary.id)
    }

    // MARK: Adjustments

    /// Cancels a meter event by its identifier (only within 24 hours of Stripe receiving it).
    /// Uses the v1 form endpoint, or the v2 JSON one when `settings.api` is v2 or the stream.
    /// `idempotencyKey`: the same on every retry of one cancel (by default derived from the
    /// event name and identifier).
    public func cancelMeterEvent(
        eventName: String, identifier: String, idempotencyKey: String? = nil
    ) async throws -> StripeMeterEventAdjustment {
        guard !identifier.isEmpty, identifier.count <= 100 else {
            throw UsageBillingError(.invalidInput, "identifier must be 1–100 characters", field: "identifier")
        }
        let key = idempotencyKey ?? EventID.derived(from: ["stripe-cancel", eventName, identifier])
        if settings.api == .v1 {
            return try await post(
                "/v1/billing/meter_event_adjustments",
                form: [("event_name", eventName), ("type", "cancel"), ("cancel[identifier]", identifier)],
                idempotencyKey: key)
        }
        let body = JSONValue.object([
            "event_name": .string(eventName), "type": .string("cancel"),
            "cancel": .object(["identifier": .string(identifier)]),
        ])
        return try await send(
            .post, "/v2/billing/meter_event_adjustments", query: [], body: body.encoded(),
            contentType: "application/json", idempotencyKey: key)
    }

    // MARK: Plumbing

    private func post<T: Decodable>(_ path: String, form: [(String, String)], idempotencyKey: String) async throws -> T
    {
        try await send(
            .post, path, query: [], body: Data(FormEncoding.encode(form).utf8),
            contentType: "application/x-www-form-urlencoded", idempotencyKey: idempotencyKey)
    }

    private func get<T: Decodable>(_ path: String, query: [(String, String)]) async throws -> T {
        try await send(.get, path, query: query, body: nil, contentType: nil, idempotencyKey: nil)
    }

    private struct Page<T: Decodable>: Decodable {
        var data: [T]
        var hasMore: Bool
        enum CodingKeys: String, CodingKey { case data, hasMore = "has_more" }
    }

    private func paginate<T: Decodable & Sendable>(
        _ path: String, query: [(String, String)], id: KeyPath<T, String> & Sendable
    ) async throws -> [T] {
        try await PaginatorSequence<String, T>("Stripe's list \(path)") { cursor in
            var q = query
            if let cursor { q.append(("starting_after", cursor)) }
            let page: Page<T> = try await get(path, query: q)
            guard page.hasMore, let last = page.data.last else { return (page.data, nil) }
            return (page.data, last[keyPath: id])
        }.all()
    }

    private func send<T: Decodable>(
        _ method: HTTPMethod, _ path: String, query: [(String, String)], body: Data?, contentType: String?,
        idempotencyKey: String?
    ) async throws -> T {
        var headers: HeaderFields = [
            "Authorization": "Bearer \(settings.secretKey.exposedValue)",
            "Stripe-Version": settings.apiVersion,
        ]
        if let contentType { headers["Content-Type"] = contentType }
        if let idempotencyKey { headers["Idempotency-Key"] = idempotencyKey }
        if let account = settings.stripeAccount { headers["Stripe-Account"] = account }
        let request = HTTPRequest(
            method: method, url: URLBuilder.url(base: settings.endpoint, path: path, query: query),
            headers: headers, body: body)
        let response = try await client.send(request)
        let requestID = response.headers["Request-Id"]
        guard (200..<300).contains(response.status) else {
            let error = StripeErrorBody(response.body)
            let what = [error.code, error.message].compactMap { $0 }.joined(separator: ": ")
            let text = "Stripe answered \(response.status) to \(method) \(path)" + (what.isEmpty ? "" : " (\(what))")
            throw UsageBillingError.forFailedCall(
                response, message: text, credentialField: "secret_key",
                notFoundFix: "check the id; list meters with `usage-billing meters list`", field: error.param,
                providerRequestID: requestID)
        }
        do {
            return try JSONDecoder().decode(T.self, from: response.body)
        } catch {
            throw UsageBillingError(
                .unexpectedResponse, "Stripe's answer to \(method) \(path) does not decode as \(T.self): \(error)",
                fix: "check that endpoint points at the Stripe API and api_version is supported",
                providerRequestID: requestID)
        }
    }
}

/// The name before every provider folder had the same shape (`<Name>Sink`, `<Name>Client`).
@available(*, deprecated, renamed: "StripeClient")
public typealias StripeBillingClient = StripeClient
