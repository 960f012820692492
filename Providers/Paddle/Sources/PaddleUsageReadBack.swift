import Foundation
import UsageBilling

/// The read side of Paddle's usage-based billing: meters (`GET /meters`: which action draws
/// down which usage balance unit, at what rate) and a customer's usage balances
/// (`GET /customers/{id}/usage-balances`: what each balance has used this billing period, and
/// the overage recorded past the allowance).
public struct PaddleUsageClient: Sendable {
    /// The settings in use.
    public let settings: PaddleUsageSettings
    private let client: any HTTPClient

    /// A client.
    public init(settings: PaddleUsageSettings, client: any HTTPClient) {
        self.settings = settings
        self.client = client
    }

    /// A meter: the action it counts, the usage balance unit it draws down, and how much of the
    /// unit one unit of usage draws.
    public struct Meter: Sendable, Hashable {
        public var id: String
        public var action: String
        public var usageBalanceUnitID: String
        public var rate: Decimal
    }

    /// A customer's balance of one usage balance unit: used this period, plus the overage
    /// recorded after the allowance ran out.
    public struct Balance: Sendable, Hashable {
        public var usageBalanceUnitID: String
        public var used: Decimal
        public var overage: Decimal
    }

    /// Every meter, all pages.
    public func meters() async throws -> [Meter] {
        try await list(path: "/meters", what: "meters") { item in
            guard let id = item["id"]?.stringValue, let action = item["action"]?.stringValue,
                let unit = item["usage_balance_unit_id"]?.stringValue
            else { return nil }
            return Meter(id: id, action: action, usageBalanceUnitID: unit, rate: Self.decimal(item["rate"]) ?? 1)
        }
    }

    /// The customer's usage balances, all pages.
    public func balances(customer: String) async throws -> [Balance] {
        try await list(
            path: "/customers/\(URLBuilder.pathSegment(customer))/usage-balances", what: "usage balances of \(customer)"
        ) { item in
            guard let unit = item["usage_balance_unit_id"]?.stringValue else { return nil }
            let balance = item["balance"]
            return Balance(
                usageBalanceUnitID: unit, used: Self.decimal(balance?["used"]?["total"] ?? balance?["used"]) ?? 0,
                overage: Self.decimal(balance?["overage"]?["total"] ?? balance?["overage"]) ?? 0)
        }
    }

    /// A quantity Paddle writes as a number or a decimal string.
    static func decimal(_ value: JSONValue?) -> Decimal? {
        if let text = value?.stringValue { return Decimal(string: text, locale: Locale(identifier: "en_US_POSIX")) }
        return value?.numberValue.map { Decimal(reported: $0) }
    }

    private func list<T: Sendable>(path: String, what: String, _ item: @escaping @Sendable (JSONValue) -> T?)
        async throws -> [T]
    {
        let first = URLBuilder.url(base: settings.endpoint, path: path, query: [("per_page", "200")])
        let headers: HeaderFields = [
            "Authorization": "Bearer \(settings.apiKey.exposedValue)", "Paddle-Version": "1",
            "Accept": "application/json",
        ]
        let client = self.client
        let pages = PaginatorSequence<String, T>("Paddle's \(what)", start: first) { url in
            let response = try await client.send(HTTPRequest(method: .get, url: url ?? first, headers: headers))
            guard response.status == 200, let body = JSONValue.parse(response.body) else {
                let error = PaddleError(response)
                throw UsageBillingError.forFailedCall(
                    response, message: "Paddle \(what) lookup failed (\(response.status)): \(error.describe)",
                    credentialField: "api_key", notFoundFix: "check the customer id (ctm_…)", field: error.field,
                    providerRequestID: error.requestID)
            }
            let items = (body["data"]?.arrayValue ?? []).compactMap(item)
            let pagination = body["meta"]?["pagination"]
            let next = pagination?["has_more"]?.boolValue == true ? pagination?["next"]?.stringValue : nil
            return (items, next.flatMap { $0.isEmpty ? nil : $0 })
        }
        return try await pages.all()
    }
}

/// Reconciliation for `paddle_usage`: per action, what the customer's usage balance for the
/// meter's unit used this billing period (overage included), divided by the meter's rate. Paddle
/// keeps one running balance per period, not windows, so the read is one total for the whole
/// range; reconcile a range inside one billing period.
public struct PaddleUsageReadBack: UsageReadBack {
    let settings: PaddleUsageSettings
    let client: PaddleUsageClient

    /// A read-back over `settings`.
    public init(settings: PaddleUsageSettings, client: any HTTPClient) {
        self.settings = settings
        self.client = PaddleUsageClient(settings: settings, client: client)
    }

    public func names(for event: UsageEvent) -> ProviderNames { settings.mapping.providerNames(for: event) }

    /// Paddle allows 240 requests a minute per IP.
    public var requestsPerSecond: Double { 3 }

    public func windowing(customer: String) async throws -> ReadBackWindowing { .wholeRange }

    public func usage(
        customer: String, meters actions: [String], from: Date, to: Date, granularity: ReadBackGranularity
    ) async throws -> [ReportedUsage] {
        let meters = try await client.meters()
        let balances = Dictionary(try await client.balances(customer: customer).map { ($0.usageBalanceUnitID, $0) }) {
            first, _ in first
        }
        var out: [ReportedUsage] = []
        for action in Set(meters.map(\.action)).sorted() where actions.isEmpty || actions.contains(action) {
            for meter in meters where meter.action == action {
                guard let balance = balances[meter.usageBalanceUnitID] else { continue }
                let sharing = meters.filter { $0.usageBalanceUnitID == meter.usageBalanceUnitID && $0.action != action }
                    .map(\.action)
                guard sharing.isEmpty else {
                    throw UsageBillingError(
                        .unexpectedResponse,
                        "Paddle's usage balance unit \(meter.usageBalanceUnitID) is drawn down by '\(action)' and \(sharing.map { "'\($0)'" }.joined(separator: ", ")): its balance cannot be split per action",
                        fix: "reconcile these actions together, or give each action its own usage balance unit")
                }
                guard meter.rate > 0 else { continue }
                out.append(
                    ReportedUsage(
                        customer: customer, meter: action, start: from, end: to,
                        value: (balance.used + balance.overage) / meter.rate))
            }
        }
        return out
    }
}
