import Foundation
import UsageBilling

/// Delivers usage to Chargebee, in one of two modes chosen per route (see
/// ``ChargebeeSettings/Mode``).
///
/// **Usages** (`POST /api/v2/subscriptions/{id}/usages`, form-encoded): each delivered event is
/// one aggregated record from the pipeline's ``WindowAggregator``: `id` = the aggregate's
/// deterministic id (also sent as `chargebee-idempotency-key`), `item_price_id`, `quantity` as a
/// decimal string, `usage_date` = window start (+ revision seconds, so every record of a window
/// has its own date: Chargebee keeps one record per subscription, item price and date).
/// A repeated `id` (`duplicate_entry` on `id`) or a replayed idempotent answer is `.duplicate`.
///
/// **Usage events** (`POST https://{site}.ingest.chargebee.com/api/v2/batch/usage_events`,
/// JSON): raw events, ≤ 500 per request, `deduplication_id` = the event id (≤ 36 characters,
/// longer ids are hashed), `usage_timestamp` in ms within the last 12 hours; `failed_events`
/// is mapped per event.
///
/// Both: HTTP basic auth; errors mapped by `api_error_code`; 429 (and `lock_timeout`) retried
/// after `Retry-After`; 5xx retried; 401/403 throw `.configuration`.
public struct ChargebeeSink: UsageSink {
    public let name: String
    /// The settings in use (the key prints masked).
    public let settings: ChargebeeSettings
    let client: any HTTPClient
    private let clock: any UsageClock

    /// Usage events must be at most 12 hours old (and not more than 5 minutes ahead).
    public static let usageEventsWindow = AcceptedTimeWindow(maxAge: .seconds(12 * 3600), maxFutureSkew: .seconds(300))

    /// A sink; throws `.invalidInput`/`.configuration` naming a bad setting.
    public init(
        settings: ChargebeeSettings, client: any HTTPClient, clock: any UsageClock = SystemClock(),
        name: String = "chargebee"
    ) throws {
        try settings.validate()
        self.name = name
        self.settings = settings
        self.client = client
        self.clock = clock
    }

    /// Usages: one record per request, aggregated by ``ChargebeeSettings/aggregate``; usage
    /// events: up to 500 per request within 12 h. Both paced by `requests_per_minute`.
    public var capabilities: SinkCapabilities {
        let rate = RateLimit(requestsPerSecond: settings.requestsPerMinute / 60, burst: 5)
        switch settings.mode {
        case .usages:
            return SinkCapabilities(
                maxBatchSize: 1, idempotency: .providerDeduplicates(window: nil), rateLimit: rate,
                aggregation: settings.aggregate)
        case .usageEvents:
            return SinkCapabilities(
                maxBatchSize: settings.maxBatchSize, acceptedWindow: Self.usageEventsWindow,
                idempotency: .providerDeduplicates(window: nil), rateLimit: rate)
        }
    }

    /// One outcome per event, in order.
    public func deliver(_ batch: [UsageEvent]) async throws -> [DeliveryOutcome] {
        switch settings.mode {
        case .usages:
            var outcomes: [DeliveryOutcome] = []
            for event in batch { outcomes.append(try await deliverUsage(event)) }
            return outcomes
        case .usageEvents:
            return try await deliverUsageEvents(batch)
        }
    }

    private var headers: HeaderFields {
        ["Authorization": settings.apiKey.basicAuthorization, "Accept": "application/json"]
    }

    // MARK: Usages

    /// The form fields for one aggregated record, or a local rejection.
    func usageFields(_ event: UsageEvent) -> Result<(subscription: String, fields: [(String, String)]), RejectionReason>
    {
        let subscription = settings.mapping.providerCustomer(for: event)
        if let reason = LocalValidation.checkLength(subscription, max: 50, field: "subscription_id") {
            return .failure(reason)
        }
        guard let itemPrice = settings.itemPrice(for: event.name) else {
            return .failure(
                .local(
                    "item_price_missing", field: "item_price_id",
                    "no item price for '\(event.name)'; add it to item_prices or set item_price_id"))
        }
        if let reason = LocalValidation.checkLength(event.id, max: 100, field: "id") { return .failure(reason) }
        if event.quantity < 0 {
            return .failure(
                .local(
                    "quantity_negative", field: "quantity",
                    "Chargebee usages take a quantity ≥ 0, got \(DecimalFormat.plain(event.quantity)); use aggregate.report: totals with a 'most recent usage' item price, or correct the record in Chargebee"
                ))
        }
        let quantity = DecimalFormat.plain(event.quantity)
        if quantity.count > 40 {
            return .failure(
                .local(
                    "quantity_too_long", field: "quantity",
                    "the quantity \(quantity) is longer than Chargebee's 40 characters"))
        }
        let info = AggregateInfo(event)
        let date = Int64(info.windowStart.timeIntervalSince1970) + Int64(info.revision)
        var fields: [(String, String)] = [
            ("id", event.id), ("item_price_id", itemPrice), ("quantity", quantity), ("usage_date", String(date)),
        ]
        if let option = settings.dedupeOption { fields.append(("dedupe_option", option)) }
        var note = "usage-billing: \(event.name) from \(RFC3339.format(info.windowStart))"
        if let end = info.windowEnd { note += " to \(RFC3339.format(end))" }
        if let count = info.events { note += ", \(count) events" }
        if info.revision > 0 { note += ", revision \(info.revision)" }
        fields.append(("note", String(note.prefix(500))))
        return .success((subscription, fields))
    }

    func deliverUsage(_ event: UsageEvent) async throws -> DeliveryOutcome {
        let info = AggregateInfo(event)
        if event.quantity < 0, info.revision > 0, let total = info.total, total >= 0 {
            return try await replaceWindow(event, info: info, total: total)
        }
        let prepared: (subscription: String, fields: [(String, String)])
        switch usageFields(event) {
        case .failure(let reason): return .rejected(reason)
        case .success(let p): prepared = p
        }
        var headers = self.headers
        headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        headers.add(name: "chargebee-idempotency-key", value: event.id)
        let request = HTTPRequest(
            method: .post,
            url: URLBuilder.url(
                base: settings.endpoint,
                path: "/api/v2/subscriptions/\(URLBuilder.pathSegment(prepared.subscription))/usages"),
            headers: headers, body: Data(FormEncoding.encode(prepared.fields).utf8))
        switch try await client.sendForDelivery(request) {
        case .failed(let outcome): return outcome
        case .response(let response):
            if (200..<300).contains(response.status) {
                return response.headers["chargebee-idempotency-replayed"]?.lowercased() == "true"
                    ? .duplicate : .accepted
            }
            return try outcome(for: response)
        }
    }

    /// The outcome of an error answer (any mode); throws for credentials and permissions.
    func outcome(for response: HTTPResponse) throws -> DeliveryOutcome {
        let error = ChargebeeError(response)
        switch (response.status, error.code) {
        case (401, _), (403, "api_authorization_failed"):
            throw UsageBillingError(
                .configuration, "Chargebee refused the API key (\(response.status): \(error.message))",
                fix: response.status == 401 ? "check api_key and site" : "use a key with write access to usage",
                field: "api_key")
        case (400, "duplicate_entry") where error.param == nil || error.param == "id":
            return .duplicate
        case (429, _), (_, "lock_timeout"):
            return .retryable(
                RetryableReason(.rateLimited, httpStatus: response.status, message: error.describe),
                retryAfter: response.retryAfter(now: clock.now()))
        case (500..., _):
            return .retryable(
                RetryableReason(.serverError, httpStatus: response.status, message: error.describe),
                retryAfter: response.retryAfter(now: clock.now()))
        case (400, "resource_limit_exceeded"), (400, "resource_limit_exhausted"):
            return .rejected(
                RejectionReason(
                    code: error.code ?? "http_400",
                    message:
                        "\(error.describe). Chargebee keeps at most 5,000 usages per subscription by default: use a longer aggregate.window or ask Chargebee support to raise it",
                    field: error.param, origin: .provider, httpStatus: 400))
        default:
            return .rejected(
                RejectionReason(
                    code: error.code ?? "http_\(response.status)", message: error.describe, field: error.param,
                    origin: .provider, httpStatus: response.status))
        }
    }

    // MARK: Usage events

    /// The JSON for one raw event, or a local rejection.
    func usageEvent(_ event: UsageEvent, now: Date) -> Result<JSONValue, RejectionReason> {
        if let reason = LocalValidation.checkTimestamp(
            event, window: Self.usageEventsWindow, now: now, provider: "Chargebee usage events")
        {
            return .failure(reason)
        }
        let mapped: EventMapping.Mapped
        switch settings.mapping.map(
            event, style: .typed, provider: "Chargebee", advice: "send it as a string property or round it")
        {
        case .failure(let reason): return .failure(reason)
        case .success(let m): mapped = m
        }
        if let reason = LocalValidation.checkLength(mapped.customer, max: 50, field: "subscription_id") {
            return .failure(reason)
        }
        let properties = JSONValue.object(mapped.properties)
        let size = properties.encoded().count
        if size > 1024 {
            return .failure(
                .local(
                    "properties_too_large", field: "properties",
                    "the event's properties are \(size) bytes; Chargebee takes at most 1 KB per event. Drop or shorten properties"
                ))
        }
        return .success(
            .object([
                "deduplication_id": .string(Self.deduplicationID(event.id)),
                "subscription_id": .string(mapped.customer),
                "usage_timestamp": .number((event.timestamp.timeIntervalSince1970 * 1000).rounded(.down)),
                "properties": properties,
            ]))
    }

    /// The event id when it fits Chargebee's 36 characters, else a 35-character hash of it.
    public static func deduplicationID(_ id: String) -> String {
        id.count <= 36 ? id : EventID.derived(from: [id])
    }

    private func deliverUsageEvents(_ batch: [UsageEvent]) async throws -> [DeliveryOutcome] {
        let now = clock.now()
        var outcomes = [DeliveryOutcome?](repeating: nil, count: batch.count)
        var ready: [(index: Int, json: JSONValue)] = []
        for (index, event) in batch.enumerated() {
            switch usageEvent(event, now: now) {
            case .failure(let reason): outcomes[index] = .rejected(reason)
            case .success(let json): ready.append((index, json))
            }
        }
        for chunk in Batcher.batches(ready, maxBatchSize: settings.maxBatchSize) {
            var headers = self.headers
            headers.add(name: "Content-Type", value: "application/json;charset=UTF-8")
            let request = HTTPRequest(
                method: .post, url: URLBuilder.url(base: settings.ingestEndpoint, path: "/api/v2/batch/usage_events"),
                headers: headers,
                body: JSONValue.object(["events": .array(chunk.map(\.json))]).encoded())
            let perEvent: [DeliveryOutcome]
            switch try await client.sendForDelivery(request) {
            case .failed(let outcome):
                perEvent = chunk.map { _ in outcome }
            case .response(let response):
                let body = JSONValue.parse(response.body)
                if (200..<300).contains(response.status)
                    || body?["type"]?.stringValue == "ubb_batch_ingestion_invalid_request"
                {
                    perEvent = mapFailedEvents(
                        body?["failed_events"], chunk: chunk.map { batch[$0.index] }, status: response.status)
                } else {
                    let outcome = try outcome(for: response)
                    perEvent = chunk.map { _ in outcome }
                }
            }
            for (item, outcome) in zip(chunk, perEvent) { outcomes[item.index] = outcome }
        }
        return outcomes.map { $0 ?? .possiblyDelivered }
    }

    /// Events listed in `failed_events` are rejected with their message; the rest accepted.
    /// An entry that names no event of the batch makes the whole batch retryable (resending is
    /// safe: Chargebee dedupes by `deduplication_id`).
    func mapFailedEvents(_ failed: JSONValue?, chunk: [UsageEvent], status: Int) -> [DeliveryOutcome] {
        guard case .array(let entries)? = failed, !entries.isEmpty else {
            if (200..<300).contains(status) { return chunk.map { _ in .accepted } }
            return chunk.map { _ in
                .retryable(
                    RetryableReason(
                        .serverError, httpStatus: status,
                        message: "Chargebee refused the batch without naming events"), retryAfter: nil)
            }
        }
        var byID: [String: JSONValue] = [:]
        for entry in entries {
            guard let id = entry["deduplication_id"]?.stringValue ?? entry["event"]?["deduplication_id"]?.stringValue
            else {
                return chunk.map { _ in
                    .retryable(
                        RetryableReason(
                            .serverError, httpStatus: status,
                            message:
                                "Chargebee reported failed events it did not name; resending the batch (deduplicated)"),
                        retryAfter: nil)
                }
            }
            byID[id] = entry
        }
        return chunk.map { event in
            guard let entry = byID[Self.deduplicationID(event.id)] else { return .accepted }
            let code = entry["error_code"]?.stringValue ?? entry["api_error_code"]?.stringValue ?? "failed_event"
            let message =
                entry["error_message"]?.stringValue ?? entry["message"]?.stringValue
                ?? "Chargebee did not ingest this event"
            if code == "duplicate_entry" || code == "duplicate_event" { return .duplicate }
            return .rejected(
                RejectionReason(
                    code: code, message: message, field: entry["param"]?.stringValue, origin: .provider,
                    httpStatus: status))
        }
    }
}

/// Chargebee's error body: `{message, type, api_error_code, param, error_cause_id}` (the legacy
/// `error_code`/`error_msg`/`error_param` read too). A non-JSON body (a proxy's 503) has none.
struct ChargebeeError {
    var message: String
    var code: String?
    var param: String?
    var type: String?

    init(_ response: HTTPResponse) {
        let body = JSONValue.parse(response.body)
        code = body?["api_error_code"]?.stringValue ?? body?["error_code"]?.stringValue
        param = body?["param"]?.stringValue ?? body?["error_param"]?.stringValue
        type = body?["type"]?.stringValue
        message =
            body?["message"]?.stringValue ?? body?["error_msg"]?.stringValue
            ?? "Chargebee answered HTTP \(response.status)"
    }

    var describe: String {
        var text = message
        if let code { text += " (\(code)" + (param.map { ", param \($0)" } ?? "") + ")" }
        return text
    }
}
