import Foundation
import StripeUsage
import Testing
import UsageBilling
import UsageBillingTesting

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()
    .appending(path: "Providers/Stripe/Fixtures")

func replay(_ name: String) throws -> ReplayHTTPClient {
    ReplayHTTPClient(try Fixture.load(fixtures.appending(path: name)).exchanges)
}

let testSettings = StripeSettings(secretKey: "sk_test_REDACTED")

@Suite("Stripe meters, summaries, adjustments")
struct StripeAPITests {
    @Test func createsAMeter() async throws {
        let client = try replay("api/meter_create.json")
        let meter = try await StripeClient(settings: testSettings, client: client)
            .createMeter(
                displayName: "Api Requests", eventName: "api_requests", customerKey: "stripe_customer_id",
                valueKey: "value")
        #expect(meter.eventName == "api_requests" && meter.status == "active" && meter.eventTimeWindow == nil)
        #expect(client.failures.isEmpty && client.unconsumed.isEmpty)
    }

    @Test func listsMetersAcrossPages() async throws {
        let client = try replay("api/meters_list_paginated.json")
        let meters = try await StripeClient(settings: testSettings, client: client).listMeters(pageSize: 2)
        #expect(meters.map(\.eventName) == ["api_requests", "storage_gb", "seats"])
        #expect(client.failures.isEmpty && client.unconsumed.isEmpty)
    }

    @Test func deactivatesAndReactivates() async throws {
        let client = try replay("api/meter_deactivate_reactivate.json")
        let stripe = try StripeClient(settings: testSettings, client: client)
        #expect(try await stripe.deactivateMeter(id: "mtr_test_61Q8nQMqIFK9fRQmr41CMAXJrFdZ5MnA").status == "inactive")
        #expect(try await stripe.reactivateMeter(id: "mtr_test_61Q8nQMqIFK9fRQmr41CMAXJrFdZ5MnA").status == "active")
        #expect(client.failures.isEmpty && client.unconsumed.isEmpty)
    }

    @Test func unknownMeterIsNotFoundWithTheRequestID() async throws {
        let client = try replay("api/meter_not_found.json")
        await #expect {
            try await StripeClient(settings: testSettings, client: client).meter(id: "mtr_missing")
        } throws: { error in
            guard let error = error as? UsageBillingError else { return false }
            return error.code == .notFound && error.providerRequestID != nil
                && error.message.contains("No such billing meter")
        }
    }

    @Test func readsEventSummariesAcrossPages() async throws {
        let client = try replay("api/event_summaries_paginated.json")
        let day = Date(timeIntervalSince1970: 1_795_132_800)
        let summaries = try await StripeClient(settings: testSettings, client: client).eventSummaries(
            meterID: "mtr_test_61Q8nQMqIFK9fRQmr41CMAXJrFdZ5MnA", customer: "cus_QrAcme0001",
            start: day, end: day.addingTimeInterval(3 * 3600), window: .hour, pageSize: 2)
        #expect(summaries.count == 3)
        #expect(summaries.map(\.aggregatedValue).reduce(0, +) == 32.5)
        #expect(client.failures.isEmpty && client.unconsumed.isEmpty)
    }

    @Test(arguments: [
        (1_795_132_800.0 + 60, StripeSummaryWindow?.some(.day), "start_time"),
        (1_795_132_800.0 + 1800, StripeSummaryWindow?.some(.hour), "start_time"),
        (1_795_132_800.0 + 30, StripeSummaryWindow?.none, "start_time"),
    ])
    func misalignedSummaryRangesAreRejectedBeforeAsking(
        _ start: Double, _ window: StripeSummaryWindow?, _ field: String
    ) async throws {
        let client = ReplayHTTPClient([])
        await #expect {
            try await StripeClient(settings: testSettings, client: client).eventSummaries(
                meterID: "m", customer: "c", start: Date(timeIntervalSince1970: start),
                end: Date(timeIntervalSince1970: 1_795_132_800 + 2 * 86_400), window: window)
        } throws: { error in
            guard let error = error as? UsageBillingError else { return false }
            return error.code == .invalidInput && error.field == field && error.fix != nil
        }
        #expect(client.received.isEmpty)
    }

    @Test(arguments: [StripeMeteringAPI.v1, .v2])
    func cancelsAMeterEventByIdentifier(_ api: StripeMeteringAPI) async throws {
        let client = try replay(api == .v1 ? "api/adjustment_cancel_v1.json" : "api/adjustment_cancel_v2.json")
        var settings = testSettings
        settings.api = api
        let adjustment = try await StripeClient(settings: settings, client: client)
            .cancelMeterEvent(eventName: "api_requests", identifier: "019aa0f4-7c00-7000-8000-000000000001")
        #expect(adjustment.status == "pending" && adjustment.type == "cancel")
        #expect((adjustment.id != nil) == (api == .v2))
        #expect(client.failures.isEmpty && client.unconsumed.isEmpty)
    }
}

@Suite("Stripe asynchronous error reports")
struct StripeErrorReportTests {
    @Test func parsesTheDocumentedEventIntoPerIdentifierRejections() throws {
        let data = try Data(contentsOf: fixtures.appending(path: "webhooks/error_report_triggered.json"))
        let report = try StripeMeterErrorReport.parse(data)
        #expect(report.type == "v1.billing.meter.error_report_triggered")
        #expect(report.meterID == "mtr_test_61RCjiqdTDC91zgip41IqPCzPnxqqSVc")
        #expect(report.rejections.count == 1)
        #expect(report.rejections[0].identifier == "cb447754-6880-45c2-8f2f-ef19b6ce81e9")
        #expect(report.rejections[0].reason.code == "meter_event_no_customer_defined")
        #expect(report.rejections[0].reason.field == "customer")
        #expect(report.rejections[0].reason.message.contains("stripe_customer_id"))
        #expect(report.unattributed.isEmpty)
    }

    /// Stripe's event for events whose name has no meter: it carries no `related_object`, and
    /// its samples become rejections with Stripe's code; the rest are counted.
    @Test func parsesNoMeterFoundWithoutAMeter() throws {
        let data = try Data(contentsOf: fixtures.appending(path: "webhooks/no_meter_found.json"))
        let report = try StripeMeterErrorReport.parse(data)
        #expect(report.type == "v1.billing.meter.no_meter_found")
        #expect(report.meterID == nil)
        #expect(
            report.rejections.map(\.identifier) == [
                "019aa0f4-7c00-7000-8000-000000000101", "019aa0f4-7c00-7000-8000-000000000102",
            ])
        #expect(
            report.rejections.allSatisfy { $0.reason.code == "no_meter" && $0.reason.message.contains("api_requets") })
        #expect(report.unattributed == ["no_meter": 1])
    }

    @Test func countsFailuresTheSamplesDoNotName() throws {
        let body = #"""
            {"type":"v1.billing.meter.no_meter_found","data":{"developer_message_summary":"5 invalid","validation_start":"2026-11-20T11:00:00Z","validation_end":"2026-11-20T11:10:00Z",
             "reason":{"error_count":5,"error_types":[{"code":"no_meter","error_count":5,"sample_errors":[{"error_message":"No meter","request":{"identifier":"a"}}]}]}}}
            """#
        let report = try StripeMeterErrorReport.parse(Data(body.utf8))
        #expect(report.rejections.map(\.identifier) == ["a"])
        #expect(report.unattributed == ["no_meter": 4])
        #expect(report.meterID == nil)
    }

    @Test(arguments: [
        "not json", #"{"type":"invoice.paid"}"#, #"{"type":"v1.billing.meter.error_report_triggered","data":{}}"#,
    ])
    func rejectsOtherPayloadsClearly(_ body: String) {
        #expect {
            try StripeMeterErrorReport.parse(Data(body.utf8))
        } throws: { ($0 as? UsageBillingError)?.code == .invalidInput && ($0 as? UsageBillingError)?.fix != nil }
    }
}

@Suite("Stripe sink behaviour")
struct StripeSinkTests {
    @Test func retriesReuseIdentifierAndIdempotencyKey() async throws {
        let fixture = try Fixture.load(fixtures.appending(path: "rate_limited_with_retry_after.json"))
        let client = ReplayHTTPClient(fixture.exchanges)
        let clock = TestClock(now: fixture.now ?? Date())
        let sink = try StripeSink(
            settings: StripeSettings.decode(fixture.settings ?? .null), client: client, clock: clock)
        let reports = try await RetryingDeliverer(sink: sink, policy: RetryPolicy(maxAttempts: 3), clock: clock)
            .deliver(fixture.events)
        #expect(reports.first?.final == .accepted)
        let requests = client.received
        #expect(requests.count == 2)
        let id = fixture.events[0].id
        for request in requests {
            #expect(request.headers["Idempotency-Key"] == id)
            let form = FormEncoding.decode(String(decoding: request.body ?? Data(), as: UTF8.self))
            #expect(form.first { $0.0 == "identifier" }?.1 == id)
        }
        #expect(requests.first?.body == requests.last?.body)
        #expect(clock.sleeps.count == 1)
        #expect(clock.sleeps.first.map { $0 >= .seconds(2) } == true)
    }

    @Test func streamSessionIsReusedThenRefreshedBeforeItExpires() async throws {
        let fixture = try Fixture.load(fixtures.appending(path: "single_event_accepted--v2_stream.json"))
        let session = fixture.exchanges[0], stream = fixture.exchanges[1]
        // First delivery creates a session; a second one a minute later reuses it; 14 minutes
        // later (within the 60 s refresh margin of expires_at) a new session is created first.
        let client = ReplayHTTPClient([session, stream, stream, session, stream])
        let clock = TestClock(now: fixture.now ?? Date())
        let sink = try StripeSink(
            settings: StripeSettings.decode(fixture.settings ?? .null), client: client, clock: clock)
        #expect(try await sink.deliver(fixture.events) == [.accepted])
        clock.advance(by: .seconds(60))
        #expect(try await sink.deliver(fixture.events) == [.accepted])
        clock.advance(by: .seconds(13 * 60 + 30))
        #expect(try await sink.deliver(fixture.events) == [.accepted])
        #expect(client.failures.isEmpty && client.unconsumed.isEmpty)
        #expect(
            client.received.map { URL(string: $0.url)?.path ?? "" } == [
                "/v2/billing/meter_event_session", "/v2/billing/meter_event_stream", "/v2/billing/meter_event_stream",
                "/v2/billing/meter_event_session", "/v2/billing/meter_event_stream",
            ])
    }

    @Test func aRealLookingKeyNeverReachesAnErrorMessage() async throws {
        let key = "sk_" + "test_" + String(repeating: "Zq9", count: 9)
        let fixture = try Fixture.load(fixtures.appending(path: "unauthorized_is_configuration_error.json"))
        var exchange = fixture.exchanges[0]
        exchange.request.headers["Authorization"] = "*"
        let sink = try StripeSink(
            settings: StripeSettings(
                secretKey: Secret(key), eventName: "api_requests",
                customers: ["acme": "cus_QrAcme0001"]),
            client: ReplayHTTPClient([exchange]), clock: TestClock(now: fixture.now ?? Date()))
        do {
            _ = try await sink.deliver(fixture.events)
            Issue.record("expected a configuration error")
        } catch let error as UsageBillingError {
            #expect(error.code == .configuration && error.field == "secret_key")
            #expect(!error.description.contains(key))
            #expect(!"\(sink.settings)".contains(key))
            // The sink keeps its request headers made once: printing or dumping it shows no key.
            #expect(!"\(sink)".contains(key) && !String(reflecting: sink).contains(key))
            var dumped = ""
            dump(sink, to: &dumped)
            #expect(!dumped.contains(key))
        }
    }

    @Test(arguments: [
        (#"{"secret_key":"sk_test_REDACTED","colour":"blue"}"#, "colour"),
        (#"{"api":"v1"}"#, "secret_key"),
        (#"{"secret_key":"sk_test_REDACTED","api":"v3"}"#, "api"),
        (#"{"secret_key":"sk_test_REDACTED","endpoint":"ftp://x"}"#, "endpoint"),
        (#"{"secret_key":"sk_test_REDACTED","stream_batch_size":500}"#, "stream_batch_size"),
        (#"{"secret_key":""}"#, "secret_key"),
    ])
    func badSettingsNameTheField(_ json: String, _ field: String) throws {
        let value = try JSONDecoder().decode(JSONValue.self, from: Data(json.utf8))
        #expect {
            _ = try StripeSink(settings: StripeSettings.decode(value), client: ReplayHTTPClient([]))
        } throws: { error in
            guard let error = error as? UsageBillingError else { return false }
            return error.field == field && error.fix != nil
        }
    }

    @Test func capabilitiesFollowTheAPIAndMode() throws {
        var settings = testSettings
        let v1 = try StripeSink(settings: settings, client: ReplayHTTPClient([]))
        #expect(v1.capabilities.maxBatchSize == 1)
        let rate = try #require(v1.capabilities.rateLimit?.requestsPerSecond)
        #expect(
            rate < StripeSink.documentedRate.test && rate >= StripeSink.documentedRate.test * 0.8,
            "a test key paces just under the sandbox's 25 requests/s")
        #expect(v1.capabilities.acceptedWindow?.maxAge == .seconds(35 * 86_400))
        settings.api = .v2Stream
        #expect(try StripeSink(settings: settings, client: ReplayHTTPClient([])).capabilities.maxBatchSize == 100)
        // 64 requests in flight (the routing config's max_in_flight overrides it): 8 would cap a
        // lane near 50 calls/s at Stripe's latency.
        #expect(v1.capabilities.maxConcurrentRequests == 64)
    }
}
