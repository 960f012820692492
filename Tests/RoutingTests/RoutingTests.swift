import Foundation
import UsageBilling
import Testing
import UsageBillingCurl
import UsageBillingProviders
import UsageBillingTesting
import UsageRouting
import UsageTestSupport

let env = ["STRIPE_KEY": "sk_test_REDACTED", "ORB_KEY": "orb_REDACTED", "OM_KEY": "om_REDACTED"]
let providersYAML = """
    version: 1
    providers:
      stripe: { kind: stripe, secret_key: ${STRIPE_KEY} }
      orb: { kind: orb, api_key: ${ORB_KEY} }
      openmeter: { kind: openmeter, api_key: ${OM_KEY} }
    """

func config(_ routes: String, extra: String = "") throws -> RoutingConfig {
    try RoutingConfig.parse(
        providersYAML + "\nroutes:\n" + routes + "\n" + extra, file: "test.yaml", directory: "/tmp",
        registry: .standard, environment: env)
}

func event(_ name: String, _ customer: String = "acme", at: String = "2026-11-20T12:00:00Z") -> UsageEvent {
    UsageEvent(
        id: "e-\(name)-\(customer)-\(at)", name: name, customer: customer, timestamp: RFC3339.parse(at) ?? Date(),
        quantity: 1)
}

@Suite("Routing decisions")
struct RoutingDecisionTests {
    @Test func exactBeatsGlobAndLongerGlobBeatsShorter() throws {
        let c = try config(
            """
              - { events: ["storage.*"], to: orb }
              - { events: ["storage.gb_hours"], to: stripe }
              - { events: ["*"], to: openmeter }
              - { events: ["storage.g*"], to: openmeter }
            """)
        #expect(c.decide(event("storage.gb_hours"))?.primary == "stripe")
        #expect(c.decide(event("storage.gets"))?.primary == "openmeter")
        #expect(c.decide(event("storage.objects"))?.primary == "orb")
        #expect(c.decide(event("api_request"))?.primary == "openmeter")
    }

    @Test func primaryAndShadows() throws {
        let c = try config("  - { events: [api_request], to: stripe, shadow: [orb, openmeter] }")
        let d = try #require(c.decide(event("api_request")))
        #expect(d.primary == "stripe" && d.shadows == ["orb", "openmeter"])
    }

    @Test func cutoverSwitchesAtTheInstantWithNoOverlap() throws {
        let c = try config(
            """
              - { events: [api_request], to: stripe, until: "2026-12-01T00:00:00Z" }
              - { events: [api_request], to: orb, from: "2026-12-01T00:00:00Z" }
            """)
        #expect(
            c.decide(event("api_request", at: "2026-11-30T23:59:59Z"))
                == RoutingConfig.Decision(route: 0, primary: "stripe", shadows: []))
        #expect(
            c.decide(event("api_request", at: "2026-12-01T00:00:00Z"))
                == RoutingConfig.Decision(route: 1, primary: "orb", shadows: []))
        // Sub-second: the instant before the cutover still goes to the old provider only.
        let justBefore = UsageEvent(
            name: "api_request", customer: "c",
            timestamp: (RFC3339.parse("2026-12-01T00:00:00Z") ?? Date()).addingTimeInterval(-0.001))
        #expect(c.decide(justBefore)?.primary == "stripe")
    }

    @Test func cohortOverridesWin() throws {
        let c = try config(
            """
              - { events: ["api_*"], to: stripe }
              - { events: [api_request], to: openmeter }
              - { events: ["api_*"], customers: [initech, hooli], to: orb }
            """)
        #expect(c.decide(event("api_request", "initech"))?.primary == "orb")
        #expect(c.decide(event("api_request", "acme"))?.primary == "openmeter")
        #expect(c.decide(event("api_other", "hooli"))?.primary == "orb")
    }

    @Test func unroutedEventsAreRejectedWithTheirPolicy() async throws {
        let c = try config("  - { events: [api_request], to: stripe }", extra: "unrouted: dead-letter")
        #expect(c.decide(event("gpu_seconds")) == nil)
        #expect(c.unrouted == .deadLetter)
        let router = try Router(config: c, client: ReplayHTTPClient([]))
        let outcomes = try await router.deliver([event("gpu_seconds")])
        guard case .rejected(let reason)? = outcomes.first else {
            Issue.record("expected a rejection")
            return
        }
        #expect(
            reason.code == "unrouted" && reason.message.contains("dead letter")
                && reason.message.contains("gpu_seconds"))
    }

    @Test func perRouteSettingsAndTheCustomerTableReachTheSink() throws {
        let c = try config(
            "  - { events: [api_request], to: stripe, stripe: { event_name: api_calls } }",
            extra: "customers: { acme: { stripe: cus_123, orb: acme-orb } }")
        let settings = c.settings(for: "stripe", route: 0)
        #expect(settings["event_name"] == .string("api_calls"))
        #expect(settings["customers"]?["acme"] == .string("cus_123"))
        #expect(c.settings(for: "orb", route: nil)["customers"]?["acme"] == .string("acme-orb"))
    }

    @Test func jsonConfigsAreAcceptedWithLineNumbers() throws {
        let json = """
            {
              "version": 1,
              "providers": { "stripe": { "kind": "stripe", "secret_key": "${STRIPE_KEY}" } },
              "routes": [ { "events": ["api_request"], "to": "stripe" } ]
            }
            """
        let c = try RoutingConfig.parse(
            json, file: "routing.json", directory: "/tmp", registry: .standard, environment: env)
        #expect(c.decide(event("api_request"))?.primary == "stripe")
        #expect {
            try RoutingConfig.parse(
                json.replacingOccurrences(of: "\"to\": \"stripe\"", with: "\"to\": \"orb\""), file: "routing.json",
                directory: "/tmp", registry: .standard, environment: env)
        } throws: { error in
            (error as? ConfigIssues)?.issues.contains { $0.key == "routes[0].to" && $0.line == 4 } == true
        }
    }

    @Test func valuesFromTheEnvironmentAreMaskedWhateverTheKey() throws {
        let source = "tenant-" + String(repeating: "Zz9", count: 8)
        let c = try RoutingConfig.parse(
            providersYAML.replacingOccurrences(
                of: "api_key: ${OM_KEY} }", with: "api_key: ${OM_KEY}, source: ${OM_SOURCE} }")
                + "\nroutes:\n  - { events: [a], to: openmeter }", file: "t.yaml", directory: "/tmp",
            registry: .standard, environment: env.merging(["OM_SOURCE": source]) { $1 })
        #expect(!c.describe().contains(source))
        #expect(c.secretValues.contains(source))
    }

    @Test func describeMasksSecrets() throws {
        let key = "sk_" + "test_" + String(repeating: "Qz7", count: 9)
        let c = try RoutingConfig.parse(
            providersYAML + "\nroutes:\n  - { events: [a], to: stripe }", file: "t.yaml", directory: "/tmp",
            registry: .standard, environment: env.merging(["STRIPE_KEY": key]) { $1 })
        #expect(!c.describe().contains(key))
        #expect(c.describe().contains("secret_key=sk_test_REDACTED"))
    }
}

@Suite("Router delivery")
struct RouterDeliveryTests {
    /// The primary answers at once; a shadow whose server does not answer neither fails nor
    /// delays it: the primary returns while the shadow's request is still unanswered.
    @Test func aFailingShadowNeverFailsOrDelaysThePrimary() async throws {
        let primaryServer = try await LoopbackHTTPServer.start { _ in
            .respond(.json(200, .object(["object": .string("billing.meter_event")])))
        }
        // The shadow's server holds its request until the primary has returned: a router that
        // waited for its shadows would never return (the test's time limit ends it). Both
        // requests may wait the longest timeout a config allows, so on a starved machine no
        // clock decides this test either.
        let primaryReturned = Locked(false)
        let shadowServer = try await LoopbackHTTPServer.start { _ in
            _ = try? await eventually(within: .seconds(90)) { primaryReturned.with { $0 } }
            return .respond(.json(200, .object(["validation_failed": .array([])])))
        }
        let c = try RoutingConfig.parse(
            """
            version: 1
            providers:
              stripe: { kind: stripe, secret_key: sk_test_REDACTED, endpoint: "\(primaryServer.baseURL)", timeout: 300s }
              orb: { kind: orb, api_key: orb_REDACTED, endpoint: "\(shadowServer.baseURL)/v1", timeout: 300s }
            routes:
              - { events: [api_request], to: stripe, shadow: orb }
            """, file: "t.yaml", directory: "/tmp", registry: .standard, environment: [:])
        let curl = try CurlHTTPClient()
        defer { curl.shutdown() }
        let router = try Router(config: c, client: curl)
        let outcomes = try await router.deliver([
            event("api_request", at: RFC3339.format(Date().addingTimeInterval(-60)))
        ])
        #expect(outcomes == [.accepted])
        #expect(try await eventually { shadowServer.requestsReceived == 1 }, "the shadow's request was sent")
        primaryReturned.with { $0 = true }
        let shadows = await router.drainShadows()
        #expect(shadows.count == 1)
        #expect(shadows.first?.role == .shadow)
        #expect(shadows.first?.final == .accepted, "the shadow was answered only after the primary returned")
        await primaryServer.shutdown()
        await shadowServer.shutdown()
    }

    /// The router keeps one token bucket per lane: a second batch waits for tokens instead of
    /// getting a fresh burst (a Stripe test key: one event per request, paced under 25 requests/s).
    @Test func pacingHoldsAcrossBatches() async throws {
        let c = try config("  - { events: [api_request], to: stripe }")
        let clock = TestClock(now: Date())
        let router = try Router(config: c, client: DryRunHTTPClient(keep: 0, secrets: []), clock: clock)
        let limit = try #require(
            router.sink(for: Lane(provider: "stripe", route: "api_request"))?.capabilities.rateLimit)
        func batch(_ tag: String) -> [UsageEvent] {
            (0..<limit.burst).map {
                UsageEvent(
                    id: "\(tag)-\($0)", name: "api_request", customer: "acme",
                    timestamp: clock.now().addingTimeInterval(-60))
            }
        }
        _ = await router.deliverEverywhere(batch("a"), policy: .none)
        #expect(clock.sleeps.isEmpty, "the first batch fits the burst")
        _ = await router.deliverEverywhere(batch("b"), policy: .none)
        let waited = clock.sleeps.reduce(Duration.zero, +)
        let refill = Duration.seconds(Double(limit.burst) / limit.requestsPerSecond)
        #expect(waited >= refill * 0.95, "the second batch waited \(waited) for tokens, not \(refill)")
    }

    @Test func deliverEverywhereReportsEachDestination() async throws {
        let c = try config("  - { events: [api_request], to: stripe, shadow: openmeter }")
        let dry = DryRunHTTPClient(keep: 10, secrets: c.secretValues)
        let router = try Router(config: c, client: dry)
        let reports = await router.deliverEverywhere(
            [event("api_request", at: RFC3339.format(Date()))], policy: .none, pace: false)
        #expect(
            Set(reports.map { "\($0.lane?.provider ?? "-"):\($0.role.rawValue):\($0.final.label)" })
                == ["stripe:primary:accepted", "openmeter:shadow:accepted"])
        #expect(dry.requestCount == 2)
        #expect(!dry.transcript().contains("om_REDACTED") || dry.transcript().contains("Bearer om_REDACTED"))
    }
}

@Suite("max_in_flight")
struct MaxInFlightTests {
    /// The routing config's `max_in_flight` sets a provider's lanes' requests in flight over the
    /// adapter's default, and is never handed to the adapter's own settings.
    @Test func routingOverridesTheAdapterDefault() throws {
        let yaml =
            providersYAML.replacingOccurrences(
                of: "secret_key: ${STRIPE_KEY}", with: "secret_key: ${STRIPE_KEY}, max_in_flight: 200")
            + "\nroutes:\n  - { events: [api_request], to: stripe, shadow: orb }\n"
        let c = try RoutingConfig.parse(
            yaml, file: "test.yaml", directory: "/tmp", registry: .standard, environment: env)
        let router = try Router(config: c, client: DryRunHTTPClient(keep: 0, secrets: []))
        #expect(router.maxInFlight(for: Lane(provider: "stripe", route: "api_request")) == 200)
        #expect(router.maxInFlight(for: Lane(provider: "orb", route: "api_request")) == 8, "Orb's own default")
        #expect(c.settings(for: "stripe", route: 0)["max_in_flight"] == nil)
        let plain = try config("  - { events: [api_request], to: stripe }")
        #expect(
            try Router(config: plain, client: DryRunHTTPClient(keep: 0, secrets: [])).maxInFlight(
                for: Lane(provider: "stripe", route: "api_request")) == 64)
    }
}

@Suite("Request timeouts")
struct RequestTimeoutTests {
    /// Records each request's timeout and answers 200.
    final class TimeoutProbe: HTTPClient, @unchecked Sendable {
        private let lock = NSLock()
        private var seen: [Duration?] = []
        var timeouts: [Duration?] { lock.withLock { seen } }
        func send(_ request: HTTPRequest) async throws -> HTTPResponse {
            lock.withLock { seen.append(request.timeout) }
            return HTTPResponse(status: 200, body: Data("{}".utf8))
        }
    }

    /// Every provider kind declares a default within the bounds `timeout` accepts, and a lane's
    /// requests carry it unless the config sets its own.
    @Test(arguments: ProviderRegistry.standard.names)
    func eachKindsDefaultIsWithinTheBounds(_ name: String) throws {
        let kind = try #require(ProviderRegistry.standard.kind(name))
        #expect(RequestTimeout.range.contains(kind.requestTimeout), "\(name): \(kind.requestTimeout)")
    }

    @Test func aLanesRequestsCarryItsProvidersTimeout() async throws {
        let yaml =
            providersYAML.replacingOccurrences(
                of: "secret_key: ${STRIPE_KEY}", with: "secret_key: ${STRIPE_KEY}, timeout: 3s")
            + "\nroutes:\n  - { events: [api_request], to: stripe, shadow: orb }\n"
        let c = try RoutingConfig.parse(
            yaml, file: "test.yaml", directory: "/tmp", registry: .standard, environment: env)
        #expect(c.providers["stripe"]?.timeout == .seconds(3) && c.providers["orb"]?.timeout == nil)
        #expect(c.settings(for: "stripe", route: 0)["timeout"] == nil, "routing's setting, not the adapter's")
        let probe = TimeoutProbe()
        let router = try Router(config: c, client: probe)
        #expect(router.timeout(for: "stripe/api_request") == .seconds(3))
        #expect(router.timeout(for: "orb/api_request") == ProviderRegistry.standard.kind("orb")?.requestTimeout)
        let sink = try #require(router.sink(for: Lane(provider: "stripe", route: "api_request")))
        _ = try await sink.deliver([UsageEvent(id: "t-1", name: "api_request", customer: "cus_1", quantity: 1)])
        #expect(probe.timeouts == [.seconds(3)])
    }
}

@Suite("Lane identity")
struct LaneIdentityTests {
    static func lanes(_ routes: String) throws -> [String] {
        try config(routes).lanes.map(\.name)
    }

    /// A lane is named by its provider and what its route takes, whatever the route's position,
    /// the order of its patterns, its cutover times or its mapping.
    @Test func aLaneKeepsItsNameThroughReorderingAndEdits() throws {
        let original = try Self.lanes(
            """
              - { events: [api_request, "storage.*"], to: stripe, shadow: orb }
              - { events: [seats], to: orb }
            """)
        #expect(original == ["stripe/api_request+storage.*", "orb/api_request+storage.*", "orb/seats"])
        let edited = try Self.lanes(
            """
              - { events: [gpu], to: orb }
              - { events: [seats], to: orb, orb: { event_name: seat_count } }
              - { events: ["storage.*", api_request], to: stripe, shadow: orb, until: "2030-01-01T00:00:00Z", stripe: { event_name: calls } }
            """)
        #expect(Set(original).isSubset(of: Set(edited)), "\(edited)")
    }

    /// A cohort's lane carries a hash of its customers, not their ids, and the same cohort in
    /// any order gets the same name; an `id:` replaces the derived identity.
    @Test func cohortsAreHashedAndIdsWin() throws {
        let a = try Self.lanes("  - { events: [api_request], customers: [acme, globex], to: orb }")
        let b = try Self.lanes("  - { events: [api_request], customers: [globex, acme], to: orb }")
        #expect(a == b && a.count == 1)
        #expect(
            a[0].hasPrefix("orb/api_request@") && !a[0].contains("acme") && a[0].count == "orb/api_request@".count + 10)
        #expect(
            try Self.lanes("  - { id: api-requests, events: [api_request], to: stripe, shadow: orb }") == [
                "stripe/api-requests", "orb/api-requests",
            ])
    }

    /// Routes that send to one provider the same way share its lane (a cutover that turns the
    /// primary into a shadow, as in examples/routing.yaml); the lane table builds it once.
    @Test func aCutoverThatKeepsTheMappingSharesTheLane() throws {
        let c = try config(
            """
              - { events: [api_request], to: stripe, shadow: orb, until: "2026-12-01T00:00:00Z" }
              - { events: [api_request], to: orb, shadow: stripe, from: "2026-12-01T00:00:00Z" }
            """)
        let table = try LaneTable(config: c, client: DryRunHTTPClient(keep: 0, secrets: []))
        #expect(table.lanes.map(\.name) == ["orb/api_request", "stripe/api_request"])
        let before = UsageEvent(
            name: "api_request", customer: "acme", timestamp: RFC3339.parse("2026-11-30T00:00:00Z") ?? Date())
        let after = UsageEvent(
            name: "api_request", customer: "acme", timestamp: RFC3339.parse("2026-12-02T00:00:00Z") ?? Date())
        #expect(
            table.destinations(for: before).map { [$0.primary.name] + $0.shadows.map(\.name) } == [
                "stripe/api_request", "orb/api_request",
            ])
        #expect(
            table.destinations(for: after).map { [$0.primary.name] + $0.shadows.map(\.name) } == [
                "orb/api_request", "stripe/api_request",
            ])
    }

    /// Names parse back, positional names are recognised, and the hash is the same in every process.
    @Test func namesParseAndTheHashIsStable() {
        #expect(Lane(name: "stripe/storage/gb*") == Lane(provider: "stripe", route: "storage/gb*"))
        #expect(
            Lane(name: "stripe#0") == nil && Lane(name: "unrouted") == nil && Lane(name: "/x") == nil
                && Lane(name: "x/") == nil)
        #expect(Lane.legacyPosition("stripe#12").map { "\($0.provider) \($0.index)" } == "stripe 12")
        #expect(Lane.legacyPosition("stripe/api_request") == nil)
        #expect(
            StableHash.hex("acme\u{1F}globex") == StableHash.hex("acme\u{1F}globex")
                && StableHash.hex("") == "cbf29ce484")
    }
}
