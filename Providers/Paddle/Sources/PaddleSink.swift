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
    public init(
        settings: PaddleSettings, client: any HTTPClient, clock: any UsageClock = SystemClock(), name: String = "paddle"
    ) throws {
        try settings.validate()
        self.name = name
        self.settings = settings
        self.client = client
        self.clock = clock
        self.reader = PaddleClient(settings: settings, client: client)
    }

    /// One charge per request, aggregated, checked before a retry, paced at `requests_per_minute`.
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
            return .failure(
                .local(
                    "quantity_negative", field: "quantity",
                    "Paddle charges quantities ≥ 1; \(DecimalFormat.plain(usage)) is negative: events were voided from a window Paddle had already charged. By hand: credit the customer for \(DecimalFormat.plain(-usage)) with an adjustment on the transaction that charged the window"
                ))
        }
        var scaled = usage / settings.unitsPerQuantity
        var whole = Decimal()
        let mode: NSDecimalNumber.RoundingMode
        switch settings.rounding {
        case .reject:
            guard DecimalFormat.isWhole(scaled) else {
                let per =
                    settings.unitsPerQuantity == 1
                    ? ""
                    : " (\(DecimalFormat.plain(usage)) ÷ units_per_quantity \(DecimalFormat.plain(settings.unitsPerQuantity)))"
                return .failure(
                    .local(
                        "quantity_not_whole", field: "quantity",
                        "Paddle charges whole quantities; \(DecimalFormat.plain(scaled))\(per) is fractional. Set rounding: up, down or nearest, or change units_per_quantity"
                    ))
            }
            mode = .plain
        case .up: mode = .up
        case .down: mode = .down
        case .nearest: mode = .plain
        }
        NSDecimalRound(&whole, &scaled, 0, mode)
        if whole == 0 { return .success(nil) }
        guard whole <= Decimal(settings.maxQuantity) else {
            return .failure(
                .local(
                    "quantity_above_price_range", field: "quantity",
                    "quantity \(DecimalFormat.plain(whole)) is above the price's maximum \(settings.maxQuantity) (Paddle answers transaction_item_quantity_out_of_range). Raise the price's quantity.maximum in Paddle (up to 999999999) and max_quantity here, or bill per more units with units_per_quantity"
                ))
        }
        return .success(NSDecimalNumber(decimal: whole).intValue)
    }

    /// The request body for one charge, or nil (zero: nothing to bill), or a local rejection.
    func prepare(_ event: UsageEvent) -> Result<
        (target: String, price: String, quantity: Int, body: JSONValue)?, RejectionReason
    > {
        let target = settings.mapping.providerCustomer(for: event)
        if target.isEmpty {
            return .failure(
                .local(
                    "customer_missing", field: "customer", "the event has no customer; map it to a Paddle subscription")
            )
        }
        guard let price = settings.price(for: event.name) else {
            return .failure(
                .local(
                    "price_missing", field: "price_id",
                    "no Paddle price for '\(event.name)'; add it to prices or set price_id"))
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
            var body: [String: JSONValue] = [
                "effective_from": .string(settings.effectiveFrom), "items": .array([item]),
            ]
            if let failure = settings.onPaymentFailure { body["on_payment_failure"] = .string(failure) }
            return .success((target, price, quantity, .object(body)))
        case .transaction:
            let info = AggregateInfo(event)
            var custom: [String: JSONValue] = [
                "ub_charge_key": .string(event.id), "ub_meter": .string(event.name),
                "ub_window_start": .string(RFC3339.format(info.windowStart)),
            ]
            if let end = info.windowEnd { custom["ub_window_end"] = .string(RFC3339.format(end)) }
            var body: [String: JSONValue] = [
                "items": .array([item]), "customer_id": .string(target),
                "collection_mode": .string(settings.collectionMode), "custom_data": .object(custom),
            ]
            if let address = settings.addressID { body["address_id"] = .string(address) }
            if settings.collectionMode == "manual" {
                body["billing_details"] = .object([
                    "payment_terms": .object([
                        "interval": .string("day"), "frequency": .number(Double(settings.paymentTermsDays)),
                    ])
                ])
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
                if try await reader.findCharge(
                    key: event.id, target: prepared.target, price: prepared.price, quantity: prepared.quantity,
                    since: AggregateInfo(event).windowStart)
                {
                    return .duplicate
                }
            } catch let error as UsageBillingError where error.code == .configuration {
                throw error
            } catch {
                return .retryable(
                    RetryableReason(
                        .transport,
                        message:
                            "could not check whether Paddle already has charge \(event.id) (\(error)); not charging again until it can"
                    ),
                    retryAfter: nil)
            }
        }
        let path =
            settings.mode == .transaction
            ? "/transactions" : "/subscriptions/\(URLBuilder.pathSegment(prepared.target))/charge"
        var headers = reader.headers
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "X-Transaction-ID", value: event.id)
        let request = HTTPRequest(
            method: .post, url: URLBuilder.url(base: settings.endpoint, path: path), headers: headers,
            body: prepared.body.encoded())
        switch try await client.sendForDelivery(request) {
        case .failed(let outcome): return outcome
        case .response(let response):
            if (200..<300).contains(response.status) { return .accepted }
            return try PaddleClient.outcome(for: response, now: clock.now())
        }
    }
}
