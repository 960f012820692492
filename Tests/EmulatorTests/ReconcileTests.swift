import Foundation
import Testing
import UsageBilling
import UsageBillingCurl
import UsageBillingProviders
import UsageBillingTesting
import UsageEmulator
@testable import UsageReconciliation
import UsageRouting
import UsageSpool
import UsageTestSupport

private func spoolPath(_ tag: String) -> String {
    FileManager.default.temporaryDirectory.appending(path: "ub-reconcile-\(tag)-\(UUID().uuidString).spool").path
}

private func utcDay(_ date: Date) -> Date {
    Date(timeIntervalSince1970: (date.timeIntervalSince1970 / 86_400).rounded(.down) * 86_400)
}

/// Every provider on the emulator, Chargebee and Recurly billing per hour.
private func config(_ emulator: UsageEmulator, routes: String, extra: [String: String] = [:]) throws -> RoutingConfig {
    var settings = extra
    for kind in ["chargebee", "recurly"] {
        settings[kind] = (["aggregate: { window: 1h, grace: 1m }"] + [extra[kind]].compactMap { $0 }).joined(
            separator: ", ")
    }
    return try emulatorConfig(emulator, routes: routes, extra: settings)
}

private let quick = RetryPolicy(
    baseDelay: .milliseconds(2), maxDelay: .milliseconds(40), maxAttempts: 100_000, maxElapsed: .seconds(120))

/// What a reconciliation test runs: an emulator, a config of its providers, a curl client and a
/// pipeline on a fresh spool.
private struct Setup {
    let emulator: UsageEmulator
    let routing: RoutingConfig
    let client: CurlHTTPClient
    let pipeline: UsagePipeline

    init(
        _ tag: String, on emulator: UsageEmulator, routes: String, extra: [String: String] = [:],
        client: CurlHTTPClient.Configuration = .init()
    ) throws {
        self.emulator = emulator
        routing = try config(emulator, routes: routes, extra: extra)
        self.client = try CurlHTTPClient(configuration: client)
        pipeline = try UsagePipeline(config: routing, spoolPath: spoolPath(tag), client: self.client, policy: quick)
    }

    /// A reconciler of the pipeline's spool against the emulator.
    func reconciler(through reads: (any HTTPClient)? = nil) throws -> Reconciler {
        try Reconciler(config: routing, spool: pipeline.spool, client: reads ?? client)
    }

    /// Stops the client and the emulator.
    func close() async {
        client.shutdown()
        await emulator.shutdown()
    }
}

@Suite("Reconciliation against the emulator", .timeLimit(.minutes(3)))
struct ReconcileTests {
    /// Dual-write 10,000 events to Orb and Metronome; Metronome fails every write for a while:
    /// reconcile shows its lane behind (mismatches naming the queued events) while Orb matches,
    /// then, once Metronome is back and the lane caught up, no mismatch at all.
    @Test func dualWriteLagShowsThenClears() async throws {
        let setup = try Setup(
            "lag", on: try await UsageEmulator.start(faults: ["orb": .mixed(0.1, timeouts: 0)], seed: 8),
            routes: "  - { events: [tokens], to: orb, shadow: metronome }", client: .init(timeout: .milliseconds(500)))
        let (emulator, pipeline) = (setup.emulator, setup.pipeline)
        let now = Date()
        let customers = ["acme", "globex", "initech", "umbrella"]
        let events = (0..<10_000).map { i in
            UsageEvent(
                id: "rec-\(i)", name: "tokens", customer: customers[i % 4],
                timestamp: now.addingTimeInterval(-Double(i) * 10 - 60), quantity: Decimal(i % 5 + 1))
        }
        try await pipeline.record(events)
        var outage = FaultPlan()
        outage.unavailable = 1
        emulator.setFaults("metronome", outage)
        let delivery = Task { try await pipeline.flush() }
        _ = try await eventually { try await pipeline.spool.queuedCount(lane: "orb/tokens") == 0 }
        #expect(try await pipeline.spool.queuedCount(lane: "orb/tokens") == 0, "orb delivered while metronome was down")

        let options = ReconcileOptions(from: now.addingTimeInterval(-200_000), to: now, granularity: .day)
        let reconciler = try setup.reconciler()
        let during = try await reconciler.run(options)
        let lagging = during.mismatches
        #expect(!lagging.isEmpty)
        #expect(
            lagging.allSatisfy { $0.provider == "metronome" && $0.queued > 0 && $0.note.contains("lane behind") },
            "\(lagging)")
        #expect(during.rows.filter { $0.provider == "orb" }.allSatisfy { $0.status == .match })
        #expect(!during.isClean)

        emulator.setFaults("metronome", FaultPlan())
        try await delivery.value
        let after = try await reconciler.run(options)
        #expect(after.mismatches.isEmpty, "\(after.table())")
        #expect(after.isClean)
        let total = events.reduce(Decimal(0)) { $0 + $1.quantity }
        for provider in ["orb", "metronome"] {
            #expect(
                after.rows.filter { $0.provider == provider }.reduce(Decimal(0)) { $0 + ($1.reported ?? 0) } == total,
                "\(provider) reports every event once")
        }
        print("reconcile: \(lagging.count) metronome window(s) behind during the outage, then \(after.verdict)")
        await setup.close()
    }

    /// Read-back answered 429 with `Retry-After: 1` (the emulator's plan after delivery):
    /// reconcile retries on the retry engine's curve, waits what the provider asked each time,
    /// and still reports a clean match; the error it retried kept its status.
    /// OpenMeter and Metronome have no delete or amend: a correction is a compensating event with
    /// a negative quantity and an id of its own (docs/corrections-research.md). Both take one, and
    /// their meters, read back through their own APIs, sum it with the original.
    @Test func aNegativeCompensatingEventReducesSumMeters() async throws {
        let setup = try Setup(
            "compensate", on: try await UsageEmulator.start(),
            routes: "  - { events: [api_request], to: openmeter, shadow: [metronome] }")
        let at = Date().addingTimeInterval(-600)
        try await setup.pipeline.record([
            UsageEvent(id: "comp-1", name: "api_request", customer: "acme", timestamp: at, quantity: 10),
            UsageEvent(
                id: "comp-1-correction-1", name: "api_request", customer: "acme", timestamp: at, quantity: -3),
        ])
        try await setup.pipeline.flush()
        let lanes = try await setup.pipeline.spool.status()
        #expect(lanes.allSatisfy { $0.delivered == 2 && $0.dead.isEmpty }, "\(lanes)")
        let report = try await setup.reconciler().run(ReconcileOptions(from: at.addingTimeInterval(-3600), to: Date()))
        for provider in ["openmeter", "metronome"] {
            let reported = report.rows.filter { $0.provider == provider }.reduce(Decimal(0)) { $0 + ($1.reported ?? 0) }
            #expect(reported == 7, "\(provider) sums the correction: \(report.table())")
        }
        #expect(report.isClean, "\(report.table())")
        await setup.close()
    }

    /// A void recorded after delivery: the ledger counts the event nowhere, the provider still
    /// bills it, so reconcile shows the difference and says a correction is pending there, with
    /// its reason; a void withheld before sending shows neither.
    @Test func aPendingVoidShowsAsPendingWithItsReason() async throws {
        let setup = try Setup(
            "void", on: try await UsageEmulator.start(), routes: "  - { events: [api_request], to: openmeter }")
        let at = Date().addingTimeInterval(-600)
        try await setup.pipeline.record([
            UsageEvent(id: "void-1", name: "api_request", customer: "acme", timestamp: at, quantity: 10),
            UsageEvent(id: "void-2", name: "api_request", customer: "acme", timestamp: at, quantity: 4),
            UsageEvent(id: "void-3", name: "api_request", customer: "acme", timestamp: at, quantity: 5),
        ])
        try await setup.pipeline.void(["void-2"], reason: "bad deploy")
        try await setup.pipeline.flush()
        let options = ReconcileOptions(from: at.addingTimeInterval(-3600), to: Date())
        let clean = try await setup.reconciler().run(options)
        #expect(clean.isClean && clean.pendingCorrections.isEmpty, "withheld: never sent \(clean.table())")
        try await setup.pipeline.void(["void-1"], reason: "test customer")
        let report = try await setup.reconciler().run(options)
        #expect(!report.isClean)
        #expect(
            report.mismatches.map(\.difference) == [10] && report.mismatches.first?.recorded == 5, "\(report.table())")
        #expect(report.pendingCorrections.count == 1)
        #expect(
            report.pendingCorrections.first?.contains("openmeter: 1 void(s) pending (test customer)") == true,
            "\(report.pendingCorrections)")
        #expect(report.table().contains("correction: openmeter"))
        // Both corrections are listed with where they stand, in the table, the JSON and the page.
        let listed = report.corrections.map { "\($0.eventID) \($0.state.label) \($0.reason)" }.sorted()
        #expect(listed == ["void-1 pending test customer", "void-2 withheld bad deploy"], "\(listed)")
        #expect(report.table().contains("corrections: openmeter: 1 withheld, 1 pending"), "\(report.table())")
        #expect(try ReconcileReport(json: report.json()).corrections == report.corrections)
        await setup.close()
    }

    @Test func readBack429sAreRetriedAfterTheirRetryAfter() async throws {
        let setup = try Setup(
            "readback-429", on: try await UsageEmulator.start(seed: 11),
            routes: "  - { events: [api_request], to: openmeter }")
        let now = Date()
        try await setup.pipeline.record(
            (0..<10).map {
                UsageEvent(
                    id: "ra-\($0)", name: "api_request", customer: "acme",
                    timestamp: now.addingTimeInterval(-Double($0) - 60), quantity: 3)
            })
        try await setup.pipeline.flush()
        setup.emulator.setFaults("openmeter", try FaultPlan.parse("429=0.4,reads=1"))
        let started = ContinuousClock.now
        let report = try await setup.reconciler().run(ReconcileOptions(from: now.addingTimeInterval(-3600), to: now))
        let elapsed = ContinuousClock.now - started
        let injected = setup.emulator.statistics.injected["openmeter"]?["429"] ?? 0
        #expect(report.isClean, "\(report.table())")
        #expect(injected > 0, "the plan refused some reads")
        #expect(elapsed >= .seconds(injected), "each 429's Retry-After was waited for: \(injected) in \(elapsed)")
        let refused = UsageBillingError.forFailedCall(
            HTTPResponse(status: 429, headers: ["Retry-After": "3"], body: Data()), message: "slow down",
            credentialField: "api_key")
        #expect(refused.code == .transport && refused.httpStatus == 429 && refused.retryAfter == .seconds(3))
        var rng = SeededGenerator(seed: 1)
        #expect(
            Reconciler.readBackRetries.delay(
                attemptsMade: 1, elapsed: .zero, retryAfter: refused.retryAfter, using: &rng) == .seconds(3))
        #expect(
            Reconciler.readBackRetries.delay(attemptsMade: 6, elapsed: .zero, retryAfter: nil, using: &rng) == nil,
            "six attempts at most")
        await setup.close()
    }

    /// globex mapped to acme's Orb id: both are billed on one Orb customer. Reconcile names it.
    @Test func aCustomerMappedToAnotherCustomersIdIsNamed() async throws {
        let setup = try Setup(
            "mapping", on: try await UsageEmulator.start(), routes: "  - { events: [tokens], to: orb, shadow: stripe }",
            extra: [
                "orb": "customers: { acme: orb-acme, globex: orb-acme }",
                "stripe": "customers: { acme: cus_A, globex: cus_G }",
            ])
        let pipeline = setup.pipeline
        let now = Date()
        try await pipeline.record(
            (0..<20).map {
                UsageEvent(
                    id: "m-\($0)", name: "tokens", customer: $0 % 2 == 0 ? "acme" : "globex",
                    timestamp: now.addingTimeInterval(-Double($0) - 60), quantity: 2)
            })
        try await pipeline.flush()
        let report = try await setup.reconciler().run(ReconcileOptions(from: now.addingTimeInterval(-3600), to: now))
        #expect(!report.isClean)
        #expect(report.mappingProblems.count == 1)
        let problem = try #require(report.mappingProblems.first)
        #expect(
            problem.contains("acme") && problem.contains("globex") && problem.contains("orb-acme")
                && problem.contains("orb"), "\(problem)")
        #expect(
            report.rows.contains {
                $0.provider == "orb" && $0.customers == ["acme", "globex"]
                    && $0.note.contains("several customers map here")
            })
        #expect(
            report.rows.filter { $0.provider == "stripe" }.allSatisfy { $0.status == .match && $0.customers.count == 1 }
        )
        #expect(report.table().contains("mapping: orb: your customers acme and globex"))
        await setup.close()
    }

    /// Events went out under a wrong table (globex → acme's id); the table is fixed before the
    /// reconcile: globex's id is short by exactly what acme's has too much.
    @Test func deliveredUnderAWrongTableShowsBothSides() async throws {
        let emulator = try await UsageEmulator.start()
        let routes = "  - { events: [tokens], to: orb }"
        let wrong = try config(
            emulator, routes: routes, extra: ["orb": "customers: { acme: orb-acme, globex: orb-acme }"])
        let right = try config(
            emulator, routes: routes, extra: ["orb": "customers: { acme: orb-acme, globex: orb-globex }"])
        let client = try CurlHTTPClient()
        defer { client.shutdown() }
        let path = spoolPath("wrong")
        let now = Date()
        do {
            let pipeline = try UsagePipeline(config: wrong, spoolPath: path, client: client, policy: quick)
            try await pipeline.record([
                UsageEvent(
                    id: "a", name: "tokens", customer: "acme", timestamp: now.addingTimeInterval(-60), quantity: 5),
                UsageEvent(
                    id: "g", name: "tokens", customer: "globex", timestamp: now.addingTimeInterval(-60), quantity: 7),
            ])
            try await pipeline.flush()
        }
        let report = try await Reconciler(config: right, spool: try Spool(path: path), client: client)
            .run(ReconcileOptions(from: now.addingTimeInterval(-3600), to: now))
        let byID = Dictionary(uniqueKeysWithValues: report.mismatches.map { ($0.providerCustomer, $0) })
        #expect(
            byID["orb-globex"]?.reported == 0 && byID["orb-globex"]?.recorded == 7
                && byID["orb-globex"]?.customers == ["globex"])
        #expect(byID["orb-acme"]?.difference == 7 && byID["orb-acme"]?.note.contains("7 more than recorded") == true)
        await emulator.shutdown()
    }

    /// A range wider than the usage: Stripe's summaries and Orb's usage answer every window of
    /// the range, most of them 0. A window with nothing recorded and 0 reported is no row, so a
    /// range that crosses midnight (a reconcile run between 00:00 and 01:00 UTC asking for the
    /// last hour) shows the same rows as one that does not.
    @Test func emptyWindowsOnBothSidesAreNoRows() async throws {
        let setup = try Setup(
            "empty", on: try await UsageEmulator.start(), routes: "  - { events: [tokens], to: stripe, shadow: orb }")
        let pipeline = setup.pipeline
        let day = utcDay(Date().addingTimeInterval(-3 * 86_400))
        let at = day.addingTimeInterval(12 * 3600)
        try await pipeline.record([
            UsageEvent(id: "e-a", name: "tokens", customer: "acme", timestamp: at, quantity: 4),
            UsageEvent(id: "e-g", name: "tokens", customer: "globex", timestamp: at, quantity: 6),
        ])
        try await pipeline.flush()
        let reconciler = try setup.reconciler()
        // Three days, the usage in the middle one; then the last minutes of the day before and the first of that day.
        for (from, to, granularity) in [
            (day.addingTimeInterval(-86_400), day.addingTimeInterval(2 * 86_400), ReadBackGranularity.day),
            (day.addingTimeInterval(-600), day.addingTimeInterval(13 * 3600), .day),
            (day.addingTimeInterval(6 * 3600), day.addingTimeInterval(18 * 3600), .hour),
        ] {
            let report = try await reconciler.run(
                ReconcileOptions(
                    from: from, to: to, granularity: granularity, providers: granularity == .hour ? ["stripe"] : nil))
            #expect(report.isClean, "\(report.table())")
            #expect(
                report.rows.count == (granularity == .hour ? 2 : 4),
                "two customers, one window each (Orb reads days only): \(report.table())")
            #expect(report.rows.allSatisfy { $0.recorded == $0.reported && $0.recorded > 0 })
        }
        await setup.close()
    }

    /// Orb cuts days in the customer's time zone: an event at 03:00Z belongs to the previous day
    /// in New York; Stripe cuts the same event into the UTC day. Both reconcile.
    @Test func orbDaysAreTheCustomersOwn() async throws {
        let setup = try Setup(
            "tz",
            on: try await UsageEmulator.start(
                options: EmulationOptions().with(EmulatedOrb.TimeZones(["acme": "America/New_York"]))),
            routes: "  - { events: [tokens], to: orb, shadow: stripe }")
        let pipeline = setup.pipeline
        let today = utcDay(Date().addingTimeInterval(-86_400))
        let early = today.addingTimeInterval(3 * 3600)  // 03:00Z: the evening before in New York
        let late = today.addingTimeInterval(15 * 3600)  // 15:00Z: the same day in both
        try await pipeline.record([
            UsageEvent(id: "e", name: "tokens", customer: "acme", timestamp: early, quantity: 4),
            UsageEvent(id: "l", name: "tokens", customer: "acme", timestamp: late, quantity: 6),
        ])
        try await pipeline.flush()
        let report = try await setup.reconciler().run(
            ReconcileOptions(from: today, to: today.addingTimeInterval(86_400)))
        #expect(report.isClean, "\(report.mismatches)")
        let orb = report.rows.filter { $0.provider == "orb" }.sorted { $0.start < $1.start }
        // The range widened to New York days: the day before (holding 4) and the day itself (holding 6).
        #expect(orb.map(\.recorded) == [4, 6], "\(orb)")
        // New York's midnight before `early`: 05:00Z in winter, 04:00Z under daylight saving time.
        var newYork = Calendar(identifier: .gregorian)
        newYork.timeZone = try #require(TimeZone(identifier: "America/New_York"))
        #expect(orb.first?.start == newYork.startOfDay(for: early))
        #expect(
            orb.first.map { Int($0.start.timeIntervalSince(today)) } == -86_400
                - newYork.timeZone.secondsFromGMT(for: early))
        let stripe = report.rows.filter { $0.provider == "stripe" }
        #expect(stripe.map(\.recorded) == [10] && stripe.first?.start == today)
        await setup.close()
    }

    /// Hour windows over nine days (216 per provider customer) for every windowed provider: each
    /// read-back pages through (Stripe summaries and Metronome rows 100 a page, Chargebee usages
    /// 100, Recurly records 200), and every hour agrees; Paddle has no windows, so one total.
    @Test func hourWindowsAcrossPagesForEveryProvider() async throws {
        let setup = try Setup(
            "hours",
            on: try await UsageEmulator.start(options: EmulationOptions().with(MeterSums(["storage": "value"]))),
            routes: """
                  - { events: [api_request], to: stripe, shadow: openmeter }
                  - { events: [tokens], to: metronome }
                  - { events: [seats], to: chargebee, shadow: recurly }
                  - { events: [tickets], to: paddle }
                """)
        let pipeline = setup.pipeline
        let hours = 9 * 24
        let start = utcDay(Date().addingTimeInterval(-10 * 86_400))
        var events: [UsageEvent] = []
        for hour in 0..<hours {
            for name in ["api_request", "tokens", "seats", "tickets"] {
                events.append(
                    UsageEvent(
                        id: "\(name)-\(hour)", name: name, customer: "acme",
                        timestamp: start.addingTimeInterval(Double(hour) * 3600 + 120),
                        quantity: Decimal(hour % 4 + 1)))
            }
        }
        try await pipeline.record(events)
        try await pipeline.flush()
        let reads = RecordingHTTPClient(wrapping: setup.client)
        let report = try await setup.reconciler(through: reads).run(
            ReconcileOptions(from: start, to: start.addingTimeInterval(Double(hours) * 3600), granularity: .hour))
        #expect(report.isClean, "\(report.mismatches)")
        let perProvider = Dictionary(grouping: report.rows, by: \.provider).mapValues(\.count)
        for provider in ["stripe", "openmeter", "metronome", "chargebee", "recurly"] {
            #expect(perProvider[provider] == hours, "\(provider): \(perProvider[provider] ?? 0) rows")
        }
        #expect(perProvider["paddle"] == 1)
        let total = events.filter { $0.name == "api_request" }.reduce(Decimal(0)) { $0 + $1.quantity }
        #expect(report.rows.filter { $0.provider == "stripe" }.reduce(Decimal(0)) { $0 + ($1.reported ?? 0) } == total)
        // Every paginated read-back asked for a second page.
        let urls = reads.exchanges.map(\.request.url)
        for (provider, marker) in [
            ("stripe", "starting_after="), ("metronome", "next_page="), ("chargebee", "offset="),
            ("recurly", "cursor="),
        ] {
            #expect(
                urls.contains { $0.contains("/\(provider)/") && $0.contains(marker) }, "\(provider) read a second page")
        }
        await setup.close()
    }

    /// Stripe's v2 stream through the pipeline: sessions, up to 100 events a request, and the
    /// totals read back through event summaries; a session the emulator expires is refreshed.
    @Test func stripeStreamDeliversAndReconciles() async throws {
        var clockNow = Date()
        let clock = Locked(clockNow)
        let setup = try Setup(
            "stream", on: try await UsageEmulator.start(now: { clock.with { $0 } }),
            routes: "  - { events: [api_request], to: stripe }", extra: ["stripe": "api: v2_stream, hedge: false"])
        let (emulator, pipeline) = (setup.emulator, setup.pipeline)
        var events: [UsageEvent] = []
        for i in 0..<1_000 {
            let at: Date = clockNow.addingTimeInterval(-Double(i) - 60)
            let customer = i % 2 == 0 ? "acme" : "globex"
            events.append(
                UsageEvent(
                    id: "s-\(i)", name: "api_request", customer: customer, timestamp: at, quantity: Decimal(i % 5 + 1)))
        }
        let recorded: Decimal = events.reduce(Decimal(0)) { $0 + $1.quantity }
        try await pipeline.record(Array(events[..<500]))
        try await pipeline.flush()
        // The emulator's clock moves past the session's 15 minutes: the next request is refused and a new session made.
        clockNow = clockNow.addingTimeInterval(16 * 60)
        clock.with { $0 = clockNow }
        try await pipeline.record(Array(events[500...]))
        try await pipeline.flush()
        let requests = emulator.statistics.requests["stripe"] ?? 0
        // 10 stream requests and one session: 11 without the expiry; the refused request(s) (up to
        // the 5 left to send, all in flight at once) and one new session (concurrent callers share
        // it) make 13 to 17. Hedging is off: a slow request resent would count too.
        #expect((13...17).contains(requests), "\(requests) requests")
        let report = try await setup.reconciler().run(
            ReconcileOptions(from: clockNow.addingTimeInterval(-7_200), to: clockNow, now: clockNow))
        #expect(report.isClean, "\(report.mismatches)")
        let reported: Decimal = report.rows.reduce(Decimal(0)) { $0 + ($1.reported ?? 0) }
        #expect(reported == recorded)
        await setup.close()
    }

    /// A disagreeing window younger than the settle delay is pending; within the tolerance it
    /// matches; an unknown provider name is bad input.
    @Test func settleToleranceAndBadOptions() async throws {
        let setup = try Setup(
            "settle", on: try await UsageEmulator.start(), routes: "  - { events: [tokens], to: orb }")
        let pipeline = setup.pipeline
        let now = Date()
        try await pipeline.record([
            UsageEvent(id: "s", name: "tokens", customer: "acme", timestamp: now.addingTimeInterval(-30), quantity: 3)
        ])
        // Recorded, not delivered: Orb reports 0 for a window that is still open.
        let reconciler = try setup.reconciler()
        let fresh = try await reconciler.run(
            ReconcileOptions(from: now.addingTimeInterval(-3600), to: now, settle: .seconds(2 * 86_400)))
        #expect(fresh.rows.map(\.status) == [.pending] && fresh.isClean)
        let strict = try await reconciler.run(
            ReconcileOptions(from: now.addingTimeInterval(-3600), to: now, now: now.addingTimeInterval(3 * 86_400)))
        #expect(strict.rows.map(\.status) == [.mismatch])
        let lenient = try await reconciler.run(
            ReconcileOptions(
                from: now.addingTimeInterval(-3600), to: now, tolerance: 3, now: now.addingTimeInterval(3 * 86_400)))
        #expect(lenient.rows.map(\.status) == [.match])
        // A config that no longer names the spool's provider: said, not skipped.
        var shrunk = setup.routing
        shrunk.providers["orb"] = nil
        let orphaned = try await Reconciler(config: shrunk, spool: pipeline.spool, client: setup.client).run(
            ReconcileOptions(from: now.addingTimeInterval(-3600), to: now))
        #expect(
            orphaned.rows.map(\.status) == [.unreadable]
                && orphaned.rows.first?.note.contains("no longer names") == true && !orphaned.isClean)
        await #expect {
            _ = try await reconciler.run(ReconcileOptions(from: now, to: now, providers: ["nope"]))
        } throws: {
            ($0 as? UsageBillingError)?.code == .invalidInput
        }
        await #expect {
            _ = try await reconciler.run(
                ReconcileOptions(from: now.addingTimeInterval(-60), to: now, providers: ["nope"]))
        } throws: {
            ($0 as? UsageBillingError)?.field == "providers"
        }
        await setup.close()
    }
}

@Suite("Reconciliation windows")
struct ReconcileWindowTests {
    private let utc = ReadBackWindowing.aligned(TimeZone(identifier: "UTC") ?? .current)
    private let newYork = ReadBackWindowing.aligned(TimeZone(identifier: "America/New_York") ?? .current)
    private func at(_ text: String) throws -> Date { try #require(RFC3339.parse(text)) }

    /// A range off the grid is widened to whole windows: down at the start, up at the end.
    @Test(arguments: [
        (
            ReadBackGranularity.day, "2026-11-20T10:30:00Z", "2026-11-21T00:00:00Z", "2026-11-20T00:00:00Z",
            "2026-11-21T00:00:00Z"
        ),
        (.day, "2026-11-20T10:30:00Z", "2026-11-21T00:00:01Z", "2026-11-20T00:00:00Z", "2026-11-22T00:00:00Z"),
        (.hour, "2026-11-20T10:30:00Z", "2026-11-20T12:15:00Z", "2026-11-20T10:00:00Z", "2026-11-20T13:00:00Z"),
        (.hour, "2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z", "2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z"),
    ])
    func utcRangesWidenToWholeWindows(
        _ granularity: ReadBackGranularity, _ from: String, _ to: String, _ start: String, _ end: String
    ) throws {
        let (s, e) = Reconciler.grid(
            utc, ReconcileOptions(from: try at(from), to: try at(to), granularity: granularity))
        #expect(RFC3339.format(s) == start && RFC3339.format(e) == end)
    }

    /// New York's day of the DST change (2026-11-01) lasts 25 hours; the next one starts at 05:00Z.
    @Test func customerLocalDaysFollowDaylightSaving() throws {
        let options = ReconcileOptions(from: try at("2026-11-01T12:00:00Z"), to: try at("2026-11-02T12:00:00Z"))
        let (s, e) = Reconciler.grid(newYork, options)
        #expect(RFC3339.format(s) == "2026-11-01T04:00:00Z" && RFC3339.format(e) == "2026-11-03T05:00:00Z")
        let change = Reconciler.window(containing: try at("2026-11-01T12:00:00Z"), newYork, options, range: (s, e))
        #expect(change.duration == 25 * 3600)
        let evening = Reconciler.window(containing: try at("2026-11-02T03:00:00Z"), newYork, options, range: (s, e))
        #expect(
            RFC3339.format(evening.start) == "2026-11-01T04:00:00Z", "03:00Z on the 2nd is still the 1st in New York")
    }

    /// Without windows (Paddle), the whole range is one window.
    @Test func wholeRangeIsOneWindow() throws {
        let options = ReconcileOptions(from: try at("2026-11-20T10:30:00Z"), to: try at("2026-11-25T00:00:00Z"))
        let (s, e) = Reconciler.grid(.wholeRange, options)
        #expect(s == options.from && e == options.to)
        #expect(
            Reconciler.window(containing: try at("2026-11-22T00:00:00Z"), .wholeRange, options, range: (s, e))
                == DateInterval(start: s, end: e))
    }
}
