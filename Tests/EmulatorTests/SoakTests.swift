import Foundation
import Testing
import UsageBilling
import UsageBillingCurl
import UsageBillingProviders
import UsageBillingTesting
import UsageEmulator
import UsageRouting
import UsageSpool
import UsageTestSupport

/// The soak config: every provider on its own event, all pointed at the emulator.
func soakConfig(_ emulator: UsageEmulator) throws -> RoutingConfig {
    try emulatorConfig(
        emulator,
        routes: """
              - { events: [api_request], to: stripe }
              - { events: [tokens], to: orb, shadow: metronome }
              - { events: [storage], to: openmeter }
              - { events: [seats], to: chargebee, shadow: recurly }
              - { events: [tickets], to: paddle, shadow: paddle_usage }
            """)
}

@Suite("Soak: 100,000 events, every provider, 20% faults", .timeLimit(.minutes(5)))
struct SoakTests {
    @Test func exactTotalsThroughInjectedFaults() async throws {
        let n = 100_000
        let emulator = try await UsageEmulator.start(
            faults: Dictionary(
                uniqueKeysWithValues: UsageEmulator.kinds.map { ($0, FaultPlan.mixed(0.2, timeouts: 0.002)) }),
            seed: 2026, options: EmulationOptions().with(MeterSums(["storage": "value"])))
        let config = try soakConfig(emulator)
        let client = try CurlHTTPClient(configuration: .init(timeout: .milliseconds(250)))
        defer { client.shutdown() }
        let path = FileManager.default.temporaryDirectory.appending(path: "ub-soak-\(UUID().uuidString).spool").path
        let pipeline = try UsagePipeline(
            config: config, spoolPath: path, client: client,
            policy: RetryPolicy(baseDelay: .milliseconds(2), maxDelay: .milliseconds(50), maxAttempts: 60))
        // Stripe takes one event per request, so it gets the smallest share.
        let names = ["api_request": 5, "tokens": 30, "storage": 30, "seats": 20, "tickets": 15]
        let schedule = names.sorted { $0.key < $1.key }.flatMap { Array(repeating: $0.key, count: $0.value) }
        let customers = ["acme", "globex", "initech", "umbrella"]
        let now = Date()
        var events: [UsageEvent] = []
        events.reserveCapacity(n)
        for i in 0..<n {
            let name: String = schedule[i % schedule.count]
            let customer: String = customers[(i / schedule.count) % customers.count]
            let at: Date = now.addingTimeInterval(-Double(n - i) / 100 - 120)
            events.append(
                UsageEvent(id: "soak-\(i)", name: name, customer: customer, timestamp: at, quantity: Decimal(i % 7 + 1))
            )
        }
        for chunk in stride(from: 0, to: n, by: 5_000) {
            try await pipeline.record(Array(events[chunk..<min(n, chunk + 5_000)]))
        }
        let started = ContinuousClock.now
        try await pipeline.flush()
        let elapsed = ContinuousClock.now - started

        // Expected per provider and customer, from the routing decisions.
        var expected: [String: [String: Decimal]] = [:]
        for event in events {
            guard let d = config.decide(event) else { continue }
            for provider in [d.primary] + d.shadows {
                expected[provider, default: [:]][event.customer, default: 0] += event.quantity
            }
        }
        var lines: [String] = []
        for kind in UsageEmulator.kinds {
            let accepted = await emulator.accepted(kind)
            var got: [String: Decimal] = [:]
            for usage in accepted { got[usage.customer, default: 0] += usage.quantity }
            #expect(
                got == (expected[kind] ?? [:]), "\(kind): the provider holds \(got), recorded \(expected[kind] ?? [:])")
            let keys = accepted.compactMap(\.key)
            #expect(Set(keys).count == keys.count, "\(kind): a key was counted twice")
            lines.append("\(kind) \(accepted.count) records")
        }
        let status = try await pipeline.spool.status()
        #expect(status.allSatisfy { $0.queued == 0 && $0.dead.isEmpty && $0.openWindows == 0 }, "\(status)")
        let stats = emulator.statistics
        let injected = stats.injected.values.flatMap(\.values).reduce(0, +)
        #expect(injected > 1_000, "faults were injected")
        print(
            "SOAK n=\(n) drained in \(String(format: "%.1f", elapsed.seconds)) s; requests \(stats.requests.values.reduce(0, +)), injected failures \(injected); "
                + lines.joined(separator: ", "))
        await emulator.shutdown()
    }
}

@Suite("Stripe's one call per customer and meter, emulated", .timeLimit(.minutes(1)))
struct StripeConcurrencyEmulationTests {
    @Test func aSecondV2CallForOneCustomerAndMeterInProgressIs409() async throws {
        var plan = FaultPlan()
        plan.delay = .seconds(1)  // Stripe's processing time, so calls overlap
        plan.delayRate = 1
        let emulator = try await UsageEmulator.start(faults: ["stripe": plan])
        let client = try CurlHTTPClient()
        defer { client.shutdown() }
        let base = try #require(emulator.endpoints["stripe"]?["endpoint"])
        @Sendable func send(_ customer: String, _ id: String) async throws -> HTTPResponse {
            let body = JSONValue.object([
                "event_name": .string("api_requests"), "identifier": .string(id),
                "payload": .object(["stripe_customer_id": .string(customer), "value": .string("1")]),
            ]).encoded()
            return try await client.send(
                HTTPRequest(
                    method: .post, url: base + "/v2/billing/meter_events",
                    headers: ["Authorization": "Bearer sk_test_REDACTED", "Content-Type": "application/json"],
                    body: body))
        }
        async let first = send("cus_A", "c-1")
        // Send the second once the emulator holds the first (it counts a request as it admits it).
        _ = try await eventually { emulator.requests("stripe") > 0 }
        try await Task.sleep(for: .milliseconds(50))
        let second = try await send("cus_A", "c-2")  // while the first is in progress
        #expect(second.status == 409)
        #expect(JSONValue.parse(second.body)?["error"]?["code"]?.stringValue == "too_many_concurrent_requests")
        let other = try await send("cus_B", "c-3")  // another customer is not held back
        #expect(other.status == 200)
        #expect(try await first.status == 200)
        let after = try await send("cus_A", "c-4")  // once the first is answered, the next goes through
        #expect(after.status == 200)
        #expect(await emulator.accepted("stripe").compactMap { $0.key }.sorted() == ["c-1", "c-3", "c-4"])
        await emulator.shutdown()
    }
}
