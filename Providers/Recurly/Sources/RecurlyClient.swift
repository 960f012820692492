import Foundation
import UsageBilling

/// One usage record read back from Recurly.
public struct RecurlyUsageRecord: Sendable, Hashable, Decodable {
    public var id: String
    public var merchantTag: String?
    public var amount: Double?
    public var usageTimestamp: String?
    public var billedAt: String?

    enum CodingKeys: String, CodingKey {
        case id, merchantTag = "merchant_tag", amount, usageTimestamp = "usage_timestamp", billedAt = "billed_at"
    }
}

/// Recurly's usage read-back (the add-on's usage list, every page) and its correction before
/// billing: deleting a usage record.
public struct RecurlyClient: Sendable {
    /// The settings in use.
    public let settings: RecurlySettings
    private let client: any HTTPClient
    private let clock: any UsageClock

    /// A client (the settings are not checked for an add-on: pass it per call).
    public init(settings: RecurlySettings, client: any HTTPClient, clock: any UsageClock = SystemClock()) {
        self.settings = settings
        self.client = client
        self.clock = clock
    }

    func headers(json: Bool) -> HeaderFields {
        var h: HeaderFields = [
            "Authorization": settings.apiKey.basicAuthorization, "Accept": "application/vnd.recurly.v2021-02-25",
        ]
        if json { h.add(name: "Content-Type", value: "application/json") }
        return h
    }

    static func usagePath(subscription: String, addOn: String) -> String {
        "/subscriptions/\(URLBuilder.pathSegment(subscription))/add_ons/\(URLBuilder.pathSegment(addOn))/usage"
    }

    /// Usage records with `usage_timestamp` in [begin, end] (inclusive), billed or not,
    /// ascending by `usage_timestamp` (the only order Recurly says is safe to page), every page.
    public func usage(subscription: String, addOn: String, begin: Date, end: Date) async throws -> [RecurlyUsageRecord]
    {
        let query: [(String, String)] = [
            ("billing_status", "all"), ("sort", "usage_timestamp"), ("order", "asc"), ("limit", "200"),
            ("begin_time", RFC3339.format(begin)), ("end_time", RFC3339.format(end)),
        ]
        struct Page: Decodable { var data: [RecurlyUsageRecord]; var has_more: Bool?; var next: String? }
        let first = URLBuilder.url(
            base: settings.endpoint, path: Self.usagePath(subscription: subscription, addOn: addOn), query: query)
        let settings = self.settings, client = self.client, headers = self.headers(json: false)
        let pages = PaginatorSequence<String, RecurlyUsageRecord>("Recurly's usage list", start: first) { url in
            let response = try await client.send(HTTPRequest(method: .get, url: url ?? first, headers: headers))
            guard response.status == 200 else {
                let error = RecurlyError(response)
                throw UsageBillingError.forFailedCall(
                    response, message: "Recurly usage list failed (\(response.status)): \(error.describe)",
                    credentialField: "api_key", notFoundFix: "check the subscription (uuid-…) and add-on (code-…) ids")
            }
            guard let page = try? JSONDecoder().decode(Page.self, from: response.body) else {
                throw UsageBillingError(
                    .unexpectedResponse, "Recurly's usage list does not decode", fix: "check endpoint")
            }
            guard page.has_more == true, let next = page.next, !next.isEmpty else { return (page.data, nil) }
            return (page.data, next.hasPrefix("http") ? next : URLBuilder.url(base: settings.endpoint, path: next))
        }
        return try await pages.all()
    }

    /// The outcome of an error answer to a usage POST; throws for credentials, permissions and
    /// the API version.
    static func outcome(for response: HTTPResponse, now: Date) throws -> DeliveryOutcome {
        let error = RecurlyError(response)
        switch (response.status, error.type) {
        case (401, _), (403, _), (406, _), (_, "invalid_api_key"), (_, "invalid_permissions"),
            (_, "unknown_api_version"), (_, "invalid_api_version"):
            throw UsageBillingError(
                .configuration, "Recurly refused the request (\(response.status): \(error.describe))",
                fix: response.status == 406
                    ? "this client speaks v2021-02-25; check the site's API access"
                    : "check api_key, region and its permissions",
                field: "api_key", providerRequestID: response.headers["X-Request-Id"])
        case (429, _), (_, "rate_limited"):
            var after = response.retryAfter(now: now)
            if after == nil, let reset = response.headers["X-RateLimit-Reset"].flatMap(Double.init) {
                after = .seconds(max(1, reset - now.timeIntervalSince1970))
            }
            return .retryable(
                RetryableReason(
                    .rateLimited, httpStatus: response.status, message: error.describe,
                    providerRequestID: response.headers["X-Request-Id"]), retryAfter: after)
        case (_, "simultaneous_request"):
            return .retryable(
                RetryableReason(.conflict, httpStatus: response.status, message: error.describe),
                retryAfter: .seconds(1))
        case (500..., _):
            return .retryable(
                RetryableReason(
                    .serverError, httpStatus: response.status, message: error.describe,
                    providerRequestID: response.headers["X-Request-Id"]), retryAfter: response.retryAfter(now: now))
        default:
            return .rejected(
                RejectionReason(
                    code: error.type ?? "http_\(response.status)", message: error.describe, field: error.param,
                    origin: .provider, providerRequestID: response.headers["X-Request-Id"], httpStatus: response.status)
            )
        }
    }

    /// Deletes one usage record (`DELETE /usage/{usage_id}`, answered 204): Recurly's way to take
    /// back usage that is not billed yet. Billed usage cannot be deleted; Recurly's fix is a new
    /// usage record with a negative amount that counteracts it.
    /// - Throws: `.notFound` for an id the site does not have; `.rejected` (Recurly's 422) for
    ///   usage it will not delete, with that fix.
    public func deleteUsage(id: String) async throws {
        let response = try await client.send(
            HTTPRequest(
                method: .delete,
                url: URLBuilder.url(base: settings.endpoint, path: "/usage/\(URLBuilder.pathSegment(id))"),
                headers: headers(json: false)))
        guard response.status != 204 && response.status != 200 else { return }
        let error = RecurlyError(response)
        if response.status == 422 {
            throw UsageBillingError(
                .rejected, "Recurly did not delete usage \(id): \(error.describe)",
                fix: "billed usage stays: record usage with a negative amount that counteracts it",
                httpStatus: response.status)
        }
        throw UsageBillingError.forFailedCall(
            response, message: "Recurly did not delete usage \(id) (\(response.status)): \(error.describe)",
            credentialField: "api_key", notFoundFix: "check the usage id (from the add-on's usage list)")
    }
}

/// Recurly's error body: `{"error": {"type", "message", "params": [{"param", "message"}]}}`.
struct RecurlyError {
    var type: String?
    var message: String
    var param: String?

    init(_ response: HTTPResponse) {
        let error = JSONValue.parse(response.body)?["error"]
        type = error?["type"]?.stringValue
        message = error?["message"]?.stringValue ?? "Recurly answered HTTP \(response.status)"
        if case .array(let params)? = error?["params"], let first = params.first {
            param = first["param"]?.stringValue
        } else {
            param = nil
        }
    }

    var describe: String { type.map { "\(message) (\($0))" } ?? message }
}
