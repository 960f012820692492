import Foundation
import MetronomeUsage
import OpenMeterUsage
import OrbUsage
import PaddleUsage
import Testing
import UsageBilling
import UsageBillingTesting
import UsageTestSupport

/// A provider under batch test: how to build its sink with a batch limit, what success looks
/// like, and how to read event ids back out of a request body.
struct BatchProvider: Sendable, CustomTestStringConvertible {
    let name: String
    let limit: Int
    let success: HTTPResponse
    let makeSink: @Sendable (any HTTPClient, any UsageClock) throws -> any UsageSink
    let ids: @Sendable (HTTPRequest) -> [String]
    var testDescription: String { "\(name) (limit \(limit))" }

    static let all: [BatchProvider] = [
        BatchProvider(
            name: "Orb", limit: 7, success: .json(200, .object(["validation_failed": .array([])])),
            makeSink: {
                try OrbSink(settings: OrbSettings(apiKey: "orb_REDACTED", maxBatchSize: 7), client: $0, clock: $1)
            },
            ids: { body($0)?["events"]?.arrayValue?.compactMap { $0["idempotency_key"]?.stringValue } ?? [] }),
        BatchProvider(
            name: "Metronome", limit: 100, success: HTTPResponse(status: 200),
            makeSink: {
                try MetronomeSink(settings: MetronomeSettings(apiKey: "metronome_REDACTED"), client: $0, clock: $1)
            },
            ids: { body($0)?.arrayValue?.compactMap { $0["transaction_id"]?.stringValue } ?? [] }),
        BatchProvider(
            name: "OpenMeter", limit: 5, success: HTTPResponse(status: 204),
            makeSink: {
                try OpenMeterSink(
                    settings: OpenMeterSettings(apiKey: "om_REDACTED", maxBatchSize: 5), client: $0, clock: $1)
            },
            ids: { request in
                guard let json = body(request) else { return [] }
                return json.arrayValue?.compactMap { $0["id"]?.stringValue }
                    ?? [json["id"]?.stringValue].compactMap { $0 }
            }),
        BatchProvider(
            name: "Paddle usage events", limit: 6,
            success: .json(201, .object(["data": .array([]), "meta": .object(["request_id": .string("r")])])),
            makeSink: {
                try PaddleUsageSink(
                    settings: PaddleUsageSettings(apiKey: "pdl_sdbx_apikey_REDACTED", maxBatchSize: 6), client: $0,
                    clock: $1)
            },
            ids: { body($0)?["events"]?.arrayValue?.compactMap { $0["event_key"]?.stringValue } ?? [] }),
    ]

    static func body(_ request: HTTPRequest) -> JSONValue? { JSONValue.parse(request.body ?? Data()) }
}

/// Answers every request with a fixed response, failing the first `failFirst` with 503, and
/// keeps what it received.
final class ScriptedClient: HTTPClient {
    private let state = Locked<[HTTPRequest]>([])
    private let success: HTTPResponse
    private let failFirst: Int
    init(success: HTTPResponse, failFirst: Int = 0) {
        self.success = success
        self.failFirst = failFirst
    }
    func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        let n = state.with {
            $0.append(request); return $0.count
        }
        return n <= failFirst ? .json(503, .object(["message": .string("unavailable")])) : success
    }
    var received: [HTTPRequest] { state.with { $0 } }
}

@Suite("Batch splitting at the edges")
struct BatchEdgeTests {
    static let now = Date(timeIntervalSince1970: 1_795_176_000)

    static func events(_ n: Int) -> [UsageEvent] {
        (0..<n).map { i in
            UsageEvent(
                id: String(format: "evt-%05d", i), name: "api_request", customer: "cust-\(i % 3)",
                timestamp: now.addingTimeInterval(-Double(n - i)), quantity: Decimal(i % 7 + 1))
        }
    }

    @Test(arguments: BatchProvider.all, [-1, 0, 1, 9])
    func splitsKeepOrderAndIds(_ provider: BatchProvider, _ offset: Int) async throws {
        // offset -1: limit−1 · 0: limit · 1: limit+1 · 9: 10×limit
        let n = offset == 9 ? provider.limit * 10 : provider.limit + offset
        let client = ScriptedClient(success: provider.success)
        let clock = TestClock(now: Self.now)
        let sink = try provider.makeSink(client, clock)
        let events = Self.events(n)
        let reports = try await RetryingDeliverer(sink: sink, policy: .none, clock: clock).deliver(events)
        #expect(reports.allSatisfy { $0.final == .accepted })
        let requests = client.received
        #expect(requests.count == (n + provider.limit - 1) / provider.limit)
        let sent = requests.map(provider.ids)
        #expect(sent.allSatisfy { !$0.isEmpty && $0.count <= provider.limit })
        #expect(sent.flatMap { $0 } == events.map(\.id), "ids are sent once each, in order")
    }

    @Test(arguments: BatchProvider.all)
    func aRetryResendsTheSameIdsInTheSameBody(_ provider: BatchProvider) async throws {
        let client = ScriptedClient(success: provider.success, failFirst: 1)
        let clock = TestClock(now: Self.now)
        let sink = try provider.makeSink(client, clock)
        let events = Self.events(provider.limit)
        let reports = try await RetryingDeliverer(sink: sink, policy: RetryPolicy(maxAttempts: 3), clock: clock)
            .deliver(events)
        #expect(reports.allSatisfy { $0.history.count == 2 && $0.final == .accepted })
        let requests = client.received
        #expect(requests.count == 2)
        #expect(requests.first?.body == requests.last?.body)
        #expect(requests.first?.headers["Idempotency-Key"] == requests.last?.headers["Idempotency-Key"])
        #expect(requests.map(provider.ids).allSatisfy { $0 == events.map(\.id) })
    }

    @Test func openMeterContentTypesAreExact() async throws {
        let client = ScriptedClient(success: HTTPResponse(status: 204))
        let sink = try OpenMeterSink(
            settings: OpenMeterSettings(apiKey: "om_REDACTED", maxBatchSize: 2), client: client,
            clock: TestClock(now: Self.now))
        _ = try await sink.deliver(Array(Self.events(3).prefix(2)))
        _ = try await sink.deliver([Self.events(1)[0]])
        #expect(
            client.received.map { $0.headers["Content-Type"] } == [
                "application/cloudevents-batch+json", "application/cloudevents+json",
            ])
    }

    @Test func metronomeSendsNoIdempotencyKeyHeader() async throws {
        let client = ScriptedClient(success: HTTPResponse(status: 200))
        let sink = try MetronomeSink(
            settings: MetronomeSettings(apiKey: "metronome_REDACTED"), client: client, clock: TestClock(now: Self.now))
        _ = try await sink.deliver(Self.events(3))
        #expect(client.received.count == 1)
        #expect(client.received.first?.headers["Idempotency-Key"] == nil)
        #expect(client.received.first?.headers["Accept"] == "*/*")
    }

    @Test(arguments: [
        ("Orb", #"{"api_key":"orb_REDACTED","max_batch_size":0}"#, "max_batch_size"),
        ("Orb", #"{"api_key":"orb_REDACTED","backfill":true}"#, "grace_period_hours"),
        ("Orb", #"{"api_key":"orb_REDACTED","customer_id_kind":"internal"}"#, "customer_id_kind"),
        ("Orb", #"{"api_key":"orb_REDACTED","subscriptions":{"acme":""}}"#, "subscriptions"),
        ("Metronome", #"{"api_key":"metronome_REDACTED","max_batch_size":101}"#, "max_batch_size"),
        ("Metronome", #"{"apikey":"x"}"#, "apikey"),
        (
            "Metronome", #"{"api_key":"metronome_REDACTED","billable_metrics":{"api_request":"M","tokens":"M"}}"#,
            "billable_metrics"
        ),
        ("OpenMeter", #"{"source":"x"}"#, "api_key"),
        ("OpenMeter", #"{"api_key":"om_REDACTED","meter_slugs":{"api_request":""}}"#, "meter_slugs"),
        ("OpenMeter", #"{"api_key":"om_REDACTED","endpoint":"openmeter.cloud"}"#, "endpoint"),
    ])
    func badSettingsNameTheField(_ provider: String, _ json: String, _ field: String) throws {
        let value = try JSONDecoder().decode(JSONValue.self, from: Data(json.utf8))
        let client = ScriptedClient(success: HTTPResponse(status: 200))
        #expect {
            switch provider {
            case "Orb": _ = try OrbSink(settings: OrbSettings.decode(value), client: client)
            case "Metronome": _ = try MetronomeSink(settings: MetronomeSettings.decode(value), client: client)
            default: _ = try OpenMeterSink(settings: OpenMeterSettings.decode(value), client: client)
            }
        } throws: { error in
            guard let error = error as? UsageBillingError else { return false }
            return error.field == field && error.fix != nil
        }
    }
}
