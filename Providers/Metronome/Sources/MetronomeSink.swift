import Foundation
import UsageBilling

/// Delivers usage events to Metronome's `POST /v1/ingest`: a bare JSON array of 1–100 events.
///
/// - event `id` → `transaction_id` (Metronome ignores a repeat within 34 days); `name` →
///   `event_type`; `customer` → `customer_id` (a Metronome id or ingest alias).
/// - Property values go as strings by default (decimal precision), the quantity under the
///   mapped property (default `quantity`).
/// - An empty 200 means every event was taken, duplicates included, so a repeat reads as
///   `.accepted`. 429 and 5xx are retryable; the 429's `X-Metronome-Rate-Limit-Type`
///   (`client`: the whole organisation, `customer`: one customer) is in the reason. Other 4xx
///   reject the batch and are never retried; 401/403 throw `.configuration`.
/// - No `Idempotency-Key` header: Metronome caches errors (even 500s) under it, and
///   `transaction_id` already dedupes.
/// - Checked locally: 34 days back, 24 hours ahead; `transaction_id` 1–128 characters.
public struct MetronomeSink: UsageSink {
    public let name: String
    /// The settings in use (the key prints masked).
    public let settings: MetronomeSettings
    private let client: any HTTPClient
    private let clock: any UsageClock

    /// Metronome's accepted window.
    public static let window = AcceptedTimeWindow(maxAge: .seconds(34 * 86_400), maxFutureSkew: .seconds(24 * 3600))

    /// A sink; throws `.invalidInput`/`.configuration` naming a bad setting.
    public init(
        settings: MetronomeSettings, client: any HTTPClient, clock: any UsageClock = SystemClock(),
        name: String = "metronome"
    ) throws {
        try settings.validate()
        self.name = name
        self.settings = settings
        self.client = client
        self.clock = clock
    }

    /// Up to 100 events per request, 34 days back / 24 h ahead, dedup by `transaction_id` for 34 days.
    public var capabilities: SinkCapabilities {
        SinkCapabilities(
            maxBatchSize: settings.maxBatchSize, acceptedWindow: Self.window,
            idempotency: .providerDeduplicates(window: .seconds(34 * 86_400)),
            rateLimit: RateLimit(
                requestsPerSecond: max(1, settings.eventsPerSecond / Double(settings.maxBatchSize)), burst: 10),
            aggregation: settings.aggregate,
            maxConcurrentRequests: 8)
    }

    /// Validates, sends the valid events in one request, and returns one outcome per event in order.
    public func deliver(_ batch: [UsageEvent]) async throws -> [DeliveryOutcome] {
        let now = clock.now()
        return try await PreparedDelivery.deliver(
            batch, maxPerRequest: settings.maxBatchSize,
            prepare: { prepare($0, now: now) }, send: send)
    }

    func prepare(_ event: UsageEvent, now: Date) -> Result<EncodedJSON, RejectionReason> {
        let event = settings.aggregate == nil ? event : AggregateInfo.asEvent(event)
        if let reason = LocalValidation.checkTimestamp(event, window: Self.window, now: now, provider: "Metronome") {
            return .failure(reason)
        }
        if let reason = LocalValidation.checkLength(event.id, max: 128, field: "transaction_id") {
            return .failure(reason)
        }
        let mapped: EventMapping.Mapped
        switch settings.mapping.map(
            event, style: settings.propertiesAsStrings ? .allStrings : .typed, provider: "Metronome",
            advice: "Set properties_as_strings: true (Metronome's advice) or round it")
        {
        case .failure(let reason): return .failure(reason)
        case .success(let m): mapped = m
        }
        // Written straight to bytes, keys in byte order (what encodeObject would sort them to).
        return .success(
            JSONValue.encodeObject([
                ("customer_id", .string(mapped.customer)), ("event_type", .string(mapped.eventName)),
                ("properties", .object(mapped.properties)), ("timestamp", .string(RFC3339.format(event.timestamp))),
                ("transaction_id", .string(event.id)),
            ]))
    }

    private func send(_ events: [EncodedJSON]) async throws -> DeliveryOutcome {
        let request = HTTPRequest(
            method: .post, url: URLBuilder.url(base: settings.endpoint, path: "/v1/ingest"),
            headers: [
                "Authorization": "Bearer \(settings.apiKey.exposedValue)", "Content-Type": "application/json",
                "Accept": "*/*",
            ],
            body: JSONValue.encodeArray(events))
        let response: HTTPResponse
        switch try await client.sendForDelivery(request) {
        case .failed(let outcome): return outcome
        case .response(let r): response = r
        }
        let message =
            JSONValue.parse(response.body)?["message"]?.stringValue ?? "Metronome answered HTTP \(response.status)"
        switch response.status {
        case 200..<300:
            return .accepted
        case 401, 403:
            throw UsageBillingError(
                .configuration, "Metronome refused the token (\(response.status): \(message))",
                fix: response.status == 401
                    ? "check \(settings.credentialField)"
                    : settings.credentialField == "secret_key"
                        ? "a live Stripe key (sk_live_…) reaches Metronome only once the account has gone live; use the sandbox key sk_test_… until then"
                        : "the token lacks ingest access; use a token with write access to usage",
                field: settings.credentialField)
        case 429:
            let type = response.headers["X-Metronome-Rate-Limit-Type"]?.lowercased()
            let scope =
                switch type {
                case "customer": "customer rate limit: only this customer's events are throttled"
                case "client": "client rate limit: the organisation's limit for this endpoint"
                default: "rate limited"
                }
            return .retryable(
                RetryableReason(.rateLimited, httpStatus: 429, message: "\(scope) (\(message))"),
                retryAfter: response.retryAfter(now: clock.now()))
        case 500...:
            return .retryable(
                RetryableReason(.serverError, httpStatus: response.status, message: message),
                retryAfter: response.retryAfter(now: clock.now()))
        default:
            // Metronome: never auto-retry a 4xx other than 429; it goes to dead letters.
            return .rejected(
                RejectionReason(
                    code: "http_\(response.status)", message: message, origin: .provider, httpStatus: response.status))
        }
    }
}

/// The name before every provider folder had the same shape (`<Name>Sink`, `<Name>Client`).
@available(*, deprecated, renamed: "MetronomeSink")
public typealias MetronomeIngestSink = MetronomeSink
