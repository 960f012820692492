import Foundation
import UsageBilling

/// Delivers usage events to Orb's `POST /v1/ingest`.
///
/// - event `id` → `idempotency_key`; a request-level `Idempotency-Key` derived from the batch's
///   ids stays the same across retries of that batch.
/// - `properties` always present, flat; the quantity goes in as a JSON number under the mapped
///   property (default `quantity`); exactly one of `external_customer_id` / `customer_id`.
/// - 200 `validation_failed` and 400 `validation_errors` reject the listed events; after a 400
///   the valid rest is sent again at once. 413 splits the batch. 408/409/429/5xx are retryable
///   with `Retry-After`; 401/403 throw `.configuration`.
/// - A batch never carries one `idempotency_key` twice (Orb rejects the whole batch when the
///   bodies differ): a repeat with the same body shares its first copy's outcome, one with a
///   different body is rejected locally (`idempotency_key_reused`).
/// - Checked locally: at most 5 minutes ahead; older than `grace_period_hours` (when set) is
///   rejected, or goes through a backfill when `backfill: true`; quantities a JSON number
///   cannot carry exactly are rejected.
/// - Orb accepts a repeated `idempotency_key` silently (200, no marker), so a re-delivery reads
///   as `.accepted`; both mean "billed once".
public struct OrbSink: UsageSink {
    public let name: String
    /// The settings in use (the key prints masked).
    public let settings: OrbSettings
    private let client: any HTTPClient
    let orb: OrbClient
    private let clock: any UsageClock

    /// Orb's allowance for clock drift.
    public static let maxFutureSkew: Duration = .seconds(5 * 60)

    /// A sink; throws `.invalidInput`/`.configuration` naming a bad setting.
    public init(
        settings: OrbSettings, client: any HTTPClient, clock: any UsageClock = SystemClock(), name: String = "orb"
    ) throws {
        try settings.validate()
        self.name = name
        self.settings = settings
        self.client = client
        self.clock = clock
        self.orb = try OrbClient(settings: settings, client: client)
    }

    /// Up to `max_batch_size` events per request; 5 minutes ahead at most; dedup by
    /// `idempotency_key`; paced under the mode's documented requests and events a minute.
    public var capabilities: SinkCapabilities {
        SinkCapabilities(
            maxBatchSize: settings.maxBatchSize,
            acceptedWindow: acceptedWindow,
            idempotency: .providerDeduplicates(window: nil),
            rateLimit: settings.rateLimit,
            aggregation: settings.aggregate,
            maxConcurrentRequests: 8)
    }

    /// Events within the grace period (or, with backfill, within a year), at most 5 minutes ahead.
    /// Without `grace_period_hours`, only the future bound is known.
    var acceptedWindow: AcceptedTimeWindow {
        let maxAge: Duration =
            switch (settings.gracePeriodHours, settings.backfill) {
            case (_, true): Self.maxBackfillAge
            case (let grace?, false): .seconds(grace * 3600)
            case (nil, false): .seconds(100 * 365 * 86_400)
            }
        return AcceptedTimeWindow(maxAge: maxAge, maxFutureSkew: Self.maxFutureSkew)
    }

    /// How far back the backfill path reaches here.
    public static let maxBackfillAge: Duration = .seconds(365 * 86_400)

    /// Validates, sends the current events in one request and old ones through a backfill, and
    /// returns one outcome per event in order.
    public func deliver(_ batch: [UsageEvent]) async throws -> [DeliveryOutcome] {
        var outcomes = [DeliveryOutcome?](repeating: nil, count: batch.count)
        var current: [(Int, Prepared)] = []
        var old: [(Int, Prepared)] = []
        // Orb rejects a whole batch that repeats an idempotency_key with a different body, so a
        // batch carries each key once: a repeat with the same body shares the first one's
        // outcome, a repeat with another body is refused here.
        var first: [String: (index: Int, json: EncodedJSON)] = [:]
        var repeats: [(index: Int, of: Int)] = []
        let now = clock.now()
        for (index, event) in batch.enumerated() {
            switch prepare(event, now: now) {
            case .failure(let reason): outcomes[index] = .rejected(reason)
            case .success(let (prepared, isOld)):
                if let earlier = first[prepared.id] {
                    if earlier.json == prepared.json {
                        repeats.append((index, earlier.index))
                    } else {
                        outcomes[index] = .rejected(
                            .local(
                                "idempotency_key_reused", field: "id",
                                "the id \(prepared.id) is in this batch twice with different content; Orb would reject the whole batch. Give each event its own id"
                            ))
                    }
                    continue
                }
                first[prepared.id] = (index, prepared.json)
                if isOld { old.append((index, prepared)) } else { current.append((index, prepared)) }
            }
        }
        if !current.isEmpty {
            for (index, outcome) in try await ingest(current, backfillID: nil) { outcomes[index] = outcome }
        }
        if !old.isEmpty {
            for (index, outcome) in try await ingestThroughBackfill(old, events: batch) { outcomes[index] = outcome }
        }
        for (index, of) in repeats { outcomes[index] = outcomes[of] }
        return outcomes.map { $0 ?? .possiblyDelivered }
    }

    // MARK: Preparing

    /// One event's wire form and its idempotency key (the event id).
    struct Prepared: Sendable {
        let id: String
        let json: EncodedJSON
    }

    func prepare(_ event: UsageEvent, now: Date) -> Result<(Prepared, Bool), RejectionReason> {
        let event = settings.aggregate == nil ? event : AggregateInfo.asEvent(event)
        var isOld = false
        if let grace = settings.gracePeriodHours, now.timeIntervalSince(event.timestamp) > grace * 3600 {
            guard settings.backfill else {
                return .failure(
                    .local(
                        "timestamp_too_old", field: "timestamp",
                        "Orb refuses events older than the account's grace period (\(grace.formatted()) h); this one is from \(RFC3339.format(event.timestamp)). Set backfill: true on this route to send it through a backfill"
                    ))
            }
            isOld = true
        }
        if let reason = LocalValidation.checkTimestamp(event, window: acceptedWindow, now: now, provider: "Orb") {
            return .failure(reason)
        }
        if let reason = LocalValidation.checkLength(event.id, max: 255, field: "idempotency_key") {
            return .failure(reason)
        }
        let mapped: EventMapping.Mapped
        switch settings.mapping.map(event, style: .typed, provider: "Orb", advice: "Round it or record a larger unit") {
        case .failure(let reason): return .failure(reason)
        case .success(let m): mapped = m
        }
        // Written straight to bytes (encodeObject puts the keys in order).
        let json = JSONValue.encodeObject([
            (settings.customerIDKind == .external ? "external_customer_id" : "customer_id", .string(mapped.customer)),
            ("event_name", .string(mapped.eventName)), ("idempotency_key", .string(event.id)),
            ("properties", .object(mapped.properties)), ("timestamp", .string(RFC3339.format(event.timestamp))),
        ])
        return .success((Prepared(id: event.id, json: json), isOld))
    }

    // MARK: Sending

    private func ingest(_ events: [(Int, Prepared)], backfillID: String?) async throws -> [(Int, DeliveryOutcome)] {
        let ids = events.map(\.1.id)
        let key = EventID.derived(from: ["orb-ingest", backfillID ?? ""] + ids)
        let body = JSONValue.encodeObject(key: "events", array: events.map(\.1.json))
        let query = backfillID.map { [("backfill_id", $0)] } ?? []
        let request = HTTPRequest(
            method: .post, url: URLBuilder.url(base: settings.endpoint, path: "/ingest", query: query),
            headers: orb.headers(idempotencyKey: key), body: body)
        let response: HTTPResponse
        switch try await client.sendForDelivery(request) {
        case .failed(let outcome): return events.map { ($0.0, outcome) }
        case .response(let r): response = r
        }
        let problem = OrbProblem(response.body)
        let rejectedKeys = Dictionary(
            problem.validationErrors.map { ($0.key, $0.messages) }, uniquingKeysWith: { $0 + $1 })
        func rejection(_ messages: [String]) -> DeliveryOutcome {
            .rejected(
                RejectionReason(
                    code: "validation_failed",
                    message: messages.isEmpty ? "Orb refused this event" : messages.joined(separator: "; "),
                    origin: .provider, httpStatus: response.status))
        }
        switch response.status {
        case 200..<300:
            return zip(events, ids).map { item, id in (item.0, rejectedKeys[id].map(rejection) ?? .accepted) }
        case 400 where !rejectedKeys.isEmpty:
            // Orb refused the request for the listed events; send the valid rest again now.
            let rest = zip(events, ids).filter { rejectedKeys[$0.1] == nil }.map(\.0)
            var result = zip(events, ids).compactMap { item, id in rejectedKeys[id].map { (item.0, rejection($0)) } }
            if !rest.isEmpty, rest.count < events.count { result += try await ingest(rest, backfillID: backfillID) }
            return result
        case 401, 403:
            throw UsageBillingError(
                .configuration,
                "Orb refused the API key (\(response.status): \(problem.message(status: response.status)))",
                fix: "check api_key", field: "api_key")
        case 404 where problem.code == "404-url-not-found":
            throw UsageBillingError(
                .configuration, "Orb has no ingest endpoint at \(settings.endpoint)",
                fix: "set endpoint to https://api.withorb.com/v1 (or the emulator)", field: "endpoint")
        case 413 where events.count > 1:
            let half = events.count / 2
            return try await ingest(Array(events[..<half]), backfillID: backfillID)
                + ingest(Array(events[half...]), backfillID: backfillID)
        default:
            if let retry = response.standardRetryableOutcome(
                now: clock.now(), message: problem.message(status: response.status))
            {
                return events.map { ($0.0, retry) }
            }
            let reason = RejectionReason(
                code: problem.code ?? "http_\(response.status)", message: problem.message(status: response.status),
                origin: .provider, httpStatus: response.status)
            return events.map { ($0.0, .rejected(reason)) }
        }
    }

    /// Events older than the grace period: one backfill per customer spanning their timestamps
    /// (Orb backfills cover at most 31 days by default, so wider spans are split), ingest with
    /// `backfill_id`, then close it so the usage counts. A failure leaves the events retryable.
    private func ingestThroughBackfill(_ old: [(Int, Prepared)], events: [UsageEvent]) async throws -> [(
        Int, DeliveryOutcome
    )] {
        var result: [(Int, DeliveryOutcome)] = []
        let byCustomer = Dictionary(grouping: old) { settings.mapping.providerCustomer(for: events[$0.0]) }
        for customer in byCustomer.keys.sorted() {
            let items = (byCustomer[customer] ?? []).sorted { events[$0.0].timestamp < events[$1.0].timestamp }
            var groups: [[(Int, Prepared)]] = []
            for item in items {
                if let first = groups.last?.first,
                    events[item.0].timestamp.timeIntervalSince(events[first.0].timestamp) < 31 * 86_400 - 3600
                {
                    groups[groups.count - 1].append(item)
                } else {
                    groups.append([item])
                }
            }
            for group in groups {
                let times = group.map { events[$0.0].timestamp }
                let start = Date(
                    timeIntervalSince1970: ((times.min() ?? Date()).timeIntervalSince1970 / 3600).rounded(.down) * 3600)
                let end = Date(
                    timeIntervalSince1970: (((times.max() ?? Date()).timeIntervalSince1970 + 1) / 3600).rounded(.up)
                        * 3600)
                let ids = group.map { events[$0.0].id }
                do {
                    let backfill = try await orb.createBackfill(
                        start: start, end: end,
                        externalCustomerID: settings.customerIDKind == .external ? customer : nil,
                        customerID: settings.customerIDKind == .orb ? customer : nil,
                        idempotencyKey: EventID.derived(from: ["orb-backfill", customer] + ids))
                    var outcomes: [(Int, DeliveryOutcome)] = []
                    for chunk in Batcher.batches(group, maxBatchSize: settings.maxBatchSize) {
                        outcomes += try await ingest(chunk, backfillID: backfill.id)
                    }
                    if outcomes.allSatisfy({ $0.1.isFinal }) { _ = try await orb.closeBackfill(id: backfill.id) }
                    result += outcomes
                } catch let error as UsageBillingError where error.code == .transport || error.code == .timeout {
                    let outcome = DeliveryOutcome.retryable(
                        RetryableReason(.serverError, message: "Orb backfill: \(error.message)"), retryAfter: nil)
                    result += group.map { ($0.0, outcome) }
                }
            }
        }
        return result
    }
}

/// The name before every provider folder had the same shape (`<Name>Sink`, `<Name>Client`).
@available(*, deprecated, renamed: "OrbSink")
public typealias OrbIngestSink = OrbSink
