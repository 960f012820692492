import Foundation
import UsageBilling

/// Orb's RFC 7807 error body: `{status, type, title, detail, validation_errors?}`.
public struct OrbProblem: Sendable, Hashable {
    /// The `type` URI (stable; switch on it).
    public var type: String?
    /// A short title.
    public var title: String?
    /// Details.
    public var detail: String?
    /// Per-event validation errors: idempotency key → messages.
    public var validationErrors: [(key: String, messages: [String])]
    /// A request's validation errors (`{loc, msg}` items), as `body.timestamp: message`.
    public var requestErrors: [String]

    /// Parses a response body; missing fields are nil/empty.
    public init(_ body: Data) {
        let json = JSONValue.parse(body)
        type = json?["type"]?.stringValue
        title = json?["title"]?.stringValue
        detail = json?["detail"]?.stringValue
        validationErrors = Self.perEvent(json?["validation_errors"]) + Self.perEvent(json?["validation_failed"])
        requestErrors = (json?["validation_errors"]?.arrayValue ?? []).compactMap { item in
            guard let message = item["msg"]?.stringValue else { return nil }
            let loc = (item["loc"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ".")
            return loc.isEmpty ? message : "\(loc): \(message)"
        }
    }

    /// Items `{idempotency_key, validation_errors: [string]}` of an array.
    static func perEvent(_ value: JSONValue?) -> [(key: String, messages: [String])] {
        (value?.arrayValue ?? []).compactMap { item in
            guard let key = item["idempotency_key"]?.stringValue else { return nil }
            let messages = (item["validation_errors"]?.arrayValue ?? []).compactMap(\.stringValue)
            return (key, messages)
        }
    }

    /// The part of `type` after `#` (e.g. `400-request-validation-errors`), a stable code.
    public var code: String? { type?.split(separator: "#").last.map(String.init) }

    /// `detail`, else `title` with the request's validation errors, else a fallback.
    public func message(status: Int) -> String {
        if let detail { return detail }
        let errors = requestErrors.joined(separator: "; ")
        let text = [title, errors.isEmpty ? nil : errors].compactMap { $0 }.joined(separator: ": ")
        return text.isEmpty ? "Orb answered HTTP \(status)" : text
    }

    public static func == (lhs: OrbProblem, rhs: OrbProblem) -> Bool {
        lhs.type == rhs.type && lhs.title == rhs.title && lhs.detail == rhs.detail
            && lhs.validationErrors.map(\.key) == rhs.validationErrors.map(\.key)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(type)
        hasher.combine(detail)
    }
}

/// An Orb backfill (events older than the grace period go into one).
public struct OrbBackfill: Sendable, Hashable, Decodable {
    /// The backfill id, passed to ingest as `backfill_id`.
    public var id: String
    /// `pending`, `reflected`, `pending_revert`, `reverted`.
    public var status: String
    /// How many events it holds.
    public var eventsIngested: Int
    enum CodingKeys: String, CodingKey { case id, status, eventsIngested = "events_ingested" }
}

/// One billable metric's usage windows from `GET /subscriptions/{id}/usage`.
public struct OrbMetricUsage: Sendable, Hashable {
    /// The billable metric's id.
    public var metricID: String
    /// Its name.
    public var metricName: String
    /// Quantity per window, in order.
    public var windows: [(start: Date, end: Date, quantity: Double)]

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.metricID == rhs.metricID && lhs.windows.map(\.quantity) == rhs.windows.map(\.quantity)
            && lhs.windows.map(\.start) == rhs.windows.map(\.start)
    }
    public func hash(into hasher: inout Hasher) { hasher.combine(metricID) }
}

/// An event as `POST /events/search` returns it.
public struct OrbEvent: Sendable, Hashable {
    /// The idempotency key.
    public var id: String
    /// The event name.
    public var eventName: String
    /// Whether it was deprecated (amended away).
    public var deprecated: Bool
    /// Its properties.
    public var properties: JSONValue
}

/// A subscription as `GET /subscriptions` lists it.
public struct OrbSubscription: Sendable, Hashable {
    /// Orb's subscription id.
    public var id: String
    /// `active`, `ended` or `upcoming`.
    public var status: String
    /// When it starts.
    public var startDate: Date
    /// When it ended (or ends); nil while it runs on.
    public var endDate: Date?
}

/// Orb's read-back and backfill endpoints.
public struct OrbClient: Sendable {
    /// The settings in use.
    public let settings: OrbSettings
    private let client: any HTTPClient

    /// A client; throws on unusable settings.
    public init(settings: OrbSettings, client: any HTTPClient) throws {
        try settings.validate()
        self.settings = settings
        self.client = client
    }

    /// Common headers for every Orb call.
    func headers(idempotencyKey: String? = nil) -> HeaderFields {
        var h: HeaderFields = [
            "Authorization": "Bearer \(settings.apiKey.exposedValue)",
            "Accept": "application/json",
            "Content-Type": "application/json",
        ]
        if let idempotencyKey { h["Idempotency-Key"] = idempotencyKey }
        return h
    }

    /// Creates a backfill over [start, end) for an optional customer (`POST /events/backfills`).
    public func createBackfill(
        start: Date, end: Date, externalCustomerID: String? = nil, customerID: String? = nil,
        idempotencyKey: String
    ) async throws -> OrbBackfill {
        var body: [String: JSONValue] = [
            "timeframe_start": .string(RFC3339.format(start)), "timeframe_end": .string(RFC3339.format(end)),
        ]
        if let externalCustomerID { body["external_customer_id"] = .string(externalCustomerID) }
        if let customerID { body["customer_id"] = .string(customerID) }
        return try await call(.post, "/events/backfills", body: .object(body), idempotencyKey: idempotencyKey)
    }

    /// Closes a backfill so its events count (`POST /events/backfills/{id}/close`).
    public func closeBackfill(id: String) async throws -> OrbBackfill {
        try await call(
            .post, "/events/backfills/\(URLBuilder.pathSegment(id))/close", body: nil,
            idempotencyKey: EventID.derived(from: ["orb-close-backfill", id]))
    }

    /// The time zone Orb cuts a customer's days in (`GET /customers/external_customer_id/{id}`,
    /// field `timezone`); UTC when Orb names none.
    public func customerTimeZone(externalCustomerID: String) async throws -> TimeZone {
        try await timeZone(
            path: "/customers/external_customer_id/\(URLBuilder.pathSegment(externalCustomerID))",
            customer: externalCustomerID)
    }

    /// The time zone of a customer as the settings name customers: by external id, or by Orb's
    /// own id (`GET /customers/{id}`) with `customer_id_kind: orb`.
    public func customerTimeZone(customer: String) async throws -> TimeZone {
        settings.customerIDKind == .orb
            ? try await timeZone(path: "/customers/\(URLBuilder.pathSegment(customer))", customer: customer)
            : try await customerTimeZone(externalCustomerID: customer)
    }

    private func timeZone(path: String, customer id: String) async throws -> TimeZone {
        struct Customer: Decodable { var timezone: String? }
        let customer: Customer = try await call(.get, path, body: nil)
        guard let name = customer.timezone else { return TimeZone(identifier: "UTC") ?? .current }
        guard let zone = TimeZone(identifier: name) else {
            throw UsageBillingError(
                .unexpectedResponse,
                "Orb names the time zone '\(name)' for customer \(id), which this system does not know",
                fix: "install the tz database (Debian package tzdata)")
        }
        return zone
    }

    /// Usage per billable metric over [start, end), per day (customer-local days) or for the whole range.
    public func subscriptionUsage(subscriptionID: String, start: Date, end: Date, daily: Bool = true) async throws
        -> [OrbMetricUsage]
    {
        guard start < end else {
            throw UsageBillingError(
                .invalidInput, "timeframe_start must be before timeframe_end", field: "timeframe_start")
        }
        var query = [
            ("timeframe_start", RFC3339.format(start)), ("timeframe_end", RFC3339.format(end)),
            ("view_mode", "periodic"),
        ]
        if daily { query.append(("granularity", "day")) }
        let json: JSONValue = try await call(
            .get, "/subscriptions/\(URLBuilder.pathSegment(subscriptionID))/usage", query: query, body: nil)
        return (json["data"]?.arrayValue ?? []).map { item in
            OrbMetricUsage(
                metricID: item["billable_metric"]?["id"]?.stringValue ?? "",
                metricName: item["billable_metric"]?["name"]?.stringValue ?? "",
                windows: (item["usage"]?.arrayValue ?? []).compactMap { window in
                    guard let s = window["timeframe_start"]?.stringValue.flatMap(RFC3339.parse),
                        let e = window["timeframe_end"]?.stringValue.flatMap(RFC3339.parse)
                    else { return nil }
                    return (s, e, window["quantity"]?.numberValue ?? 0)
                })
        }
    }

    /// A customer's subscriptions, every page (`GET /subscriptions?external_customer_id[]=…`, or
    /// `customer_id[]` with `customer_id_kind: orb`), newest first as Orb lists them.
    public func subscriptions(customer: String) async throws -> [OrbSubscription] {
        let filter = settings.customerIDKind == .orb ? "customer_id[]" : "external_customer_id[]"
        let pages = PaginatorSequence<String, OrbSubscription>("Orb's subscription list") { cursor in
            var query = [(filter, customer), ("limit", "100")]
            if let cursor { query.append(("cursor", cursor)) }
            let page: JSONValue = try await call(.get, "/subscriptions", query: query, body: nil)
            var all: [OrbSubscription] = []
            for item in page["data"]?.arrayValue ?? [] {
                guard let id = item["id"]?.stringValue,
                    let start = item["start_date"]?.stringValue.flatMap(RFC3339.parse)
                else {
                    throw UsageBillingError(
                        .unexpectedResponse, "Orb listed a subscription of \(customer) without an id or start_date",
                        fix: "check that endpoint points at the Orb API")
                }
                all.append(
                    OrbSubscription(
                        id: id, status: item["status"]?.stringValue ?? "", startDate: start,
                        endDate: item["end_date"]?.stringValue.flatMap(RFC3339.parse)))
            }
            let more = page["pagination_metadata"]?["has_more"]?.boolValue == true
            return (all, more ? page["pagination_metadata"]?["next_cursor"]?.stringValue : nil)
        }
        return try await pages.all()
    }

    /// Amends one event (`PUT /events/{event_id}`, the id being the `idempotency_key` it was
    /// ingested with): Orb keeps the original and bills by this one from now on. `timestamp` and
    /// the customer must be the original's (exactly one of `externalCustomerID` and `customerID`).
    /// Idempotent by design, so it carries no idempotency key and may be retried as it is. Orb
    /// refuses it outside the customer's current billing period and the previous one's grace
    /// period, and past 100 amended or deprecated events per customer in 100 days (then: a
    /// backfill with `replace_existing_events`).
    /// - Returns: the amended event's id, as Orb echoes it.
    @discardableResult
    public func amendEvent(
        id: String, eventName: String, properties: [String: JSONValue], timestamp: Date,
        externalCustomerID: String? = nil, customerID: String? = nil
    ) async throws -> String {
        guard (externalCustomerID == nil) != (customerID == nil) else {
            throw UsageBillingError(
                .invalidInput, "an amendment names its customer once",
                fix: "pass either the external customer id or Orb's customer id, as the event was ingested",
                field: "customer")
        }
        var body: [String: JSONValue] = [
            "event_name": .string(eventName), "properties": .object(properties),
            "timestamp": .string(RFC3339.format(timestamp)),
        ]
        if let externalCustomerID { body["external_customer_id"] = .string(externalCustomerID) }
        if let customerID { body["customer_id"] = .string(customerID) }
        let json: JSONValue = try await correcting {
            try await call(.put, "/events/\(URLBuilder.pathSegment(id))", body: .object(body), idempotencyKey: nil)
        }
        return json["amended"]?.stringValue ?? id
    }

    /// Deprecates one event (`PUT /events/{event_id}/deprecate`): Orb keeps it but bills it no
    /// more, and refuses a later ingest of its id. The same limits as ``amendEvent(id:eventName:properties:timestamp:externalCustomerID:customerID:)``;
    /// idempotent by design.
    /// - Returns: the deprecated event's id, as Orb echoes it.
    @discardableResult
    public func deprecateEvent(id: String) async throws -> String {
        let json: JSONValue = try await correcting {
            try await call(.put, "/events/\(URLBuilder.pathSegment(id))/deprecate", body: nil, idempotencyKey: nil)
        }
        return json["deprecated"]?.stringValue ?? id
    }

    /// A correction Orb refuses (400): most often the event's billing period has passed its grace
    /// period or the customer has had its 100 corrections in 100 days; an amendment whose
    /// timestamp or customer differs from the original's is refused the same way.
    private func correcting(_ body: () async throws -> JSONValue) async throws -> JSONValue {
        do {
            return try await body()
        } catch let error as UsageBillingError where error.httpStatus == 400 {
            throw UsageBillingError(
                .rejected, error.message,
                fix:
                    "an amendment keeps the original's timestamp and customer; beyond that, Orb amends and deprecates events only in the customer's current billing period (or the previous one's grace period), 100 per customer in 100 days: replace them with a backfill (`replace_existing_events`), or credit the invoice",
                providerRequestID: error.providerRequestID, httpStatus: 400)
        }
    }

    /// Finds events by idempotency key (`POST /events/search`), e.g. to check what landed.
    public func searchEvents(ids: [String], start: Date? = nil, end: Date? = nil) async throws -> [OrbEvent] {
        guard !ids.isEmpty else { return [] }
        var body: [String: JSONValue] = ["event_ids": .array(ids.map(JSONValue.string))]
        if let start { body["timeframe_start"] = .string(RFC3339.format(start)) }
        if let end { body["timeframe_end"] = .string(RFC3339.format(end)) }
        let json: JSONValue = try await call(.post, "/events/search", body: .object(body), idempotencyKey: nil)
        return (json["data"]?.arrayValue ?? []).map {
            OrbEvent(
                id: $0["id"]?.stringValue ?? "", eventName: $0["event_name"]?.stringValue ?? "",
                deprecated: $0["deprecated"]?.boolValue ?? false, properties: $0["properties"] ?? .object([:]))
        }
    }

    func call<T: Decodable>(
        _ method: HTTPMethod, _ path: String, query: [(String, String)] = [], body: JSONValue?,
        idempotencyKey: String? = nil
    ) async throws -> T {
        var h = headers(idempotencyKey: idempotencyKey)
        if body == nil { h["Content-Type"] = nil }
        let request = HTTPRequest(
            method: method, url: URLBuilder.url(base: settings.endpoint, path: path, query: query),
            headers: h, body: body?.encoded())
        let response = try await client.send(request)
        guard (200..<300).contains(response.status) else {
            let problem = OrbProblem(response.body)
            let text =
                "Orb answered \(response.status) to \(method) \(path): \(problem.message(status: response.status))"
            throw UsageBillingError.forFailedCall(response, message: text, credentialField: "api_key")
        }
        do {
            return try JSONDecoder().decode(T.self, from: response.body)
        } catch {
            throw UsageBillingError(
                .unexpectedResponse, "Orb's answer to \(method) \(path) does not decode: \(error)",
                fix: "check that endpoint points at the Orb API")
        }
    }
}
