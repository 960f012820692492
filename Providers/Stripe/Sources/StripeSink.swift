import Foundation
import UsageBilling

/// Delivers usage events to Stripe Billing meters: v1 meter events, v2 meter events, or the v2
/// high-throughput stream (see ``StripeMeteringAPI``).
///
/// - The event id is Stripe's `identifier` and, for single-event requests, also the
///   `Idempotency-Key`; stream batches use a key derived from their event ids. Both are the same
///   on every retry.
/// - Checked locally, with no request: timestamp within 35 days back and 5 minutes ahead, value
///   a whole number (unless `allow_fractional_values`) of at most 15 significant digits,
///   `identifier` and `event_name` at most 100 characters, no property named like the customer or
///   value key.
/// - Stripe's reused-identifier answer is `.duplicate`; 409/429/5xx (and `Stripe-Should-Retry:
///   true`) are retryable with `Retry-After`; 401/403 throw `.configuration`; other 4xx reject the
///   event with Stripe's code, param, message and `Request-Id`.
public struct StripeSink: UsageSink {
    /// The sink's name for logs and metrics (`stripe` unless given).
    public let name: String
    /// The settings in use (the secret prints masked).
    public let settings: StripeSettings
    let client: any HTTPClient
    let clock: any UsageClock
    private let session: StripeSessionCache
    /// A v1 or v2 meter-event request's URL and headers (all but `Idempotency-Key`), made once:
    /// they are the same for every event.
    private let single: (url: String, headers: HeaderFields)

    /// Events older than this are refused by Stripe.
    public static let maxAge: Duration = .seconds(35 * 86_400)
    /// Events further than this in the future are refused by Stripe.
    public static let maxFutureSkew: Duration = .seconds(5 * 60)

    /// - Throws: `.invalidInput` / `.configuration` naming the bad setting.
    public init(
        settings: StripeSettings, client: any HTTPClient, clock: any UsageClock = SystemClock(), name: String = "stripe"
    ) throws {
        try settings.validate()
        self.name = name
        self.settings = settings
        self.client = client
        self.clock = clock
        self.session = StripeSessionCache(settings: settings, client: client, clock: clock)
        self.capabilities = Self.capabilities(settings)
        let v1 = settings.api == .v1
        self.single = (
            URLBuilder.url(base: settings.endpoint, path: v1 ? "/v1/billing/meter_events" : "/v2/billing/meter_events"),
            Self.commonHeaders(
                settings, authorization: settings.secretKey.exposedValue,
                contentType: v1 ? "application/x-www-form-urlencoded" : "application/json")
        )
    }

    /// Stripe's documented request limits for meter events (stripe.md §1.9): a test-mode key
    /// (the sandbox's basic limit), live v1/v2, and the live v2 stream.
    public static let documentedRate = (test: 25.0, live: 1_000.0, stream: 10_000.0)

    /// One event per request (v1, v2) or up to `stream_batch_size` (stream); Stripe's 35-day/5-minute window; dedup by identifier for at least 24 h; the documented rate limit for the key's mode.
    public let capabilities: SinkCapabilities

    private static func capabilities(_ settings: StripeSettings) -> SinkCapabilities {
        // `documentedRate` (stripe.md §1.9): test mode counts toward the sandbox's basic limit;
        // live v1 and v2 have a limiter of their own; the stream its own. Paced a tenth under
        // each, with a burst of a fifth of the sandbox's: requests sent at the limit arrive
        // bunched by the network and meet it, and a full burst leaves no room for the next bunch.
        var rate: RateLimit
        switch (settings.api, settings.isTestMode) {
        case (_, true): rate = RateLimit(requestsPerSecond: Self.documentedRate.test * 0.9, burst: 5)
        case (.v2Stream, false): rate = RateLimit(requestsPerSecond: Self.documentedRate.stream * 0.9, burst: 900)
        case (_, false): rate = RateLimit(requestsPerSecond: Self.documentedRate.live * 0.9, burst: 90)
        }
        if let raised = settings.requestsPerSecond {
            rate = RateLimit(requestsPerSecond: raised, burst: max(1, Int(raised / 10)))
        }
        return SinkCapabilities(
            maxBatchSize: settings.api == .v2Stream ? settings.streamBatchSize : 1,
            acceptedWindow: AcceptedTimeWindow(maxAge: Self.maxAge, maxFutureSkew: Self.maxFutureSkew),
            idempotency: .providerDeduplicates(window: .seconds(24 * 3600)),
            rateLimit: rate,
            aggregation: settings.aggregate,
            // Requests stand alone: v1/v2 carry one event each (never two at once for one customer
            // and meter: see `concurrencyKey`), stream requests share a session token (the cache
            // is an actor; a token Stripe calls expired is dropped by value).
            // A lane's calls per second are at most its calls in flight over a call's latency: 64
            // in flight reach live mode's documented rate at Stripe's usual latency; the routing
            // config's `max_in_flight` overrides it.
            maxConcurrentRequests: 64)
    }

    /// v1 and v2: Stripe takes one concurrent call per customer per meter (stripe.md §1.9; v2
    /// answers others with 409 `too_many_concurrent_requests`), so events for one customer and
    /// event name never overlap. The stream has no such limit.
    public func concurrencyKey(for event: UsageEvent) -> String? {
        guard settings.api != .v2Stream else { return nil }
        return (settings.customers[event.customer] ?? event.customer) + "\u{1F}" + stripeEventName(for: event)
    }

    /// Validates each event, sends the valid ones, and returns one outcome per event in order.
    public func deliver(_ batch: [UsageEvent]) async throws -> [DeliveryOutcome] {
        let now = clock.now()
        let stream = settings.api == .v2Stream
        return try await PreparedDelivery.deliver(
            batch, maxPerRequest: stream ? settings.streamBatchSize : 1, prepare: { prepare($0, now: now) },
            send: { events in
                if stream { return try await sendStream(events) }
                guard let event = events.first else { return .possiblyDelivered }  // never empty
                return try await sendSingle(event)
            })
    }

    // MARK: - Preparing

    /// An event validated and mapped to Stripe's fields.
    struct PreparedEvent: Sendable {
        var identifier: String
        var eventName: String
        var payload: [(String, String)]
        var timestamp: Date
    }

    /// The Stripe meter `event_name` for an event.
    public func stripeEventName(for event: UsageEvent) -> String {
        settings.eventNames[event.name] ?? settings.eventName ?? event.name
    }

    func prepare(_ event: UsageEvent, now: Date) -> Result<PreparedEvent, RejectionReason> {
        let event = settings.aggregate == nil ? event : AggregateInfo.asEvent(event)
        let window = capabilities.acceptedWindow
        if let reason = LocalValidation.checkTimestamp(event, window: window, now: now, provider: "Stripe") {
            return .failure(reason)
        }
        if let reason = LocalValidation.checkLength(event.id, max: 100, field: "identifier") { return .failure(reason) }
        let eventName = stripeEventName(for: event)
        if let reason = LocalValidation.checkLength(eventName, max: 100, field: "event_name") {
            return .failure(reason)
        }
        let customer = settings.customers[event.customer] ?? event.customer
        if customer.isEmpty {
            return .failure(
                .local(
                    "customer_missing", field: "customer",
                    "the event has no customer; Stripe needs one in payload[\(settings.customerKey)]"))
        }
        let quantity = event.quantity
        if quantity.isNaN {
            return .failure(.local("value_invalid", field: "quantity", "quantity is not a number"))
        }
        if !settings.allowFractionalValues && !DecimalFormat.isWhole(quantity) {
            return .failure(
                .local(
                    "value_not_whole", field: "quantity",
                    "Stripe meters take whole numbers; \(DecimalFormat.plain(quantity)) is fractional. Record a smaller unit (e.g. milliseconds, not seconds) or set allow_fractional_values: true"
                ))
        }
        if DecimalFormat.significantDigits(quantity) > 15 {
            return .failure(
                .local(
                    "meter_event_value_too_many_digits", field: "quantity",
                    "Stripe rejects values with more than 15 significant digits; \(DecimalFormat.plain(quantity)) has \(DecimalFormat.significantDigits(quantity))"
                ))
        }
        var payload: [(String, String)] = [
            (settings.customerKey, customer), (settings.valueKey, DecimalFormat.plain(quantity)),
        ]
        for key in event.properties.keys.sorted() {
            if key == settings.customerKey || key == settings.valueKey {
                return .failure(
                    .local(
                        "property_conflicts_with_meter_key", field: "properties.\(key)",
                        "property '\(key)' would overwrite the meter's \(key == settings.customerKey ? "customer" : "value") key; rename the property"
                    ))
            }
            if key.isEmpty {
                return .failure(.local("property_name_empty", field: "properties", "a property has an empty name"))
            }
            payload.append((key, event.properties[key]?.description ?? ""))
        }
        return .success(
            PreparedEvent(identifier: event.id, eventName: eventName, payload: payload, timestamp: event.timestamp))
    }

    // MARK: - Sending

    func commonHeaders(authorization: String, contentType: String) -> HeaderFields {
        Self.commonHeaders(settings, authorization: authorization, contentType: contentType)
    }

    private static func commonHeaders(_ settings: StripeSettings, authorization: String, contentType: String)
        -> HeaderFields
    {
        var headers: HeaderFields = [
            "Authorization": "Bearer \(authorization)",
            "Stripe-Version": settings.apiVersion,
            "Content-Type": contentType,
        ]
        if let account = settings.stripeAccount { headers["Stripe-Account"] = account }
        return headers
    }

    private func sendSingle(_ event: PreparedEvent) async throws -> DeliveryOutcome {
        var headers = single.headers
        let url = single.url
        let body: Data
        if settings.api == .v1 {
            var fields: [(String, String)] = [("event_name", event.eventName)]
            fields += event.payload.map { ("payload[\($0.0)]", $0.1) }
            fields.append(("identifier", event.identifier))
            fields.append(("timestamp", String(Int(event.timestamp.timeIntervalSince1970.rounded(.down)))))
            body = Data(FormEncoding.encodedBytes(fields))
        } else {
            body = Self.jsonEvent(event).data
        }
        headers["Idempotency-Key"] = event.identifier
        switch try await post(HTTPRequest(method: .post, url: url, headers: headers, body: body)) {
        case .done(let outcome): return outcome
        case .sessionExpired(let requestID):
            throw UsageBillingError(
                .configuration, "Stripe answered session-expired to a secret-key request",
                fix: "check that endpoint points at the Stripe API", providerRequestID: requestID)
        }
    }

    private enum Sent {
        case done(DeliveryOutcome)
        case sessionExpired(requestID: String?)
    }

    /// Sends one ingest request and reads Stripe's answer as an outcome for its events.
    /// Throws only configuration errors and non-transport failures.
    private func post(_ request: HTTPRequest) async throws -> Sent {
        let response: HTTPResponse
        switch try await client.sendForDelivery(request) {
        case .failed(let outcome): return .done(outcome)
        case .response(let r): response = r
        }
        switch StripeAnswer.classify(response, now: clock.now()) {
        case .success: return .done(.accepted)
        case .outcome(let outcome): return .done(outcome)
        case .configuration(let error): throw error
        case .sessionExpired: return .sessionExpired(requestID: response.headers["Request-Id"])
        }
    }

    /// One v2 meter event's JSON, keys in byte order (what encodeObject would sort them to).
    static func jsonEvent(_ event: PreparedEvent) -> EncodedJSON {
        JSONValue.encodeObject([
            ("event_name", .string(event.eventName)),
            ("identifier", .string(event.identifier)),
            (
                "payload",
                .object(Dictionary(event.payload.map { ($0.0, JSONValue.string($0.1)) }, uniquingKeysWith: { $1 }))
            ),
            ("timestamp", .string(RFC3339.format(event.timestamp, fractional: true))),
        ])
    }

    private func sendStream(_ events: [PreparedEvent]) async throws -> DeliveryOutcome {
        let body = JSONValue.encodeObject(key: "events", array: events.map(Self.jsonEvent))
        let key = EventID.derived(from: ["stripe-meter-event-stream"] + events.map(\.identifier))
        for attempt in 0..<2 {
            let token: String
            switch try await session.token() {
            case .token(let value): token = value
            case .outcome(let outcome): return outcome
            }
            var headers = commonHeaders(authorization: token, contentType: "application/json")
            headers["Idempotency-Key"] = key
            let request = HTTPRequest(
                method: .post,
                url: URLBuilder.url(base: settings.meterEventsEndpoint, path: "/v2/billing/meter_event_stream"),
                headers: headers, body: body)
            switch try await post(request) {
            case .done(let outcome): return outcome
            case .sessionExpired(let requestID):
                await session.invalidate(token)
                if attempt == 1 {
                    return .retryable(
                        RetryableReason(
                            .sessionExpired, httpStatus: 401,
                            message: "the meter event session expired twice in a row",
                            providerRequestID: requestID), retryAfter: nil)
                }
            }
        }
        return .possiblyDelivered
    }
}

/// Holds the v2 meter-event session token, creating one when there is none or it is within a
/// minute of `expires_at`, and again after Stripe says it expired.
actor StripeSessionCache {
    enum Result { case token(String), outcome(DeliveryOutcome) }

    private let settings: StripeSettings
    private let client: any HTTPClient
    private let clock: any UsageClock
    private var current: (token: String, expiresAt: Date)?

    /// Refresh this long before `expires_at`.
    static let refreshMargin: TimeInterval = 60

    init(settings: StripeSettings, client: any HTTPClient, clock: any UsageClock) {
        self.settings = settings
        self.client = client
        self.clock = clock
    }

    func invalidate(_ token: String) {
        if current?.token == token { current = nil }
    }

    /// A session being created; concurrent callers wait for it instead of creating their own.
    private var creating: Task<Result, any Error>?

    func token() async throws -> Result {
        if let current, clock.now().addingTimeInterval(Self.refreshMargin) < current.expiresAt {
            return .token(current.token)
        }
        if let creating { return try await creating.value }
        let task = Task { try await self.createSession() }
        creating = task
        defer { creating = nil }
        return try await task.value
    }

    private func createSession() async throws -> Result {
        var headers: HeaderFields = [
            "Authorization": "Bearer \(settings.secretKey.exposedValue)",
            "Stripe-Version": settings.apiVersion,
            "Content-Type": "application/json",
            "Idempotency-Key": UUID().uuidString.lowercased(),
        ]
        if let account = settings.stripeAccount { headers["Stripe-Account"] = account }
        let request = HTTPRequest(
            method: .post, url: URLBuilder.url(base: settings.endpoint, path: "/v2/billing/meter_event_session"),
            headers: headers, body: Data("{}".utf8))
        let response: HTTPResponse
        do {
            response = try await client.send(request)
        } catch {
            // Creating a session bills nothing, so any failure is simply retryable.
            if let outcome = DeliveryOutcome.forTransportFailure(error) {
                if outcome == .possiblyDelivered {
                    return .outcome(
                        .retryable(
                            RetryableReason(.transport, message: "creating a meter event session failed"),
                            retryAfter: nil))
                }
                return .outcome(outcome)
            }
            throw error
        }
        switch StripeAnswer.classify(response, now: clock.now()) {
        case .success:
            let body = JSONValue.parse(response.body)
            guard let token = body?["authentication_token"]?.stringValue,
                let expires = body?["expires_at"]?.stringValue.flatMap(RFC3339.parse)
            else {
                throw UsageBillingError(
                    .unexpectedResponse, "Stripe's meter event session has no authentication_token/expires_at",
                    fix: "check that endpoint points at the Stripe API",
                    providerRequestID: response.headers["Request-Id"])
            }
            current = (token, expires)
            return .token(token)
        case .outcome(.rejected(let reason)):
            throw UsageBillingError(
                .configuration, "Stripe refused to create a meter event session: \(reason.message)",
                fix: "check the account's access to the v2 meter event stream",
                providerRequestID: reason.providerRequestID)
        case .outcome(let outcome):
            return .outcome(outcome)
        case .configuration(let error):
            throw error
        case .sessionExpired:
            throw UsageBillingError(
                .configuration, "Stripe answered session-expired when creating a session",
                fix: "check secret_key", providerRequestID: response.headers["Request-Id"])
        }
    }
}

/// The name before every provider folder had the same shape (`<Name>Sink`, `<Name>Client`).
@available(*, deprecated, renamed: "StripeSink")
public typealias StripeMeterEventSink = StripeSink
