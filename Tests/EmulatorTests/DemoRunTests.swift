import Foundation
import Synchronization
import Testing
import UsageBilling
import UsageDemo
import UsageRouting
import UsageSpool

/// The demo as the library runs it: the repository's example config and events against the
/// emulator of every provider, with faults, reconciled per provider.
@Suite("Demo run", .timeLimit(.minutes(3)))
struct DemoRunTests {
    static let examples = repositoryRoot.appending(path: "examples")

    @Test func theExamplesBillEveryProviderExactlyThroughFaults() async throws {
        let config = try DemoRun.configWithPlaceholderKeys(Self.examples.appending(path: "routing.yaml").path)
        let events = try DemoRun.events(at: Self.examples.appending(path: "events.ndjson").path)
        let steps = Steps()
        let outcome = try await DemoRun.run(config: config, events: events, faults: 0.15, seed: 7) { steps.add($0) }
        #expect(outcome.passed, "\(outcome.report.table())")
        #expect(outcome.injected > 0, "faults were injected")
        let providers = Set(outcome.report.rows.map(\.provider))
        #expect(providers == Set(config.providers.keys), "every provider of the config is read back")
        #expect(steps.lines.contains { $0.hasPrefix("Providers: ") }, "the run says what it does as it goes")
        // Its report shows the void and the amend on every lane they reached, applied.
        let voided = try #require(outcome.voided), amended = try #require(outcome.amended)
        for (eventID, kind) in [(voided.eventID, CorrectionKind.void), (amended.correction.eventID, .amend)] {
            let shown = outcome.report.corrections.filter { $0.eventID == eventID && $0.kind == kind }
            #expect(!shown.isEmpty && shown.allSatisfy { $0.state == .applied }, "\(eventID): \(shown)")
        }
    }

    @Test func badInputIsRefusedBeforeAnythingStarts() async throws {
        let config = try DemoRun.configWithPlaceholderKeys(Self.examples.appending(path: "routing.yaml").path)
        await #expect(throws: UsageBillingError.self) {
            _ = try await DemoRun.run(config: config, events: [], faults: 0, seed: 1)
        }
        await #expect(throws: UsageBillingError.self) {
            _ = try await DemoRun.run(
                config: config, events: [UsageEvent(id: "e", name: "api_request", customer: "acme")], faults: 0.9,
                seed: 1)
        }
        #expect(throws: UsageBillingError.self) { _ = try DemoRun.events(at: "/nonexistent/events.ndjson") }
        #expect(DemoRun.placeholder(for: "STRIPE_SECRET_KEY").hasPrefix("sk_"), "a key the adapter takes in form")
    }
}

/// The lines a run said, from its callback.
final class Steps: Sendable {
    private let store = Mutex<[String]>([])
    func add(_ line: String) { store.withLock { $0.append(line) } }
    var lines: [String] { store.withLock { $0 } }
}
