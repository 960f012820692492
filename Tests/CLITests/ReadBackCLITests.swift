import Foundation
import UsageEmulator
import Testing
import UsageBilling
import UsageBillingTesting

@Suite("CLI read-back against the emulator", .timeLimit(.minutes(2)))
struct ReadBackCLITests {
    @Test func sendThenMetersListThenSummary() async throws {
        let emulator = try await UsageEmulator.start(
            options: EmulationOptions().with(EmulatedStripe.Meters(["api_requests"])))
        defer { Task { await emulator.shutdown() } }
        let config = try CLI.temp(
            "stripe.yaml",
            """
            version: 1
            providers:
              stripe: { kind: stripe, secret_key: ${STRIPE_SECRET_KEY}, endpoint: "\(emulator.endpoints["stripe"]?["endpoint"] ?? "")" }
            routes:
              - { events: [api_request], to: stripe, stripe: { event_name: api_requests } }
            customers: { acme: { stripe: cus_acme } }
            """)
        let hour = (Date().timeIntervalSince1970 / 3600).rounded(.down) * 3600
        let stamp = RFC3339.format(Date(timeIntervalSince1970: hour + 60))
        for (id, quantity) in [("e1", "150"), ("e2", "25"), ("e1", "150")] {  // e1 twice: a duplicate, billed once
            let r = try await CLI.run([
                "send", "-c", config, "--name", "api_request", "--customer", "acme", "--quantity", quantity,
                "--id", id, "--timestamp", stamp,
            ])
            #expect(r.status == 0, "\(r.output)")
        }
        let meters = try await CLI.run(["meters", "list", "-c", config, "--provider", "stripe", "--json"])
        #expect(meters.status == 0, "\(meters.output)")
        let list = JSONValue.parse(Data(meters.output.utf8))?.arrayValue ?? []
        let meterID = try #require(list.first?["id"]?.stringValue)
        #expect(list.first?["event_name"] == .string("api_requests"))

        let summary = try await CLI.run([
            "summary", "-c", config, "--provider", "stripe", "--meter", meterID, "--customer", "cus_acme",
            "--from", RFC3339.format(Date(timeIntervalSince1970: hour)),
            "--to", RFC3339.format(Date(timeIntervalSince1970: hour + 3600)), "--json",
        ])
        #expect(summary.status == 0, "\(summary.output)")
        let rows = JSONValue.parse(Data(summary.output.utf8))?.arrayValue ?? []
        #expect(rows.first?["value"] == .string("175"), "\(summary.output)")
        #expect(!summary.output.contains(CLI.stripeKey) && !meters.output.contains(CLI.stripeKey))
    }

    @Test func summaryNeedsItsProviderSpecificFlags() async throws {
        let r = try await CLI.run([
            "summary", "-c", "examples/routing.yaml", "--provider", "stripe", "--from", "2026-11-24T00:00:00Z", "--to",
            "2026-11-25T00:00:00Z",
        ])
        #expect(r.status == 2)
        #expect(r.output.contains("summary needs --meter") && r.output.contains("Fix"), "\(r.output)")
        let wrong = try await CLI.run(["meters", "list", "-c", "examples/routing.yaml", "--provider", "nope"])
        #expect(wrong.status == 2 && wrong.output.contains("'nope' is not in"))
    }
}
