import Foundation
import UsageBilling

/// One record of `GET /api/v2/usages`.
public struct ChargebeeUsageRecord: Sendable, Hashable, Decodable {
    public var id: String?
    public var subscriptionID: String
    public var itemPriceID: String
    /// A decimal string.
    public var quantity: String
    /// Unix seconds.
    public var usageDate: Int64
    public var invoiceID: String?
    public var note: String?

    enum CodingKeys: String, CodingKey {
        case id, subscriptionID = "subscription_id", itemPriceID = "item_price_id", quantity, usageDate = "usage_date"
        case invoiceID = "invoice_id", note
    }

    /// The quantity as a decimal.
    public var decimalQuantity: Decimal? { Decimal(string: quantity, locale: Locale(identifier: "en_US_POSIX")) }
}

/// Chargebee's usage read-back (`GET /api/v2/usages` with filters, following `next_offset`) and
/// its one correction: deleting a usage record.
public struct ChargebeeClient: Sendable {
    /// The settings in use.
    public let settings: ChargebeeSettings
    private let client: any HTTPClient

    /// A client; throws on unusable settings.
    public init(settings: ChargebeeSettings, client: any HTTPClient) throws {
        var checked = settings
        if checked.mode == .usages && checked.itemPriceID == nil && checked.itemPrices.isEmpty {
            checked.mode = .usageEvents
        }
        try checked.validate()
        self.settings = settings
        self.client = client
    }

    /// Usages with `usage_date` in [from, to] (inclusive, Chargebee's `between`), optionally of one
    /// subscription and item price, oldest first, every page.
    public func usages(
        from: Date, to: Date, subscriptionID: String? = nil, itemPriceID: String? = nil, pageSize: Int = 100
    ) async throws -> [ChargebeeUsageRecord] {
        var query: [(String, String)] = [
            ("limit", String(min(100, max(1, pageSize)))),
            ("usage_date[between]", "[\(Int64(from.timeIntervalSince1970)),\(Int64(to.timeIntervalSince1970))]"),
            ("sort_by[asc]", "usage_date"),
        ]
        if let subscriptionID { query.append(("subscription_id[is]", subscriptionID)) }
        if let itemPriceID { query.append(("item_price_id[is]", itemPriceID)) }
        struct Entry: Decodable { var usage: ChargebeeUsageRecord }
        struct Page: Decodable { var list: [Entry]; var next_offset: String? }
        let filters = query
        let pages = PaginatorSequence<String, ChargebeeUsageRecord>("Chargebee's usage list") { offset in
            let request = HTTPRequest(
                method: .get,
                url: URLBuilder.url(
                    base: settings.endpoint, path: "/api/v2/usages",
                    query: filters + (offset.map { [("offset", $0)] } ?? [])),
                headers: ["Authorization": settings.apiKey.basicAuthorization, "Accept": "application/json"])
            let page: Page = try Self.answer(
                try await client.send(request), to: "usage list", notFoundFix: "check site and the subscription id")
            return (page.list.map(\.usage), page.next_offset.flatMap { $0.isEmpty ? nil : $0 })
        }
        return try await pages.all()
    }

    /// Deletes one usage record (`POST /api/v2/subscriptions/{id}/delete_usage`, form `id`):
    /// Chargebee's way to correct a usage is to delete it and add it again. Sent with
    /// `chargebee-idempotency-key`, so a retry with the same key is answered as the first was.
    /// - Returns: the deleted record.
    /// - Throws: `.notFound` when the subscription has no usage with that id.
    @discardableResult
    public func deleteUsage(subscriptionID: String, usageID: String, idempotencyKey: String) async throws
        -> ChargebeeUsageRecord
    {
        let request = HTTPRequest(
            method: .post,
            url: URLBuilder.url(
                base: settings.endpoint,
                path: "/api/v2/subscriptions/\(URLBuilder.pathSegment(subscriptionID))/delete_usage"),
            headers: [
                "Authorization": settings.apiKey.basicAuthorization, "Accept": "application/json",
                "Content-Type": "application/x-www-form-urlencoded", "chargebee-idempotency-key": idempotencyKey,
            ],
            body: Data(FormEncoding.encode([("id", usageID)]).utf8))
        struct Deleted: Decodable { var usage: ChargebeeUsageRecord }
        let deleted: Deleted = try Self.answer(
            try await client.send(request), to: "delete_usage of \(usageID)",
            notFoundFix: "check the subscription and the usage id")
        return deleted.usage
    }

    /// A 200 answer decoded, or the error a failed call is (Chargebee's message and parameter).
    private static func answer<T: Decodable>(_ response: HTTPResponse, to call: String, notFoundFix: String) throws
        -> T
    {
        guard response.status == 200 else {
            let error = ChargebeeError(response)
            throw UsageBillingError.forFailedCall(
                response, message: "Chargebee's \(call) failed (\(response.status)): \(error.describe)",
                credentialField: "api_key", notFoundFix: notFoundFix, field: error.param)
        }
        guard let value = try? JSONDecoder().decode(T.self, from: response.body) else {
            throw UsageBillingError(
                .unexpectedResponse, "Chargebee's answer to its \(call) does not decode", fix: "check endpoint")
        }
        return value
    }
}
