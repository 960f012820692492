import Foundation
import OrbUsage
import StripeUsage
import Testing
import UsageBilling
import UsageBillingCurl
import UsageBillingTesting
import UsageEmulator

/// The emulator's Stripe meter lifecycle and adjustments and Orb's backfills, grace period and
/// event search, driven through the adapters' own clients, as a user testing against
/// `usage-billing emulate` would.
@Suite("Emulator: Stripe adjustments and meters, Orb backfills and search", .timeLimit(.minutes(1)))
struct EmulatorAPITests {
    private func day(_ offset: Double, from now: Date) -> Date {
        Date(timeIntervalSince1970: ((now.timeIntervalSince1970 / 86_400).rounded(.down) + offset) * 86_400)
    }

    /// Chargebee's usage events are unique on (usage_timestamp, subscription_id,
    /// deduplication_id): a repeat of all three is dropped, one deduplication_id at two times is
    /// two events, and an event older than 12 hours is a failed event.
    @Test func chargebeeUsageEventsAreUniqueOnTimestampSubscriptionAndDedupID() async throws {
        let emulator = try await UsageEmulator.start()
        let http = try CurlHTTPClient()
        defer { http.shutdown() }
        let base = try #require(emulator.endpoints["chargebee"]?["ingest_endpoint"])
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        func event(_ id: String, _ ts: Int64) -> JSONValue {
            .object([
                "deduplication_id": .string(id), "subscription_id": .string("sub_1"),
                "usage_timestamp": .number(Double(ts)),
                "properties": .object(["quantity": .string("1")]),
            ])
        }
        let body = JSONValue.object([
            "events": .array([
                event("d-1", now - 60_000), event("d-1", now - 60_000), event("d-1", now - 30_000),
                event("d-2", now - 13 * 3_600_000),
            ])
        ]).encoded()
        let response = try await http.send(
            HTTPRequest(
                method: .post, url: base + "/api/v2/batch/usage_events",
                headers: [
                    "Authorization": "Basic " + Data("cb_REDACTED:".utf8).base64EncodedString(),
                    "Content-Type": "application/json",
                ], body: body))
        #expect(response.status == 200)
        let failed = JSONValue.parse(response.body)?["failed_events"]?.arrayValue ?? []
        #expect(
            failed.count == 1 && failed.first?["deduplication_id"]?.stringValue == "d-2"
                && failed.first?["error_code"]?.stringValue == "invalid_usage_timestamp")
        #expect(
            await emulator.accepted("chargebee").map(\.key) == ["d-1", "d-1"],
            "the repeat dropped, the same id at another time kept")
        await emulator.shutdown()
    }

    /// Cancelling an event takes it out of the meter's summaries (v1 form and v2 JSON
    /// adjustments alike); 24 hours after Stripe received it, a cancel is refused and changes nothing.
    @Test(arguments: [StripeMeteringAPI.v1, .v2])
    func cancelledEventsLeaveTheSummaries(_ api: StripeMeteringAPI) async throws {
        let clock = Locked(Date())
        let emulator = try await UsageEmulator.start(now: { clock.with { $0 } })
        let http = try CurlHTTPClient()
        defer { http.shutdown() }
        let settings = StripeSettings(
            secretKey: "sk_test_REDACTED", api: api, endpoint: emulator.baseURL + "/stripe",
            customers: ["acme": "cus_acme"])
        let sink = try StripeSink(settings: settings, client: http)
        let start = clock.with { $0 }
        let events = (0..<3).map {
            UsageEvent(
                id: "evt-\(api)-\($0)", name: "api_requests", customer: "acme",
                timestamp: start.addingTimeInterval(-120), quantity: Decimal($0 + 1) * 10)
        }
        #expect(try await sink.deliver(events) == [.accepted, .accepted, .accepted])
        let billing = try StripeClient(settings: settings, client: http)
        func total() async throws -> Double {
            try await billing.eventSummaries(
                meterID: "mtr_emu_api_requests", customer: "cus_acme", start: day(-1, from: start),
                end: day(1, from: start), window: .day
            )
            .reduce(0) { $0 + $1.aggregatedValue }
        }
        #expect(try await total() == 60)
        let adjustment = try await billing.cancelMeterEvent(eventName: "api_requests", identifier: events[1].id)
        #expect(adjustment.status == "pending" && adjustment.type == "cancel" && (adjustment.id != nil) == (api == .v2))
        #expect(try await total() == 40, "the cancelled 20 no longer counts")
        clock.with { $0 = $0.addingTimeInterval(25 * 3600) }
        do {
            _ = try await billing.cancelMeterEvent(eventName: "api_requests", identifier: events[2].id)
            Issue.record("a cancel 25 hours after Stripe received the event was taken")
        } catch let error as UsageBillingError {
            #expect(error.httpStatus == 400 && error.message.contains("invalid_cancel_configuration"), "\(error)")
        }
        #expect(try await total() == 40, "past 24 hours a cancel is refused and changes nothing")
        await emulator.shutdown()
    }

    /// A deactivated meter takes no events: v2 refuses them with `archived_meter` (a rejection
    /// naming it), v1 takes the request and counts nothing; reactivated, it counts again.
    /// Pairs of v1 calls with one Idempotency-Key, sent concurrently over two connections: one
    /// of each pair is taken, the other replays its answer (`Idempotent-Replayed`), never
    /// "already exists". (The emulator checks, records and keeps the answer in one locked step,
    /// so two event-loop threads cannot both miss the key; this test rarely lands in that gap,
    /// and checks the outcome.)
    @Test func aKeyRacingOnTwoConnectionsIsReplayedNotRefused() async throws {
        let emulator = try await UsageEmulator.start()
        let http = try CurlHTTPClient(configuration: .init(threads: 2))
        defer { http.shutdown() }
        let now = Int(Date().timeIntervalSince1970) - 60
        let answers = try await withThrowingTaskGroup(of: HTTPResponse.self) { group in
            for i in 0..<400 {
                let id = "race-\(i / 2)"
                let body = Data(
                    FormEncoding.encode([
                        ("event_name", "api_requests"), ("payload[stripe_customer_id]", "cus_race"),
                        ("payload[value]", "1"),
                        ("identifier", id), ("timestamp", String(now)),
                    ]).utf8)
                let request = HTTPRequest(
                    method: .post, url: emulator.baseURL + "/stripe/v1/billing/meter_events",
                    headers: [
                        "Authorization": "Bearer sk_test_REDACTED", "Content-Type": "application/x-www-form-urlencoded",
                        "Idempotency-Key": id,
                    ],
                    body: body)
                group.addTask { try await http.send(request) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(answers.allSatisfy { $0.status == 200 }, "\(Set(answers.map(\.status)))")
        #expect(answers.filter { $0.headers["Idempotent-Replayed"] == "true" }.count == 200)
        #expect(await emulator.accepted("stripe").count == 200)
        await emulator.shutdown()
    }

    /// A v1 Idempotency-Key replays its first answer (even for other parameters) within 24 hours;
    /// after that Stripe may have pruned it, and the emulator has: the key runs as a new request.
    @Test func aKeyOlderThan24HoursRunsAsANewRequest() async throws {
        let clock = Locked(Date())
        let emulator = try await UsageEmulator.start(now: { clock.with { $0 } })
        let http = try CurlHTTPClient()
        defer { http.shutdown() }
        func send(_ identifier: String) async throws -> HTTPResponse {
            let at = Int(clock.with { $0 }.timeIntervalSince1970) - 60
            let body = Data(
                FormEncoding.encode([
                    ("event_name", "api_requests"), ("payload[stripe_customer_id]", "cus_keys"),
                    ("payload[value]", "1"),
                    ("identifier", identifier), ("timestamp", String(at)),
                ]).utf8)
            return try await http.send(
                HTTPRequest(
                    method: .post, url: emulator.baseURL + "/stripe/v1/billing/meter_events",
                    headers: [
                        "Authorization": "Bearer sk_test_REDACTED", "Content-Type": "application/x-www-form-urlencoded",
                        "Idempotency-Key": "key-1",
                    ], body: body))
        }
        func identifier(_ response: HTTPResponse) -> String? {
            JSONValue.parse(response.body)?["identifier"]?.stringValue
        }
        let first = try await send("evt-a")
        #expect(first.status == 200 && identifier(first) == "evt-a" && first.headers["Idempotent-Replayed"] == nil)
        clock.with { $0 = $0.addingTimeInterval(23 * 3600) }
        let replayed = try await send("evt-b")
        #expect(
            replayed.headers["Idempotent-Replayed"] == "true" && identifier(replayed) == "evt-a",
            "within 24 hours: the first answer")
        clock.with { $0 = $0.addingTimeInterval(2 * 3600) }
        let fresh = try await send("evt-c")
        #expect(
            fresh.status == 200 && fresh.headers["Idempotent-Replayed"] == nil && identifier(fresh) == "evt-c",
            "after 24 hours: a new request")
        #expect(await emulator.accepted("stripe").map(\.key) == ["evt-a", "evt-c"])
        await emulator.shutdown()
    }

    @Test func deactivatedMetersTakeNoEvents() async throws {
        let emulator = try await UsageEmulator.start()
        let http = try CurlHTTPClient()
        defer { http.shutdown() }
        func settings(_ api: StripeMeteringAPI) -> StripeSettings {
            StripeSettings(
                secretKey: "sk_test_REDACTED", api: api, endpoint: emulator.baseURL + "/stripe",
                customers: ["acme": "cus_acme"])
        }
        let billing = try StripeClient(settings: settings(.v1), client: http)
        let meter = try await billing.createMeter(displayName: "API requests", eventName: "api_requests")
        #expect(meter.status == "active")
        let off = try await billing.deactivateMeter(id: meter.id)
        #expect(off.status == "inactive")
        #expect(try await billing.meter(id: meter.id).status == "inactive")
        #expect(try await billing.listMeters(status: "active").isEmpty)
        let now = Date()
        func event(_ id: String) -> UsageEvent {
            UsageEvent(
                id: id, name: "api_requests", customer: "acme", timestamp: now.addingTimeInterval(-60), quantity: 5)
        }
        let v2 = try await StripeSink(settings: settings(.v2), client: http).deliver([event("while-off-v2")])
        guard case .rejected(let reason)? = v2.first else {
            Issue.record("v2 took an event for an inactive meter: \(v2)"); return
        }
        #expect(reason.code == "archived_meter", "\(reason)")
        let v1 = try await StripeSink(settings: settings(.v1), client: http).deliver([event("while-off-v1")])
        #expect(v1 == [.accepted], "v1 answers before Stripe checks the meter")
        #expect(try await billing.reactivateMeter(id: meter.id).status == "active")
        #expect(try await StripeSink(settings: settings(.v2), client: http).deliver([event("after")]) == [.accepted])
        let summaries = try await billing.eventSummaries(
            meterID: meter.id, customer: "cus_acme", start: day(-1, from: now), end: day(1, from: now), window: .day)
        #expect(summaries.reduce(0) { $0 + $1.aggregatedValue } == 5, "only the event sent after reactivating counts")
        await #expect(throws: UsageBillingError.self) { try await billing.deactivateMeter(id: "mtr_emu_unknown") }
        await emulator.shutdown()
    }

    /// Given the meters that exist, an event name without one is refused as Stripe does: v2 with
    /// `no_meter`, v1 taken and counted nowhere; once the meter is created, it counts. A reset
    /// keeps the meters the emulator started with.
    @Test func unknownEventNamesHaveNoMeterWhenMetersAreGiven() async throws {
        let emulator = try await UsageEmulator.start(
            options: EmulationOptions().with(EmulatedStripe.Meters(["api_requests"])))
        let http = try CurlHTTPClient()
        defer { http.shutdown() }
        func sink(_ api: StripeMeteringAPI) throws -> StripeSink {
            try StripeSink(
                settings: StripeSettings(
                    secretKey: "sk_test_REDACTED", api: api, endpoint: emulator.baseURL + "/stripe"), client: http)
        }
        let now = Date()
        func event(_ id: String, _ name: String) -> UsageEvent {
            UsageEvent(id: id, name: name, customer: "cus_acme", timestamp: now.addingTimeInterval(-60), quantity: 2)
        }
        let v2 = try await sink(.v2).deliver([event("g-v2", "gpu_seconds"), event("a-v2", "api_requests")])
        guard case .rejected(let reason)? = v2.first else {
            Issue.record("v2 took an event with no meter: \(v2)"); return
        }
        #expect(reason.code == "no_meter" && v2.last == .accepted, "\(v2)")
        #expect(
            try await sink(.v1).deliver([event("g-v1", "gpu_seconds")]) == [.accepted],
            "v1 answers before Stripe looks for the meter")
        #expect(await emulator.accepted("stripe").map(\.key) == ["a-v2"])
        _ = try await StripeClient(
            settings: StripeSettings(secretKey: "sk_test_REDACTED", endpoint: emulator.baseURL + "/stripe"),
            client: http
        )
        .createMeter(displayName: "GPU seconds", eventName: "gpu_seconds")
        #expect(try await sink(.v2).deliver([event("g-v2-again", "gpu_seconds")]) == [.accepted])
        emulator.reset("stripe")
        #expect(
            try await sink(.v2).deliver([event("g-after-reset", "gpu_seconds")]).first != .accepted,
            "the created meter is gone after a reset")
        #expect(
            try await sink(.v2).deliver([event("a-after-reset", "api_requests")]) == [.accepted],
            "the meters it started with stay")
        await emulator.shutdown()
    }

    /// With a 12-hour grace period, an event three days old is refused by plain ingest, goes
    /// through a backfill with `backfill: true`, and counts only once the backfill is closed;
    /// event search finds both events by their idempotency keys.
    @Test func oldEventsGoThroughABackfill() async throws {
        let emulator = try await UsageEmulator.start(
            options: EmulationOptions().with(EmulatedOrb.GracePeriod(.seconds(12 * 3600))))
        let http = try CurlHTTPClient()
        defer { http.shutdown() }
        let endpoint = emulator.baseURL + "/orb/v1"
        let now = Date()
        let recent = UsageEvent(
            id: "orb-recent", name: "api_request", customer: "acme", timestamp: now.addingTimeInterval(-60), quantity: 5
        )
        let old = UsageEvent(
            id: "orb-old", name: "api_request", customer: "acme", timestamp: now.addingTimeInterval(-3 * 86_400),
            quantity: 7)

        // Plain ingest of the old event: Orb's validation refuses it.
        let plain = try await http.send(
            HTTPRequest(
                method: .post, url: endpoint + "/ingest",
                headers: ["Authorization": "Bearer orb_REDACTED", "Content-Type": "application/json"],
                body: Data(
                    #"{"events":[{"event_name":"api_request","external_customer_id":"acme","idempotency_key":"raw-old","properties":{"quantity":1},"timestamp":"\#(RFC3339.format(old.timestamp))"}]}"#
                        .utf8)))
        let failed = JSONValue.parse(plain.body)?["validation_failed"]?.arrayValue ?? []
        #expect(
            plain.status == 200 && failed.count == 1 && failed.first?["idempotency_key"]?.stringValue == "raw-old",
            "\(plain.bodyText)")
        #expect(failed.first?["validation_errors"]?.arrayValue?.first?.stringValue?.contains("backfill") == true)

        let settings = OrbSettings(apiKey: "orb_REDACTED", endpoint: endpoint, gracePeriodHours: 12, backfill: true)
        let sink = try OrbSink(settings: settings, client: http)
        #expect(try await sink.deliver([recent, old]) == [.accepted, .accepted])
        let orb = try OrbClient(settings: settings, client: http)
        let usage = try await orb.subscriptionUsage(
            subscriptionID: "acme", start: day(-4, from: now), end: day(1, from: now))
        #expect(
            usage.flatMap(\.windows).reduce(0) { $0 + $1.quantity } == 12, "both count: the sink closed its backfill")
        let found = try await orb.searchEvents(
            ids: ["orb-recent", "orb-old", "raw-old", "never-sent"], start: day(-4, from: now),
            end: now.addingTimeInterval(60))
        #expect(Set(found.map(\.id)) == ["orb-recent", "orb-old"])

        // A backfill left open counts nothing; closing it counts its events once.
        let open = try await orb.createBackfill(
            start: day(-6, from: now), end: day(-5, from: now), externalCustomerID: "acme", idempotencyKey: "bf-open")
        #expect(open.status == "pending")
        let again = try await orb.createBackfill(
            start: day(-6, from: now), end: day(-5, from: now), externalCustomerID: "acme", idempotencyKey: "bf-open")
        #expect(again.id == open.id, "a retried create answers the same backfill")
        let into = try await http.send(
            HTTPRequest(
                method: .post, url: endpoint + "/ingest?backfill_id=\(open.id)",
                headers: ["Authorization": "Bearer orb_REDACTED", "Content-Type": "application/json"],
                body: Data(
                    #"{"events":[{"event_name":"api_request","external_customer_id":"acme","idempotency_key":"bf-1","properties":{"quantity":3},"timestamp":"\#(RFC3339.format(day(-6, from: now).addingTimeInterval(3600)))"},{"event_name":"api_request","external_customer_id":"acme","idempotency_key":"bf-outside","properties":{"quantity":100},"timestamp":"\#(RFC3339.format(day(-4, from: now)))"}]}"#
                        .utf8)))
        #expect(
            JSONValue.parse(into.body)?["validation_failed"]?.arrayValue?.compactMap {
                $0["idempotency_key"]?.stringValue
            } == ["bf-outside"], "\(into.bodyText)")
        func total() async throws -> Double {
            try await orb.subscriptionUsage(subscriptionID: "acme", start: day(-7, from: now), end: day(1, from: now))
                .flatMap(\.windows).reduce(0) { $0 + $1.quantity }
        }
        #expect(try await total() == 12, "an open backfill's events do not count yet")
        let closed = try await orb.closeBackfill(id: open.id)
        #expect(closed.status == "reflected" && closed.eventsIngested == 1)
        #expect(try await total() == 15)
        #expect(try await orb.closeBackfill(id: open.id).eventsIngested == 1, "closing twice counts once")
        #expect(try await total() == 15)
        await emulator.shutdown()
    }
}

/// The control API a running `usage-billing emulate` serves under `/_emulator/`.
@Suite("Emulator control API")
struct EmulatorControlTests {
    @Test func faultsAtRunTimeStatsResetAndClock() async throws {
        let emulator = try await UsageEmulator.start()
        let http = try CurlHTTPClient()
        defer { http.shutdown() }
        func control(_ method: HTTPMethod, _ path: String, _ body: String? = nil) async throws -> (Int, JSONValue?) {
            let r = try await http.send(
                HTTPRequest(
                    method: method, url: emulator.baseURL + "/_emulator/" + path, headers: [:],
                    body: body.map { Data($0.utf8) }))
            return (r.status, JSONValue.parse(r.body))
        }
        let sink = try StripeSink(
            settings: StripeSettings(secretKey: "sk_test_REDACTED", endpoint: emulator.baseURL + "/stripe"),
            client: http)
        let event = UsageEvent(
            id: "ctl-1", name: "api_requests", customer: "cus_acme", timestamp: Date().addingTimeInterval(-60),
            quantity: 3)

        // Every Stripe write fails with a 500 while the plan is set, and goes through once it is cleared.
        #expect(try await control(.put, "faults/stripe", "500=1").0 == 200)
        guard case .retryable? = try await sink.deliver([event]).first else {
            Issue.record("the 500 plan did not apply"); return
        }
        #expect(try await control(.delete, "faults/stripe").0 == 200)
        #expect(try await sink.deliver([event]) == [.accepted])

        let (status, stats) = try await control(.get, "stats")
        #expect(status == 200)
        #expect(
            stats?["providers"]?["stripe"]?["requests"] == .number(2)
                && stats?["providers"]?["stripe"]?["accepted"] == .number(1), "\(String(describing: stats))")
        #expect(stats?["providers"]?["stripe"]?["injected"]?["500"] == .number(1), "\(String(describing: stats))")

        // Reset forgets the event and its identifier: the same event is accepted again, not a duplicate.
        #expect(try await control(.post, "reset?provider=stripe").0 == 200)
        #expect(await emulator.accepted("stripe").isEmpty)
        #expect(try await sink.deliver([event]) == [.accepted])

        // Bad input is named.
        let bad = try await control(.put, "faults/stripe", "500=2")
        #expect(bad.0 == 400 && bad.1?["error"]?.stringValue?.contains("500=2") == true, "\(String(describing: bad.1))")
        #expect(try await control(.put, "faults/acme", "500=0.1").0 == 404)
        #expect(try await control(.get, "nothing").0 == 404)

        // The clock moves forward: the event Stripe took now is past its 24-hour cancel window.
        let moved = try await control(.post, "clock?advance=25h")
        #expect(moved.0 == 200 && moved.1?["ahead_seconds"] == .number(90_000), "\(String(describing: moved.1))")
        let late = try await sink.void(event, deliveredAt: Date(), correctionID: "ctl-void")
        guard case .rejected(let reason) = late else {
            Issue.record("a cancel after the clock moved 25 h was taken: \(late)"); return
        }
        #expect(reason.code == "cancel_window_passed" && reason.origin == .provider)
        let badClock = try await control(.post, "clock?advance=tomorrow")
        #expect(badClock.0 == 400 && badClock.1?["error"]?.stringValue?.contains("25h") == true)
        #expect(try await control(.post, "clock").0 == 400)
        await emulator.shutdown()
    }
}
