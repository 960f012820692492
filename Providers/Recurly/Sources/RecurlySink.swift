import Foundation
import UsageBilling

/// Delivers aggregated usage to Recurly (API v2021-02-25):
/// `POST /subscriptions/{subscription_id}/add_ons/{add_on_id}/usage` with `amount`,
/// `merchant_tag` = the aggregate's deterministic id, `usage_timestamp` = window start and
/// `recording_timestamp` = window end.
///
/// Recurly does not deduplicate: a repeated POST is a second usage record. So an event that may
/// already have reached Recurly (an earlier attempt timed out, failed with 5xx, or the process
/// died mid-call) is first looked up by its `merchant_tag` on the list endpoint; if it is there it
/// is `.duplicate` and nothing is posted. If the lookup itself fails, the event stays retryable.
///
/// 429 waits until `X-RateLimit-Reset`; `simultaneous_request` is retried; 401/403/406 throw
/// `.configuration`; other errors reject with Recurly's `type` and message.
public struct RecurlySink: UsageSink {
    public let name: String
    /// The settings in use (the key prints masked).
    public let settings: RecurlySettings
    private let client: any HTTPClient
    private let clock: any UsageClock
    private let reader: RecurlyClient

    /// A sink; throws `.invalidInput`/`.configuration` naming a bad setting.
    public init(settings: RecurlySettings, client: any HTTPClient, clock: any UsageClock = SystemClock(), name: String = "recurly") throws {
        try settings.validate()
        self.name = name
        self.settings = settings
        self.client = client
        self.clock = clock
        self.reader = RecurlyClient(settings: settings, client: client, clock: clock)
    }

    /// One record per request, aggregated, checked before a retry, paced by `requests_per_minute`.
    public var capabilities: SinkCapabilities {
        SinkCapabilities(maxBatchSize: 1, idempotency: .clientCheckBeforeRetry,
                         rateLimit: RateLimit(requestsPerSecond: settings.requestsPerMinute / 60, burst: 5), aggregation: settings.aggregate)
    }

    /// Delivers assuming nothing was tried before.
    public func deliver(_ batch: [UsageEvent]) async throws -> [DeliveryOutcome] {
        try await deliver(batch, retrying: [])
    }

    /// Delivers; events in `retrying` are looked up by `merchant_tag` first.
    public func deliver(_ batch: [UsageEvent], retrying: Set<String>) async throws -> [DeliveryOutcome] {
        var outcomes: [DeliveryOutcome] = []
        for event in batch { outcomes.append(try await deliverOne(event, verify: retrying.contains(event.id))) }
        return outcomes
    }

    /// The path ids and the JSON body for one record, or a local rejection.
    func prepare(_ event: UsageEvent) -> Result<(subscription: String, addOn: String, body: JSONValue), RejectionReason> {
        let subscription = settings.mapping.providerCustomer(for: event)
        if subscription.isEmpty { return .failure(.local("subscription_missing", field: "customer", "the event has no customer; map it to a Recurly subscription")) }
        guard let addOn = settings.addOn(for: event.name) else {
            return .failure(.local("add_on_missing", field: "add_on_id", "no Recurly add-on for '\(event.name)'; add it to add_ons or set add_on_id"))
        }
        var amount = event.quantity
        if !settings.decimalQuantity && !DecimalFormat.isWhole(amount) {
            return .failure(.local("amount_not_whole", field: "quantity",
                                   "Recurly drops the decimals of \(DecimalFormat.plain(amount)) unless the site has Decimal Quantity; enable it and set decimal_quantity: true, or bill whole units"))
        }
        if settings.decimalQuantity {
            var rounded = Decimal()
            NSDecimalRound(&rounded, &amount, 9, .plain)
            amount = rounded
        }
        guard let number = DecimalFormat.exactDouble(amount) else {
            return .failure(.local("value_not_representable", field: "quantity",
                                   "the amount \(DecimalFormat.plain(amount)) does not fit a JSON number exactly; round it"))
        }
        let info = AggregateInfo(event)
        let recorded = info.windowEnd ?? event.timestamp
        return .success((subscription, addOn, .object([
            "amount": .number(number), "merchant_tag": .string(event.id),
            "usage_timestamp": .string(RFC3339.format(info.windowStart)), "recording_timestamp": .string(RFC3339.format(recorded)),
        ])))
    }

    private func deliverOne(_ event: UsageEvent, verify: Bool) async throws -> DeliveryOutcome {
        let prepared: (subscription: String, addOn: String, body: JSONValue)
        switch prepare(event) {
        case .failure(let reason): return .rejected(reason)
        case .success(let p): prepared = p
        }
        if verify {
            let at = AggregateInfo(event).windowStart
            do {
                let found = try await reader.usage(subscription: prepared.subscription, addOn: prepared.addOn, begin: at, end: at)
                if found.contains(where: { $0.merchantTag == event.id }) { return .duplicate }
            } catch let error as UsageBillingError where error.code == .configuration {
                throw error
            } catch {
                return .retryable(RetryableReason(.transport, message: "could not check whether Recurly already has \(event.id) (\(error)); not posting again until it can"),
                                  retryAfter: nil)
            }
        }
        let request = HTTPRequest(
            method: .post,
            url: URLBuilder.url(base: settings.endpoint, path: RecurlyClient.usagePath(subscription: prepared.subscription, addOn: prepared.addOn)),
            headers: reader.headers(json: true), body: prepared.body.encoded())
        switch try await client.sendForDelivery(request) {
        case .failed(let outcome): return outcome
        case .response(let response):
            if (200..<300).contains(response.status) { return .accepted }
            return try RecurlyClient.outcome(for: response, now: clock.now())
        }
    }
}

/// One usage record read back from Recurly.
public struct RecurlyUsageRecord: Sendable, Hashable, Decodable {
    public var id: String
    public var merchantTag: String?
    public var amount: Double?
    public var usageTimestamp: String?
    public var billedAt: String?

    enum CodingKeys: String, CodingKey { case id, merchantTag = "merchant_tag", amount, usageTimestamp = "usage_timestamp", billedAt = "billed_at" }
}

/// Recurly's usage read-back: the add-on's usage list, every page.
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
        var h: HeaderFields = ["Authorization": settings.apiKey.basicAuthorization, "Accept": "application/vnd.recurly.v2021-02-25"]
        if json { h.add(name: "Content-Type", value: "application/json") }
        return h
    }

    static func usagePath(subscription: String, addOn: String) -> String {
        "/subscriptions/\(URLBuilder.pathSegment(subscription))/add_ons/\(URLBuilder.pathSegment(addOn))/usage"
    }

    /// Usage records with `usage_timestamp` in [begin, end] (inclusive), billed or not,
    /// ascending by `usage_timestamp` (the only order Recurly says is safe to page), every page.
    public func usage(subscription: String, addOn: String, begin: Date, end: Date) async throws -> [RecurlyUsageRecord] {
        let query: [(String, String)] = [
            ("billing_status", "all"), ("sort", "usage_timestamp"), ("order", "asc"), ("limit", "200"),
            ("begin_time", RFC3339.format(begin)), ("end_time", RFC3339.format(end)),
        ]
        struct Page: Decodable { var data: [RecurlyUsageRecord]; var has_more: Bool?; var next: String? }
        let first = URLBuilder.url(base: settings.endpoint, path: Self.usagePath(subscription: subscription, addOn: addOn), query: query)
        let settings = self.settings, client = self.client, headers = self.headers(json: false)
        let pages = PaginatorSequence<String, RecurlyUsageRecord>("Recurly's usage list", start: first) { url in
            let response = try await client.send(HTTPRequest(method: .get, url: url ?? first, headers: headers))
            guard response.status == 200 else {
                let error = RecurlyError(response)
                throw UsageBillingError.forFailedCall(status: response.status, message: "Recurly usage list failed (\(response.status)): \(error.describe)",
                                                      credentialField: "api_key", notFoundFix: "check the subscription (uuid-…) and add-on (code-…) ids")
            }
            guard let page = try? JSONDecoder().decode(Page.self, from: response.body) else {
                throw UsageBillingError(.unexpectedResponse, "Recurly's usage list does not decode", fix: "check endpoint")
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
        case (401, _), (403, _), (406, _), (_, "invalid_api_key"), (_, "invalid_permissions"), (_, "unknown_api_version"), (_, "invalid_api_version"):
            throw UsageBillingError(.configuration, "Recurly refused the request (\(response.status): \(error.describe))",
                                    fix: response.status == 406 ? "this client speaks v2021-02-25; check the site's API access" : "check api_key, region and its permissions",
                                    field: "api_key", providerRequestID: response.headers["X-Request-Id"])
        case (429, _), (_, "rate_limited"):
            var after = response.retryAfter(now: now)
            if after == nil, let reset = response.headers["X-RateLimit-Reset"].flatMap(Double.init) {
                after = .seconds(max(1, reset - now.timeIntervalSince1970))
            }
            return .retryable(RetryableReason(.rateLimited, httpStatus: response.status, message: error.describe,
                                              providerRequestID: response.headers["X-Request-Id"]), retryAfter: after)
        case (_, "simultaneous_request"):
            return .retryable(RetryableReason(.conflict, httpStatus: response.status, message: error.describe), retryAfter: .seconds(1))
        case (500..., _):
            return .retryable(RetryableReason(.serverError, httpStatus: response.status, message: error.describe,
                                              providerRequestID: response.headers["X-Request-Id"]), retryAfter: response.retryAfter(now: now))
        default:
            return .rejected(RejectionReason(code: error.type ?? "http_\(response.status)", message: error.describe, field: error.param,
                                             origin: .provider, providerRequestID: response.headers["X-Request-Id"], httpStatus: response.status))
        }
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
        if case .array(let params)? = error?["params"], let first = params.first { param = first["param"]?.stringValue } else { param = nil }
    }

    var describe: String { type.map { "\(message) (\($0))" } ?? message }
}
