import Foundation
import OrbUsage
import Testing
import UsageBilling
import UsageBillingCurl
import UsageBillingTesting
import UsageEmulator

/// Orb's corrections: amending an event in place (`PUT /events/{id}`) and deprecating it
/// (`PUT /events/{id}/deprecate`), against the recorded fixtures and against the emulator,
/// which keeps Orb's rules: the same timestamp and customer, the grace period, 100 corrections
/// per customer in 100 days, and no ingest of a deprecated id.
@Suite("Orb corrections", .timeLimit(.minutes(1)))
struct OrbCorrectionTests {
    static func replay(_ name: String) throws -> ReplayHTTPClient {
        ReplayHTTPClient(
            try Fixture.load(repositoryRoot.appending(path: "Providers/Orb/Fixtures/api/\(name).json")).exchanges)
    }

    static let recorded = Date(timeIntervalSince1970: 1_795_176_000 - 60)  // the fixtures' event time

    @Test func theClientSendsWhatTheFixturesRecord() async throws {
        let amend = try Self.replay("event_amend")
        let id = try await OrbClient(settings: OrbSettings(apiKey: "orb_REDACTED"), client: amend).amendEvent(
            id: "019aa0f4-7c00-7000-8000-000000000001", eventName: "api_request",
            properties: ["quantity": .number(3), "region": .string("eu-west")], timestamp: Self.recorded,
            externalCustomerID: "acme-external-1")
        #expect(id == "019aa0f4-7c00-7000-8000-000000000001")
        #expect(amend.failures.isEmpty && amend.unconsumed.isEmpty, "\(amend.failures)")

        let deprecate = try Self.replay("event_deprecate")
        let gone = try await OrbClient(settings: OrbSettings(apiKey: "orb_REDACTED"), client: deprecate)
            .deprecateEvent(id: "019aa0f4-7c00-7000-8000-000000000002")
        #expect(gone == "019aa0f4-7c00-7000-8000-000000000002")
        #expect(deprecate.failures.isEmpty && deprecate.unconsumed.isEmpty, "\(deprecate.failures)")

        let late = try Self.replay("event_amend_past_grace")
        await #expect {
            try await OrbClient(settings: OrbSettings(apiKey: "orb_REDACTED"), client: late).amendEvent(
                id: "019aa0f4-7c00-7000-8000-000000000001", eventName: "api_request",
                properties: ["quantity": .number(3), "region": .string("eu-west")], timestamp: Self.recorded,
                externalCustomerID: "acme-external-1")
        } throws: { error in
            "\(error)".contains("grace period") && (error as? UsageBillingError)?.fix != nil
        }
        await #expect(throws: UsageBillingError.self, "one customer id, not two") {
            try await OrbClient(settings: OrbSettings(apiKey: "orb_REDACTED"), client: late).amendEvent(
                id: "e", eventName: "api_request", properties: [:], timestamp: Self.recorded,
                externalCustomerID: "a", customerID: "cus_1")
        }
    }

    @Test func theEmulatorAmendsAndDeprecatesByOrbsRules() async throws {
        let emulator = try await UsageEmulator.start(
            options: EmulationOptions().with(EmulatedOrb.GracePeriod(.seconds(12 * 3600))))
        let http = try CurlHTTPClient()
        defer { http.shutdown() }
        let settings = OrbSettings(
            apiKey: "orb_REDACTED", endpoint: emulator.baseURL + "/orb/v1", gracePeriodHours: 12, backfill: true)
        let orb = try OrbClient(settings: settings, client: http)
        let now = Date()
        let at = now.addingTimeInterval(-600)
        let events = [
            UsageEvent(id: "fix-1", name: "api_request", customer: "acme", timestamp: at, quantity: 10),
            UsageEvent(id: "fix-2", name: "api_request", customer: "acme", timestamp: at, quantity: 5),
            UsageEvent(
                id: "fix-old", name: "api_request", customer: "acme", timestamp: now.addingTimeInterval(-2 * 86_400),
                quantity: 1),
        ]
        #expect(
            try await OrbSink(settings: settings, client: http).deliver(events) == [.accepted, .accepted, .accepted])
        func total() async throws -> Double {
            try await orb.subscriptionUsage(
                subscriptionID: "acme", start: now.addingTimeInterval(-4 * 86_400), end: now.addingTimeInterval(86_400)
            ).flatMap(\.windows).reduce(0) { $0 + $1.quantity }
        }
        #expect(try await total() == 16)

        try await orb.amendEvent(
            id: "fix-1", eventName: "api_request", properties: ["quantity": .number(4)], timestamp: at,
            externalCustomerID: "acme")
        #expect(try await total() == 10, "the amended quantity replaces the original")
        try await orb.deprecateEvent(id: "fix-2")
        try await orb.deprecateEvent(id: "fix-2")  // idempotent
        #expect(try await total() == 5, "a deprecated event is billed no more")
        let again = try await OrbSink(settings: settings, client: http).deliver([events[1]])
        guard case .rejected(let reason)? = again.first else {
            Issue.record("a deprecated id cannot be ingested again: \(again)")
            return
        }
        #expect(reason.message.contains("deprecated"))

        await #expect(throws: UsageBillingError.self, "the timestamp must be the original's") {
            try await orb.amendEvent(
                id: "fix-1", eventName: "api_request", properties: ["quantity": .number(4)],
                timestamp: at.addingTimeInterval(1), externalCustomerID: "acme")
        }
        await #expect {
            try await orb.deprecateEvent(id: "fix-old")
        } throws: { error in
            "\(error)".contains("replace_existing_events")
        }
        await #expect(throws: UsageBillingError.self, "an id Orb never took") {
            try await orb.deprecateEvent(id: "never-sent")
        }
        await emulator.shutdown()
    }

    /// The 101st correction for one customer within 100 days is refused, naming the backfill.
    @Test func aCustomersCorrectionsAreLimited() async throws {
        let emulator = try await UsageEmulator.start()
        let http = try CurlHTTPClient()
        defer { http.shutdown() }
        let settings = OrbSettings(apiKey: "orb_REDACTED", endpoint: emulator.baseURL + "/orb/v1")
        let at = Date().addingTimeInterval(-600)
        let events = (0...100).map {
            UsageEvent(id: "lim-\($0)", name: "api_request", customer: "acme", timestamp: at, quantity: 1)
        }
        _ = try await OrbSink(settings: settings, client: http).deliver(events)
        let orb = try OrbClient(settings: settings, client: http)
        for event in events.prefix(100) { try await orb.deprecateEvent(id: event.id) }
        await #expect {
            try await orb.deprecateEvent(id: "lim-100")
        } throws: { error in
            "\(error)".contains("100 days")
        }
        await emulator.shutdown()
    }
}
