import Foundation
import UsageBilling

/// Delivers usage events to Paddle's usage-based billing (early access, beta):
/// `POST /usage-events` with up to 100 events, each `{event_key, customer_id, action, quantity,
/// occurred_at}`.
///
/// - event `id` → `event_key`; `timestamp` → `occurred_at`, written the same way on every attempt:
///   Paddle counts an event once per customer and action by `event_key` + `occurred_at`, so a
///   retry with a changed `occurred_at` would count twice.
/// - `name` → `action` (the meter's action), `customer` → `customer_id` (a Paddle `ctm_…` id).
/// - Paddle validates the whole batch first and refuses all of it when one event is invalid
///   (400 `bad_request`, its `errors` naming each failed field by the event's index). The sink
///   rejects the named events with Paddle's message and sends the rest again at once, unchanged;
///   a 400 that names no index is split into single events so each gets its own answer.
/// - A 2xx lists each event's `status` in order; `rejected` ones become rejections with their
///   error code (`usage_event_timestamp_too_old`, `usage_event_future_timestamp`).
/// - 429 and 5xx are retryable (`Retry-After` honoured); 401/403 throw `.configuration`.
/// - Checked locally: 60 days back and 24 hours ahead, a customer, a quantity that is not
///   negative and that a JSON number carries exactly. The customer must be a Paddle customer
///   (`ctm_…`, mapped under `customers`); Paddle refuses others and the split names them.
public struct PaddleUsageSink: UsageSink {
    public let name: String
    /// The settings in use (the key prints masked).
    public let settings: PaddleUsageSettings
    private let client: any HTTPClient
    private let clock: any UsageClock

    /// Paddle's accepted window for `occurred_at`.
    public static let window = AcceptedTimeWindow(maxAge: .seconds(60 * 86_400), maxFutureSkew: .seconds(24 * 3600))

    /// A sink; throws `.invalidInput`/`.configuration` naming a bad setting.
    public init(
        settings: PaddleUsageSettings, client: any HTTPClient, clock: any UsageClock = SystemClock(),
        name: String = "paddle_usage"
    ) throws {
        try settings.validate()
        self.name = name
        self.settings = settings
        self.client = client
        self.clock = clock
    }

    /// Up to `max_batch_size` events per request, 60 days back and 24 hours ahead, counted once
    /// per (customer, action, event_key, occurred_at), paced a tenth under the key's limit.
    public var capabilities: SinkCapabilities {
        SinkCapabilities(
            maxBatchSize: settings.maxBatchSize, acceptedWindow: Self.window,
            idempotency: .providerDeduplicates(window: .seconds(60 * 86_400)),
            rateLimit: RateLimit(requestsPerSecond: settings.requestsPerMinute / 60 * 0.9, burst: 5),
            aggregation: settings.aggregate, maxConcurrentRequests: 4)
    }

    /// Validates, sends the valid events, and returns one outcome per event in order.
    public func deliver(_ batch: [UsageEvent]) async throws -> [DeliveryOutcome] {
        var outcomes = [DeliveryOutcome?](repeating: nil, count: batch.count)
        var ready: [(index: Int, json: EncodedJSON)] = []
        let now = clock.now()
        for (index, event) in batch.enumerated() {
            switch prepare(event, now: now) {
            case .failure(let reason): outcomes[index] = .rejected(reason)
            case .success(let json): ready.append((index, json))
            }
        }
        var start = 0
        while start < ready.count {
            let chunk = Array(ready[start..<min(start + settings.maxBatchSize, ready.count)])
            for (index, outcome) in try await send(chunk) { outcomes[index] = outcome }
            start += chunk.count
        }
        return outcomes.map { $0 ?? .possiblyDelivered }
    }

    func prepare(_ event: UsageEvent, now: Date) -> Result<EncodedJSON, RejectionReason> {
        let event = settings.aggregate == nil ? event : AggregateInfo.asEvent(event)
        if let reason = LocalValidation.checkTimestamp(event, window: Self.window, now: now, provider: "Paddle") {
            return .failure(reason)
        }
        if let reason = LocalValidation.checkLength(event.id, max: 255, field: "event_key") { return .failure(reason) }
        let customer = settings.mapping.providerCustomer(for: event)
        if customer.isEmpty {
            return .failure(
                .local("customer_missing", field: "customer", "Paddle usage events need a customer (a Paddle ctm_… id)")
            )
        }
        guard event.quantity >= 0 else {
            return .failure(
                .local(
                    "quantity_negative", field: "quantity",
                    "Paddle usage events draw a balance down and take no negative quantity; \(DecimalFormat.plain(event.quantity)) is negative"
                ))
        }
        guard let quantity = DecimalFormat.exactDouble(event.quantity) else {
            return .failure(
                .local(
                    "value_not_representable", field: "quantity",
                    "Paddle takes JSON numbers; \(DecimalFormat.plain(event.quantity)) has more digits than a JSON number keeps exactly. Round it or record a larger unit"
                ))
        }
        return .success(
            JSONValue.encodeObject([
                ("action", .string(settings.mapping.providerEventName(for: event))), ("customer_id", .string(customer)),
                ("event_key", .string(event.id)), ("occurred_at", .string(RFC3339.format(event.timestamp))),
                ("quantity", .number(quantity)),
            ]))
    }

    /// One request; a 400 that names events is answered for them and the rest go again at once.
    private func send(_ events: [(index: Int, json: EncodedJSON)]) async throws -> [(Int, DeliveryOutcome)] {
        let request = HTTPRequest(
            method: .post, url: URLBuilder.url(base: settings.endpoint, path: "/usage-events"),
            headers: [
                "Authorization": "Bearer \(settings.apiKey.exposedValue)", "Paddle-Version": "1",
                "Content-Type": "application/json", "Accept": "application/json",
            ],
            body: JSONValue.encodeObject(key: "events", array: events.map(\.json)))
        let response: HTTPResponse
        switch try await client.sendForDelivery(request) {
        case .failed(let outcome): return events.map { ($0.index, outcome) }
        case .response(let r): response = r
        }
        let body = JSONValue.parse(response.body)
        let requestID = body?["meta"]?["request_id"]?.stringValue
        let error = body?["error"]
        let detail = error?["detail"]?.stringValue ?? "Paddle answered HTTP \(response.status)"
        switch response.status {
        case 200..<300:
            let statuses = body?["data"]?.arrayValue ?? []
            return events.enumerated().map { position, event in
                let answer = position < statuses.count ? statuses[position] : nil
                guard answer?["status"]?.stringValue == "rejected" else { return (event.index, .accepted) }
                let code = answer?["error"]?["code"]?.stringValue ?? "usage_event_rejected"
                let message = answer?["error"]?["detail"]?.stringValue ?? "Paddle did not record the event"
                return (
                    event.index,
                    .rejected(
                        RejectionReason(
                            code: code, message: message, origin: .provider, providerRequestID: requestID,
                            httpStatus: response.status))
                )
            }
        case 401, 403:
            throw UsageBillingError(
                .configuration, "Paddle refused the key (\(response.status): \(detail))",
                fix: response.status == 401 ? "check api_key" : "give the key the usage_event.write permission",
                field: "api_key", providerRequestID: requestID)
        case 400:
            return try await splitRefusedBatch(
                events, errors: error?["errors"]?.arrayValue ?? [], code: error?["code"]?.stringValue ?? "bad_request",
                detail: detail, requestID: requestID)
        default:
            if let retry = response.standardRetryableOutcome(now: clock.now(), message: detail, requestID: requestID) {
                return events.map { ($0.index, retry) }
            }
            let reason = RejectionReason(
                code: error?["code"]?.stringValue ?? "http_\(response.status)", message: detail, origin: .provider,
                providerRequestID: requestID, httpStatus: response.status)
            return events.map { ($0.index, .rejected(reason)) }
        }
    }

    /// Paddle refused the whole batch: the events its errors name are rejected with their
    /// messages and the rest are sent again, unchanged; without a named index, one by one.
    private func splitRefusedBatch(
        _ events: [(index: Int, json: EncodedJSON)], errors: [JSONValue], code: String, detail: String,
        requestID: String?
    ) async throws -> [(Int, DeliveryOutcome)] {
        var named: [Int: [String]] = [:]
        for error in errors {
            guard let field = error["field"]?.stringValue, let match = field.firstMatch(of: /\[(\d+)\]/),
                let position = Int(match.1),
                events.indices.contains(position)
            else { continue }
            named[position, default: []].append("\(field): \(error["message"]?.stringValue ?? "invalid")")
        }
        if named.isEmpty {
            guard events.count > 1 else {
                let messages = errors.compactMap { $0["message"]?.stringValue }
                return [
                    (
                        events[0].index,
                        .rejected(
                            RejectionReason(
                                code: code, message: ([detail] + messages).joined(separator: "; "), origin: .provider,
                                providerRequestID: requestID, httpStatus: 400))
                    )
                ]
            }
            var out: [(Int, DeliveryOutcome)] = []
            for event in events { out += try await send([event]) }
            return out
        }
        var out: [(Int, DeliveryOutcome)] = named.map { position, messages in
            (
                events[position].index,
                .rejected(
                    RejectionReason(
                        code: code, message: messages.joined(separator: "; "), origin: .provider,
                        providerRequestID: requestID, httpStatus: 400))
            )
        }
        let rest = events.enumerated().filter { named[$0.offset] == nil }.map(\.element)
        if !rest.isEmpty { out += try await send(rest) }
        return out
    }
}
