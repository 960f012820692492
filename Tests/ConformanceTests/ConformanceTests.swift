import Foundation
import Testing
import UsageBilling
import UsageBillingTesting

@Suite("Conformance: Stripe")
struct StripeConformanceTests {
    @Test("catalogue scenario", arguments: ConformanceScenario.allCases)
    func catalogue(_ scenario: ConformanceScenario) async throws {
        if let reason = stripeSubject.unsupported[scenario] {
            #expect(!reason.isEmpty, "an unsupported scenario needs a reason")
            #expect(try stripeSubject.fixtures(for: scenario).isEmpty, "a fixture exists for a scenario declared unsupported")
            try Test.cancel("stripe cannot: \(reason)")
        }
        let fixtures = try stripeSubject.fixtures(for: scenario)
        #expect(!fixtures.isEmpty, "no fixture for \(scenario): record one or declare it unsupported with a reason")
        for (name, fixture) in fixtures {
            #expect(fixture.scenario == scenario.rawValue, "\(name).json says scenario \(fixture.scenario ?? "nil")")
            let result = await ConformanceRunner.run(fixture, named: name, scenario: scenario, subject: stripeSubject)
            #expect(result.failures.isEmpty, "\(name): \(result.failures.joined(separator: "\n"))")
        }
    }

    @Test("provider-specific fixture", arguments: try! providerSpecificFixtures(stripeSubject))
    func providerSpecific(_ name: String) async throws {
        let fixture = try Fixture.load(stripeSubject.fixturesDirectory.appending(path: name + ".json"))
        #expect(fixture.scenario == nil)
        let result = await ConformanceRunner.run(fixture, named: name, scenario: nil, subject: stripeSubject)
        #expect(result.failures.isEmpty, "\(name): \(result.failures.joined(separator: "\n"))")
    }
}

/// Fixture files whose names are not catalogue scenarios.
func providerSpecificFixtures(_ subject: ConformanceSubject) throws -> [String] {
    try subject.fixtureFiles().map { $0.deletingPathExtension().lastPathComponent }.filter { name in
        !ConformanceScenario.allCases.contains { name == $0.rawValue || name.hasPrefix($0.rawValue + "--") }
    }
}

@Suite("Conformance runner catches broken adapters")
struct RunnerSelfTests {
    /// An adapter that gets the retry wrong (a new Idempotency-Key per attempt) must fail.
    @Test func changingKeysOnRetryIsCaught() async throws {
        let fixture = try Fixture.load(stripeSubject.fixturesDirectory.appending(path: "rate_limited_with_retry_after.json"))
        let broken = ConformanceSubject(provider: "broken", fixturesDirectory: stripeSubject.fixturesDirectory) { settings, client, clock in
            try stripeSubject.makeSink(settings, KeyChangingClient(inner: client), clock)
        }
        let result = await ConformanceRunner.run(fixture, named: "broken", scenario: .rateLimitedWithRetryAfter, subject: broken)
        #expect(result.failures.contains { $0.contains("Idempotency-Key") })
    }

    /// Skipping the local check (sending a too-old event) must fail the local-rejection scenario.
    @Test func requestsInALocalScenarioAreCaught() async throws {
        var fixture = try Fixture.load(stripeSubject.fixturesDirectory.appending(path: "too_old_timestamp_rejected_locally.json"))
        fixture.now = fixture.events[0].timestamp  // so the adapter thinks the event is fresh and sends it
        let result = await ConformanceRunner.run(fixture, named: "x", scenario: .tooOldTimestampRejectedLocally, subject: stripeSubject)
        #expect(result.failures.contains { $0.contains("no request") || $0.contains("unexpected request") })
    }

    /// A fixture whose exchanges are not all used fails.
    @Test func unconsumedExchangesAreCaught() async throws {
        var fixture = try Fixture.load(stripeSubject.fixturesDirectory.appending(path: "single_event_accepted.json"))
        fixture.exchanges.append(fixture.exchanges[0])
        let result = await ConformanceRunner.run(fixture, named: "x", scenario: .singleEventAccepted, subject: stripeSubject)
        #expect(result.failures.contains { $0.contains("never requested") })
    }

    @Test func replayComparesFormAsMultisetAndJSONByValue() {
        let expected = FixtureRequest(method: "POST", url: "https://x.test/a?b=1&c=2", headers: ["Idempotency-Key": "k"], form: "x=1&y[z]=2&x=3")
        let same = HTTPRequest(method: .post, url: "https://x.test/a?c=2&b=1", headers: ["idempotency-key": "k"], body: Data("x=3&y%5Bz%5D=2&x=1".utf8))
        #expect(ReplayHTTPClient.mismatches(same, expected).isEmpty)
        let differs = HTTPRequest(method: .post, url: "https://x.test/a?c=2&b=1", headers: ["Idempotency-Key": "k"], body: Data("x=3&y[z]=2".utf8))
        #expect(!ReplayHTTPClient.mismatches(differs, expected).isEmpty)
        let json = FixtureRequest(method: "POST", url: "https://x.test/j", json: .object(["a": .number(1), "b": .array([.string("x")])]))
        let reordered = HTTPRequest(method: .post, url: "https://x.test/j", body: Data(#"{"b":["x"],"a":1.0}"#.utf8))
        #expect(ReplayHTTPClient.mismatches(reordered, json).isEmpty)
        let wrongKey = HTTPRequest(method: .post, url: "https://x.test/a?b=1&c=2", headers: ["Idempotency-Key": "other"], body: same.body)
        #expect(ReplayHTTPClient.mismatches(wrongKey, expected).contains { $0.contains("Idempotency-Key") })
    }
}

/// Wraps a client and gives every request a fresh Idempotency-Key (the bug the runner must catch).
struct KeyChangingClient: HTTPClient {
    let inner: any HTTPClient
    func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        var r = request
        r.headers["Idempotency-Key"] = UUID().uuidString
        return try await inner.send(r)
    }
}
