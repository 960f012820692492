import Foundation
import UsageBilling

/// Delivers usage events to OpenMeter as CloudEvents 1.0: `POST /api/v1/events` (self-hosted,
/// OpenMeter Cloud; 204) or, with `api: v3` (Kong Konnect Metering & Billing, `region:`),
/// `POST /v3/openmeter/events` (202). Both take the same events and content types.
///
/// - `specversion: "1.0"`, `id` = event id, `source` = the configured stable source (OpenMeter
///   dedupes by (source, id)), `type` = event name, `subject` = customer, `time`, and `data`
///   with the properties and the quantity (as a decimal string under `value` by default).
/// - One event is sent as `application/cloudevents+json`, several as
///   `application/cloudevents-batch+json`, the Content-Type exactly (OpenMeter's v1 handler
///   refuses any parameter such as `; charset=utf-8`).
/// - 204 (v1) or 202 (v3) = accepted (a repeated (source, id) is dropped silently, so it reads as accepted).
///   RFC 7807 problem bodies become rejections with their `detail`; 429 is retryable with
///   `Retry-After`; 5xx retryable (earlier events of the batch may be in; dedup makes the
///   resend safe); 401/403 throw `.configuration`.
/// - OpenMeter applies no timestamp window at ingest and checks meter values asynchronously.
public struct OpenMeterSink: UsageSink {
    public let name: String
    /// The settings in use (the key prints masked).
    public let settings: OpenMeterSettings
    private let client: any HTTPClient
    private let clock: any UsageClock

    /// The content type of one event.
    public static let singleContentType = "application/cloudevents+json"
    /// The content type of a batch.
    public static let batchContentType = "application/cloudevents-batch+json"

    /// A sink; throws `.invalidInput`/`.configuration` naming a bad setting.
    public init(
        settings: OpenMeterSettings, client: any HTTPClient, clock: any UsageClock = SystemClock(),
        name: String = "openmeter"
    ) throws {
        try settings.validate()
        self.name = name
        self.settings = settings
        self.client = client
        self.clock = clock
    }

    /// Up to `max_batch_size` events per request; no timestamp window; dedup by (source, id)
    /// for 32 days on Cloud.
    public var capabilities: SinkCapabilities {
        SinkCapabilities(
            maxBatchSize: settings.maxBatchSize, acceptedWindow: nil,
            idempotency: .providerDeduplicates(window: .seconds(32 * 86_400)), aggregation: settings.aggregate,
            maxConcurrentRequests: 8)
    }

    /// Validates, sends the valid events in one request, and returns one outcome per event in order.
    public func deliver(_ batch: [UsageEvent]) async throws -> [DeliveryOutcome] {
        try await PreparedDelivery.deliver(batch, maxPerRequest: settings.maxBatchSize, prepare: prepare, send: send)
    }

    func prepare(_ event: UsageEvent) -> Result<EncodedJSON, RejectionReason> {
        let event = settings.aggregate == nil ? event : AggregateInfo.asEvent(event)
        if event.id.isEmpty { return .failure(.local("id_missing", field: "id", "the event has no id")) }
        if settings.mapping.providerCustomer(for: event).isEmpty {
            return .failure(
                .local("subject_missing", field: "customer", "OpenMeter requires a subject; the event has no customer"))
        }
        // Numbers as decimal strings: OpenMeter parses numeric strings for SUM/MAX/... meters,
        // and a string keeps every digit.
        let mapped: EventMapping.Mapped
        switch settings.mapping.map(event, style: .numbersAsStrings, provider: "OpenMeter", advice: "") {
        case .failure(let reason): return .failure(reason)
        case .success(let m): mapped = m
        }
        // Written straight to bytes, keys in byte order (what encodeObject would sort them to).
        return .success(
            JSONValue.encodeObject([
                ("data", .object(mapped.properties)), ("id", .string(event.id)), ("source", .string(settings.source)),
                ("specversion", .string("1.0")), ("subject", .string(mapped.customer)),
                ("time", .string(RFC3339.format(event.timestamp))), ("type", .string(mapped.eventName)),
            ]))
    }

    private func send(_ events: [EncodedJSON]) async throws -> DeliveryOutcome {
        let single = events.count == 1
        var headers: HeaderFields = ["Content-Type": single ? Self.singleContentType : Self.batchContentType]
        if let key = settings.apiKey { headers["Authorization"] = "Bearer \(key.exposedValue)" }
        let body = single ? events[0].data : JSONValue.encodeArray(events)
        let request = HTTPRequest(
            method: .post, url: URLBuilder.url(base: settings.endpoint, path: settings.eventsPath),
            headers: headers, body: body)
        let response: HTTPResponse
        switch try await client.sendForDelivery(request) {
        case .failed(let outcome): return outcome
        case .response(let r): response = r
        }
        let problem = JSONValue.parse(response.body)
        let detail =
            problem?["detail"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 } ?? problem?["title"]?.stringValue
            ?? "OpenMeter answered HTTP \(response.status)"
        let requestID = problem?["instance"]?.stringValue
        switch response.status {
        case 200..<300:
            return .accepted
        case 401, 403:
            throw UsageBillingError(
                .configuration, "OpenMeter refused the token (\(response.status): \(detail))", fix: "check api_key",
                field: "api_key", providerRequestID: requestID)
        default:
            if let retry = response.standardRetryableOutcome(now: clock.now(), message: detail, requestID: requestID) {
                return retry
            }
            return .rejected(
                RejectionReason(
                    code: "http_\(response.status)", message: detail, origin: .provider,
                    providerRequestID: requestID, httpStatus: response.status))
        }
    }
}

/// The name before every provider folder had the same shape (`<Name>Sink`, `<Name>Client`).
@available(*, deprecated, renamed: "OpenMeterSink")
public typealias OpenMeterIngestSink = OpenMeterSink
