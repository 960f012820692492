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
        let now = clock.now()
        return try await PreparedDelivery.deliver(
            batch, maxPerRequest: settings.maxBatchSize, prepare: { prepare($0, now: now) }, sendEach: send)
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

    /// One request, one outcome per event in order; a 400 that names events is answered for them
    /// and the rest go again at once.
    private func send(_ events: [EncodedJSON]) async throws -> [DeliveryOutcome] {
        let request = HTTPRequest(
            method: .post, url: URLBuilder.url(base: settings.endpoint, path: "/usage-events"),
            headers: [
                "Authorization": "Bearer \(settings.apiKey.exposedValue)", "Paddle-Version": "1",
                "Content-Type": "application/json", "Accept": "application/json",
            ],
            body: JSONValue.encodeObject(key: "events", array: events))
        let response: HTTPResponse
        switch try await client.sendForDelivery(request) {
        case .failed(let outcome): return Array(repeating: outcome, count: events.count)
        case .response(let r): response = r
        }
        let body = JSONValue.parse(response.body)
        let requestID = body?["meta"]?["request_id"]?.stringValue
        let error = body?["error"]
        let detail = error?["detail"]?.stringValue ?? "Paddle answered HTTP \(response.status)"
        func rejection(_ code: String, _ message: String) -> DeliveryOutcome {
            .rejected(
                RejectionReason(
                    code: code, message: message, origin: .provider, providerRequestID: requestID,
                    httpStatus: response.status))
        }
        switch response.status {
        case 200..<300:
            let statuses = body?["data"]?.arrayValue ?? []
            return events.indices.map { position in
                let answer = position < statuses.count ? statuses[position] : nil
                guard answer?["status"]?.stringValue == "rejected" else { return .accepted }
                return rejection(
                    answer?["error"]?["code"]?.stringValue ?? "usage_event_rejected",
                    answer?["error"]?["detail"]?.stringValue ?? "Paddle did not record the event")
            }
        case 401, 403:
            throw UsageBillingError(
                .configuration, "Paddle refused the key (\(response.status): \(detail))",
                fix: response.status == 401 ? "check api_key" : "give the key the usage_event.write permission",
                field: "api_key", providerRequestID: requestID)
        case 400:
            // Paddle refused the whole batch: the events its errors name (by index) are rejected
            // with their messages and the rest are sent again, unchanged; with no index named,
            // one by one, so each gets its own answer.
            let code = error?["code"]?.stringValue ?? "bad_request"
            let errors = error?["errors"]?.arrayValue ?? []
            var named: [Int: [String]] = [:]
            for item in errors {
                guard let field = item["field"]?.stringValue, let match = field.firstMatch(of: /\[(\d+)\]/),
                    let position = Int(match.1), events.indices.contains(position)
                else { continue }
                named[position, default: []].append("\(field): \(item["message"]?.stringValue ?? "invalid")")
            }
            if named.isEmpty {
                guard events.count > 1 else {
                    return [
                        rejection(
                            code, ([detail] + errors.compactMap { $0["message"]?.stringValue }).joined(separator: "; "))
                    ]
                }
                var outcomes: [DeliveryOutcome] = []
                for event in events { outcomes += try await send([event]) }
                return outcomes
            }
            var outcomes = events.indices.map { named[$0].map { rejection(code, $0.joined(separator: "; ")) } }
            let rest = events.indices.filter { named[$0] == nil }
            if !rest.isEmpty {
                for (position, outcome) in zip(rest, try await send(rest.map { events[$0] })) {
                    outcomes[position] = outcome
                }
            }
            return outcomes.map { $0 ?? .possiblyDelivered }
        default:
            if let retry = response.standardRetryableOutcome(now: clock.now(), message: detail, requestID: requestID) {
                return Array(repeating: retry, count: events.count)
            }
            return Array(
                repeating: rejection(error?["code"]?.stringValue ?? "http_\(response.status)", detail),
                count: events.count)
        }
    }
}
