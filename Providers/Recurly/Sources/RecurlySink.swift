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
    public init(
        settings: RecurlySettings, client: any HTTPClient, clock: any UsageClock = SystemClock(),
        name: String = "recurly"
    ) throws {
        try settings.validate()
        self.name = name
        self.settings = settings
        self.client = client
        self.clock = clock
        self.reader = RecurlyClient(settings: settings, client: client, clock: clock)
    }

    /// One record per request, aggregated, checked before a retry, paced by `requests_per_minute`.
    public var capabilities: SinkCapabilities {
        SinkCapabilities(
            maxBatchSize: 1, idempotency: .clientCheckBeforeRetry,
            rateLimit: RateLimit(requestsPerSecond: settings.requestsPerMinute / 60, burst: 5),
            aggregation: settings.aggregate)
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
    func prepare(_ event: UsageEvent) -> Result<(subscription: String, addOn: String, body: JSONValue), RejectionReason>
    {
        let subscription = settings.mapping.providerCustomer(for: event)
        if subscription.isEmpty {
            return .failure(
                .local(
                    "subscription_missing", field: "customer",
                    "the event has no customer; map it to a Recurly subscription"))
        }
        guard let addOn = settings.addOn(for: event.name) else {
            return .failure(
                .local(
                    "add_on_missing", field: "add_on_id",
                    "no Recurly add-on for '\(event.name)'; add it to add_ons or set add_on_id"))
        }
        var amount = event.quantity
        if !settings.decimalQuantity && !DecimalFormat.isWhole(amount) {
            return .failure(
                .local(
                    "amount_not_whole", field: "quantity",
                    "Recurly drops the decimals of \(DecimalFormat.plain(amount)) unless the site has Decimal Quantity; enable it and set decimal_quantity: true, or bill whole units"
                ))
        }
        if settings.decimalQuantity {
            var rounded = Decimal()
            NSDecimalRound(&rounded, &amount, 9, .plain)
            amount = rounded
        }
        guard let number = DecimalFormat.exactDouble(amount) else {
            return .failure(
                .local(
                    "value_not_representable", field: "quantity",
                    "the amount \(DecimalFormat.plain(amount)) does not fit a JSON number exactly; round it"))
        }
        let info = AggregateInfo(event)
        let recorded = info.windowEnd ?? event.timestamp
        return .success(
            (
                subscription, addOn,
                .object([
                    "amount": .number(number), "merchant_tag": .string(event.id),
                    "usage_timestamp": .string(RFC3339.format(info.windowStart)),
                    "recording_timestamp": .string(RFC3339.format(recorded)),
                ])
            ))
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
                let found = try await reader.usage(
                    subscription: prepared.subscription, addOn: prepared.addOn, begin: at, end: at)
                if found.contains(where: { $0.merchantTag == event.id }) { return .duplicate }
            } catch let error as UsageBillingError where error.code == .configuration {
                throw error
            } catch {
                return .retryable(
                    RetryableReason(
                        .transport,
                        message:
                            "could not check whether Recurly already has \(event.id) (\(error)); not posting again until it can"
                    ),
                    retryAfter: nil)
            }
        }
        let request = HTTPRequest(
            method: .post,
            url: URLBuilder.url(
                base: settings.endpoint,
                path: RecurlyClient.usagePath(subscription: prepared.subscription, addOn: prepared.addOn)),
            headers: reader.headers(json: true), body: prepared.body.encoded())
        switch try await client.sendForDelivery(request) {
        case .failed(let outcome): return outcome
        case .response(let response):
            if (200..<300).contains(response.status) { return .accepted }
            return try RecurlyClient.outcome(for: response, now: clock.now())
        }
    }
}
