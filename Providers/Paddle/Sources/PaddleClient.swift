import Foundation
import UsageBilling

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
        let url = URLBuilder.url(
            base: settings.endpoint, path: "/subscriptions/\(URLBuilder.pathSegment(subscription))",
            query: [("include", "next_transaction")])
        let body = try await get(url, what: "subscription \(subscription)")
        guard case .array(let lines)? = body["data"]?["next_transaction"]?["details"]?["line_items"] else { return [] }
        return lines.map { line in
            ChargeLine(
                priceID: line["price_id"]?.stringValue, quantity: line["quantity"]?.numberValue.map { Int($0) } ?? 0,
                chargeKey: nil, transactionID: nil)
        }
    }

    /// Transactions matching `filters` (e.g. `subscription_id`, `origin`, `created_at[GTE]`), every
    /// page (`meta.pagination.next`), flattened to their lines.
    public func transactionLines(filters: [(String, String)]) async throws -> [ChargeLine] {
        let first = URLBuilder.url(
            base: settings.endpoint, path: "/transactions", query: filters + [("per_page", "30")])
        let pages = PaginatorSequence<String, ChargeLine>("Paddle's transaction list", start: first) { url in
            let body = try await get(url ?? first, what: "transactions")
            var lines: [ChargeLine] = []
            if case .array(let transactions)? = body["data"] {
                for transaction in transactions {
                    let key = transaction["custom_data"]?["ub_charge_key"]?.stringValue
                    guard case .array(let items)? = transaction["items"] else { continue }
                    for item in items {
                        lines.append(
                            ChargeLine(
                                priceID: item["price"]?["id"]?.stringValue ?? item["price_id"]?.stringValue,
                                quantity: item["quantity"]?.numberValue.map { Int($0) } ?? 0, chargeKey: key,
                                transactionID: transaction["id"]?.stringValue))
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
    public func findCharge(key: String, target: String, price: String, quantity: Int, since: Date) async throws -> Bool
    {
        switch (settings.mode, settings.effectiveFrom) {
        case (.transaction, _):
            return try await transactionLines(filters: [
                ("customer_id", target), ("origin", "api"), ("created_at[GTE]", RFC3339.format(since)),
            ])
            .contains { $0.chargeKey == key }
        case (_, "immediately"):
            return try await transactionLines(filters: [
                ("subscription_id", target), ("origin", "subscription_charge"),
                ("created_at[GTE]", RFC3339.format(since)),
            ])
            .contains { $0.priceID == price && $0.quantity == quantity }
        default:
            return try await nextTransactionLines(subscription: target).contains {
                $0.priceID == price && $0.quantity == quantity
            }
        }
    }

    private func get(_ url: String, what: String) async throws -> JSONValue {
        let response = try await client.send(HTTPRequest(method: .get, url: url, headers: headers))
        guard response.status == 200 else {
            let error = PaddleError(response)
            throw UsageBillingError.forFailedCall(
                response, message: "Paddle \(what) lookup failed (\(response.status)): \(error.describe)",
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
            throw UsageBillingError(
                .configuration, "Paddle refused the API key (\(response.status): \(error.describe))",
                fix: response.status == 401
                    ? "check api_key and environment (sandbox keys only work on sandbox)"
                    : "give the key subscription.write (and transaction.write)",
                field: "api_key", providerRequestID: error.requestID)
        case (429, "subscription_immediate_charge_hour_limit_exceeded"),
            (429, "subscription_immediate_charge_24_hour_limit_exceeded"):
            let wait: Duration = error.code?.contains("24_hour") == true ? .seconds(86_400) : .seconds(3600)
            return .retryable(
                RetryableReason(
                    .rateLimited, httpStatus: 429,
                    message:
                        "\(error.describe). Paddle limits immediate charges per subscription; waiting, or set effective_from: next_billing_period",
                    providerRequestID: error.requestID), retryAfter: response.retryAfter(now: now) ?? wait)
        case (429, _):
            return .retryable(
                RetryableReason(
                    .rateLimited, httpStatus: 429, message: error.describe, providerRequestID: error.requestID),
                retryAfter: response.retryAfter(now: now))
        case (500..., _):
            return .retryable(
                RetryableReason(
                    .serverError, httpStatus: response.status, message: error.describe,
                    providerRequestID: error.requestID),
                retryAfter: response.retryAfter(now: now))
        case (_, "transaction_item_quantity_out_of_range"):
            return .rejected(
                RejectionReason(
                    code: "transaction_item_quantity_out_of_range",
                    message:
                        "\(error.describe). Raise the price's quantity range in Paddle and max_quantity here, or use units_per_quantity",
                    field: error.field, origin: .provider, providerRequestID: error.requestID,
                    httpStatus: response.status))
        default:
            return .rejected(
                RejectionReason(
                    code: error.code ?? "http_\(response.status)", message: error.describe, field: error.field,
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
        if case .array(let errors)? = error?["errors"], let first = errors.first {
            field = first["field"]?.stringValue
        } else {
            field = nil
        }
        requestID = body?["meta"]?["request_id"]?.stringValue ?? response.headers["Request-Id"]
    }

    var describe: String { code.map { "\(detail) (\($0))" } ?? detail }
}
