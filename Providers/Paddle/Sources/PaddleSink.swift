import Foundation
import UsageBilling

/// Bills aggregated usage through Paddle Billing, which has no usage ingestion for arrears
/// billing and no idempotency:
///
/// - `subscription_charge` mode: `POST /subscriptions/{id}/charge` with `effective_from`
///   (default `next_billing_period`) and one item `{price_id, quantity}`.
/// - `transaction` mode: `POST /transactions` for a customer, with the charge key in
///   `custom_data.ub_charge_key`.
///
/// Quantities must be whole and ≥ 1 and inside the price's range: usage is divided by
/// `units_per_quantity`, rounded by `rounding` (or rejected), zero periods are skipped (marked
/// delivered with no request), and quantities above `max_quantity` are rejected with the fix.
///
/// Paddle does not deduplicate, so the charge key (the aggregate's deterministic id, also sent as
/// `X-Transaction-ID`) is kept in the spool, and an event that may already have reached Paddle
/// is looked up before it is posted again: the subscription's next transaction
/// (`next_billing_period`), its `subscription_charge` transactions (`immediately`), or the
/// customer's transactions by `custom_data` (`transaction` mode). Found means `.duplicate`.
public struct PaddleSink: UsageSink {
    public let name: String
    /// The settings in use (the key prints masked).
    public let settings: PaddleSettings
    private let client: any HTTPClient
    private let clock: any UsageClock
    /// The read-back client the verification uses.
    public let reader: PaddleClient

    /// A sink; throws `.invalidInput`/`.configuration` naming a bad setting.
    public init(settings: PaddleSettings, client: any HTTPClient, clock: any UsageClock = SystemClock(), name: String = "paddle") throws {
        try settings.validate()
        self.name = name
        self.settings = settings
        self.client = client
        self.clock = clock
        self.reader = PaddleClient(settings: settings, client: client)
    }

    /// One charge per request, aggregated, checked before a retry, paced at `requests_per_minute`.
    public var capabilities: SinkCapabilities {
        SinkCapabilities(maxBatchSize: 1, idempotency: .clientCheckBeforeRetry,
                         rateLimit: RateLimit(requestsPerSecond: settings.requestsPerMinute / 60, burst: 5), aggregation: settings.aggregate)
    }

    /// Delivers assuming nothing was tried before.
    public func deliver(_ batch: [UsageEvent]) async throws -> [DeliveryOutcome] {
        try await deliver(batch, retrying: [])
    }

    /// Delivers; events in `retrying` are looked up first and never charged twice.
    public func deliver(_ batch: [UsageEvent], retrying: Set<String>) async throws -> [DeliveryOutcome] {
        var outcomes: [DeliveryOutcome] = []
        for event in batch { outcomes.append(try await deliverOne(event, verify: retrying.contains(event.id))) }
        return outcomes
    }

    /// A whole Paddle quantity for `usage`: nil when it rounds to zero (nothing to bill), or a
    /// local rejection naming the rule.
    public func quantity(for usage: Decimal) -> Result<Int?, RejectionReason> {
        if usage < 0 {
            return .failure(.local("quantity_negative", field: "quantity",
                                   "Paddle charges quantities ≥ 1; \(DecimalFormat.plain(usage)) is negative (use aggregate.report: increments with a sum or count formula)"))
        }
        var scaled = usage / settings.unitsPerQuantity
        var whole = Decimal()
        let mode: NSDecimalNumber.RoundingMode
        switch settings.rounding {
        case .reject:
            guard DecimalFormat.isWhole(scaled) else {
                let per = settings.unitsPerQuantity == 1 ? "" : " (\(DecimalFormat.plain(usage)) ÷ units_per_quantity \(DecimalFormat.plain(settings.unitsPerQuantity)))"
                return .failure(.local("quantity_not_whole", field: "quantity",
                                       "Paddle charges whole quantities; \(DecimalFormat.plain(scaled))\(per) is fractional. Set rounding: up, down or nearest, or change units_per_quantity"))
            }
            mode = .plain
        case .up: mode = .up
        case .down: mode = .down
        case .nearest: mode = .plain
        }
        NSDecimalRound(&whole, &scaled, 0, mode)
        if whole == 0 { return .success(nil) }
        guard whole <= Decimal(settings.maxQuantity) else {
            return .failure(.local("quantity_above_price_range", field: "quantity",
                                   "quantity \(DecimalFormat.plain(whole)) is above the price's maximum \(settings.maxQuantity) (Paddle answers transaction_item_quantity_out_of_range). Raise the price's quantity.maximum in Paddle (up to 999999999) and max_quantity here, or bill per more units with units_per_quantity"))
        }
        return .success(NSDecimalNumber(decimal: whole).intValue)
    }

    /// The request body for one charge, or nil (zero: nothing to bill), or a local rejection.
    func prepare(_ event: UsageEvent) -> Result<(target: String, price: String, quantity: Int, body: JSONValue)?, RejectionReason> {
        let target = settings.mapping.providerCustomer(for: event)
        if target.isEmpty { return .failure(.local("customer_missing", field: "customer", "the event has no customer; map it to a Paddle subscription")) }
        guard let price = settings.price(for: event.name) else {
            return .failure(.local("price_missing", field: "price_id", "no Paddle price for '\(event.name)'; add it to prices or set price_id"))
        }
        let quantity: Int
        switch self.quantity(for: event.quantity) {
        case .failure(let reason): return .failure(reason)
        case .success(nil): return .success(nil)
        case .success(let q?): quantity = q
        }
        let item = JSONValue.object(["price_id": .string(price), "quantity": .number(Double(quantity))])
        switch settings.mode {
        case .subscriptionCharge:
            var body: [String: JSONValue] = ["effective_from": .string(settings.effectiveFrom), "items": .array([item])]
            if let failure = settings.onPaymentFailure { body["on_payment_failure"] = .string(failure) }
            return .success((target, price, quantity, .object(body)))
        case .transaction:
            let info = AggregateInfo(event)
            var custom: [String: JSONValue] = ["ub_charge_key": .string(event.id), "ub_meter": .string(event.name),
                                               "ub_window_start": .string(RFC3339.format(info.windowStart))]
            if let end = info.windowEnd { custom["ub_window_end"] = .string(RFC3339.format(end)) }
            var body: [String: JSONValue] = ["items": .array([item]), "customer_id": .string(target),
                                             "collection_mode": .string(settings.collectionMode), "custom_data": .object(custom)]
            if let address = settings.addressID { body["address_id"] = .string(address) }
            if settings.collectionMode == "manual" {
                body["billing_details"] = .object(["payment_terms": .object(["interval": .string("day"), "frequency": .number(Double(settings.paymentTermsDays))])])
            }
            return .success((target, price, quantity, .object(body)))
        }
    }

    private func deliverOne(_ event: UsageEvent, verify: Bool) async throws -> DeliveryOutcome {
        let prepared: (target: String, price: String, quantity: Int, body: JSONValue)
        switch prepare(event) {
        case .failure(let reason): return .rejected(reason)
        case .success(nil): return .accepted  // zero usage: nothing to charge
        case .success(let p?): prepared = p
        }
        if verify {
            do {
                if try await reader.findCharge(key: event.id, target: prepared.target, price: prepared.price, quantity: prepared.quantity,
                                               since: AggregateInfo(event).windowStart) {
                    return .duplicate
                }
            } catch let error as UsageBillingError where error.code == .configuration {
                throw error
            } catch {
                return .retryable(RetryableReason(.transport, message: "could not check whether Paddle already has charge \(event.id) (\(error)); not charging again until it can"),
                                  retryAfter: nil)
            }
        }
        let path = settings.mode == .transaction ? "/transactions" : "/subscriptions/\(URLBuilder.pathSegment(prepared.target))/charge"
        var headers = reader.headers
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "X-Transaction-ID", value: event.id)
        let request = HTTPRequest(method: .post, url: URLBuilder.url(base: settings.endpoint, path: path), headers: headers, body: prepared.body.encoded())
        switch try await client.sendForDelivery(request) {
        case .failed(let outcome): return outcome
        case .response(let response):
            if (200..<300).contains(response.status) { return .accepted }
            return try PaddleClient.outcome(for: response, now: clock.now())
        }
    }
}

/// Paddle's read-back: the subscription's next transaction and transaction lists.
public struct PaddleClient: Sendable {
    /// The settings in use.
    public let settings: PaddleSettings
    private let client: any HTTPClient

    /// A client.
    public init(settings: PaddleSettings, client: any HTTPClient) {
        self.settings = settings
        self.client = client
    }

    var headers: HeaderFields { ["Authorization": "Bearer \(settings.apiKey.exposedValue)", "Paddle-Version": "1"] }

    /// One line of a (next or past) transaction: price, quantity and the charge key when the
    /// transaction carries one in `custom_data`.
    public struct ChargeLine: Sendable, Hashable {
        public var priceID: String?
        public var quantity: Int
        public var chargeKey: String?
        public var transactionID: String?
    }

    /// The one-time lines of the subscription's next (renewal) transaction.
    public func nextTransactionLines(subscription: String) async throws -> [ChargeLine] {
        let url = URLBuilder.url(base: settings.endpoint, path: "/subscriptions/\(URLBuilder.pathSegment(subscription))", query: [("include", "next_transaction")])
        let body = try await get(url, what: "subscription \(subscription)")
        guard case .array(let lines)? = body["data"]?["next_transaction"]?["details"]?["line_items"] else { return [] }
        return lines.map { line in
            ChargeLine(priceID: line["price_id"]?.stringValue, quantity: line["quantity"]?.numberValue.map { Int($0) } ?? 0, chargeKey: nil, transactionID: nil)
        }
    }

    /// Transactions matching `filters` (e.g. `subscription_id`, `origin`, `created_at[GTE]`), every
    /// page (`meta.pagination.next`), flattened to their lines.
    public func transactionLines(filters: [(String, String)]) async throws -> [ChargeLine] {
        let first = URLBuilder.url(base: settings.endpoint, path: "/transactions", query: filters + [("per_page", "30")])
        let pages = PaginatorSequence<String, ChargeLine>("Paddle's transaction list", start: first) { url in
            let body = try await get(url ?? first, what: "transactions")
            var lines: [ChargeLine] = []
            if case .array(let transactions)? = body["data"] {
                for transaction in transactions {
                    let key = transaction["custom_data"]?["ub_charge_key"]?.stringValue
                    guard case .array(let items)? = transaction["items"] else { continue }
                    for item in items {
                        lines.append(ChargeLine(priceID: item["price"]?["id"]?.stringValue ?? item["price_id"]?.stringValue,
                                                quantity: item["quantity"]?.numberValue.map { Int($0) } ?? 0, chargeKey: key, transactionID: transaction["id"]?.stringValue))
                    }
                }
            }
            let pagination = body["meta"]?["pagination"]
            let next = pagination?["has_more"]?.boolValue == true ? pagination?["next"]?.stringValue : nil
            return (lines, next.flatMap { $0.isEmpty ? nil : $0 })
        }
        return try await pages.all()
    }

    /// Whether the charge `key` already reached Paddle. Transaction mode matches `custom_data`
    /// exactly; subscription charges carry no custom data, so they match a one-time line of the
    /// same price and quantity (next transaction, or `subscription_charge` transactions since
    /// `since` for `immediately`).
    public func findCharge(key: String, target: String, price: String, quantity: Int, since: Date) async throws -> Bool {
        switch (settings.mode, settings.effectiveFrom) {
        case (.transaction, _):
            return try await transactionLines(filters: [("customer_id", target), ("origin", "api"), ("created_at[GTE]", RFC3339.format(since))])
                .contains { $0.chargeKey == key }
        case (_, "immediately"):
            return try await transactionLines(filters: [("subscription_id", target), ("origin", "subscription_charge"), ("created_at[GTE]", RFC3339.format(since))])
                .contains { $0.priceID == price && $0.quantity == quantity }
        default:
            return try await nextTransactionLines(subscription: target).contains { $0.priceID == price && $0.quantity == quantity }
        }
    }

    private func get(_ url: String, what: String) async throws -> JSONValue {
        let response = try await client.send(HTTPRequest(method: .get, url: url, headers: headers))
        guard response.status == 200 else {
            let error = PaddleError(response)
            throw UsageBillingError.forFailedCall(status: response.status, message: "Paddle \(what) lookup failed (\(response.status)): \(error.describe)",
                                                  credentialField: "api_key", notFoundFix: "check the subscription or customer id", field: error.field,
                                                  providerRequestID: error.requestID)
        }
        guard let body = JSONValue.parse(response.body) else {
            throw UsageBillingError(.unexpectedResponse, "Paddle's \(what) answer is not JSON", fix: "check endpoint")
        }
        return body
    }

    /// The outcome of an error answer to a charge; throws for credentials and permissions.
    static func outcome(for response: HTTPResponse, now: Date) throws -> DeliveryOutcome {
        let error = PaddleError(response)
        switch (response.status, error.code) {
        case (401, _), (403, _):
            throw UsageBillingError(.configuration, "Paddle refused the API key (\(response.status): \(error.describe))",
                                    fix: response.status == 401 ? "check api_key and environment (sandbox keys only work on sandbox)" : "give the key subscription.write (and transaction.write)",
                                    field: "api_key", providerRequestID: error.requestID)
        case (429, "subscription_immediate_charge_hour_limit_exceeded"), (429, "subscription_immediate_charge_24_hour_limit_exceeded"):
            let wait: Duration = error.code?.contains("24_hour") == true ? .seconds(86_400) : .seconds(3600)
            return .retryable(RetryableReason(.rateLimited, httpStatus: 429,
                                              message: "\(error.describe). Paddle limits immediate charges per subscription; waiting, or set effective_from: next_billing_period",
                                              providerRequestID: error.requestID), retryAfter: response.retryAfter(now: now) ?? wait)
        case (429, _):
            return .retryable(RetryableReason(.rateLimited, httpStatus: 429, message: error.describe, providerRequestID: error.requestID),
                              retryAfter: response.retryAfter(now: now))
        case (500..., _):
            return .retryable(RetryableReason(.serverError, httpStatus: response.status, message: error.describe, providerRequestID: error.requestID),
                              retryAfter: response.retryAfter(now: now))
        case (_, "transaction_item_quantity_out_of_range"):
            return .rejected(RejectionReason(code: "transaction_item_quantity_out_of_range",
                                             message: "\(error.describe). Raise the price's quantity range in Paddle and max_quantity here, or use units_per_quantity",
                                             field: error.field, origin: .provider, providerRequestID: error.requestID, httpStatus: response.status))
        default:
            return .rejected(RejectionReason(code: error.code ?? "http_\(response.status)", message: error.describe, field: error.field,
                                             origin: .provider, providerRequestID: error.requestID, httpStatus: response.status))
        }
    }
}

/// Paddle's error body: `{"error": {type, code, detail, documentation_url, errors[{field, message}]}, "meta": {request_id}}`.
struct PaddleError {
    var code: String?
    var detail: String
    var field: String?
    var requestID: String?

    init(_ response: HTTPResponse) {
        let body = JSONValue.parse(response.body)
        let error = body?["error"]
        code = error?["code"]?.stringValue
        detail = error?["detail"]?.stringValue ?? "Paddle answered HTTP \(response.status)"
        if case .array(let errors)? = error?["errors"], let first = errors.first { field = first["field"]?.stringValue } else { field = nil }
        requestID = body?["meta"]?["request_id"]?.stringValue ?? response.headers["Request-Id"]
    }

    var describe: String { code.map { "\(detail) (\($0))" } ?? detail }
}
