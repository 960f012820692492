import Foundation
import Testing
import UsageBilling
import UsageBillingTesting

@Suite("Conformance catalogue")
struct CatalogueTests {
    @Test("catalogue scenario", arguments: catalogueCases(supported: true))
    func catalogue(_ testCase: String) async throws {
        let (subject, scenario) = try #require(resolve(testCase))
        let fixtures = try subject.fixtures(for: scenario)
        #expect(
            !fixtures.isEmpty,
            "\(subject.provider) has no fixture for \(scenario): record one or declare it unsupported with a reason")
        for (name, fixture) in fixtures {
            #expect(fixture.scenario == scenario.rawValue, "\(name).json says scenario \(fixture.scenario ?? "nil")")
            let result = await ConformanceRunner.run(fixture, named: name, scenario: scenario, subject: subject)
            #expect(result.failures.isEmpty, "\(subject.provider)/\(name): \(result.failures.joined(separator: "\n"))")
        }
    }

    /// A scenario a provider cannot do is skipped with its reason, printed, never silently; and
    /// it has no fixture that would then go unrun.
    @Test("catalogue scenario skipped with a reason", arguments: catalogueCases(supported: false))
    func skipped(_ testCase: String) throws {
        let (subject, scenario) = try #require(resolve(testCase))
        let reason = subject.unsupported[scenario] ?? ""
        #expect(reason.count > 20, "\(testCase): the reason must say why")
        #expect(try subject.fixtures(for: scenario).isEmpty, "\(testCase) has a fixture but is declared unsupported")
        print("SKIPPED \(testCase): \(reason)")
    }

    @Test("provider-specific fixture", arguments: providerSpecificFixtures())
    func providerSpecific(_ path: String) async throws {
        let parts = path.split(separator: "/").map(String.init)
        let subject = try #require(findSubject(parts[0]))
        let fixture = try Fixture.load(subject.fixturesDirectory.appending(path: parts[1] + ".json"))
        #expect(fixture.scenario == nil)
        let result = await ConformanceRunner.run(fixture, named: path, scenario: nil, subject: subject)
        #expect(result.failures.isEmpty, "\(path): \(result.failures.joined(separator: "\n"))")
    }

    /// Every provider has at least one fixture of its own peculiarity.
    @Test func everyProviderHasAProviderSpecificFixture() {
        let providers = Set(providerSpecificFixtures().map { String($0.split(separator: "/")[0]) })
        #expect(providers == Set(allSubjects.map(\.provider)))
    }
}

/// `Provider/scenario` for every pair the provider supports (or does not).
func catalogueCases(supported: Bool) -> [String] {
    allSubjects.flatMap { subject in
        ConformanceScenario.allCases.filter { (subject.unsupported[$0] == nil) == supported }.map {
            "\(subject.provider)/\($0.rawValue)"
        }
    }
}

func resolve(_ testCase: String) -> (ConformanceSubject, ConformanceScenario)? {
    let parts = testCase.split(separator: "/").map(String.init)
    guard parts.count == 2, let subject = findSubject(parts[0]), let scenario = ConformanceScenario(rawValue: parts[1])
    else { return nil }
    return (subject, scenario)
}

/// `Provider/name` of every fixture whose name is not a catalogue scenario.
func providerSpecificFixtures() -> [String] {
    allSubjects.flatMap { subject in
        ((try? subject.fixtureFiles()) ?? []).map { $0.deletingPathExtension().lastPathComponent }.filter { name in
            !ConformanceScenario.allCases.contains { name == $0.rawValue || name.hasPrefix($0.rawValue + "--") }
        }.map { "\(subject.provider)/\($0)" }
    }
}

@Suite("Conformance runner catches broken adapters")
struct RunnerSelfTests {
    /// An adapter that gets the retry wrong (a new Idempotency-Key per attempt) must fail.
    @Test func changingKeysOnRetryIsCaught() async throws {
        let fixture = try Fixture.load(
            stripeSubject.fixturesDirectory.appending(path: "rate_limited_with_retry_after.json"))
        let stripe = try stripeSubject
        let broken = ConformanceSubject(provider: "broken", fixturesDirectory: stripe.fixturesDirectory) {
            settings, client, clock in
            try stripe.makeSink(settings, KeyChangingClient(inner: client), clock)
        }
        let result = await ConformanceRunner.run(
            fixture, named: "broken", scenario: .rateLimitedWithRetryAfter, subject: broken)
        #expect(result.failures.contains { $0.contains("Idempotency-Key") })
    }

    /// Skipping the local check (sending a too-old event) must fail the local-rejection scenario.
    @Test func requestsInALocalScenarioAreCaught() async throws {
        var fixture = try Fixture.load(
            stripeSubject.fixturesDirectory.appending(path: "too_old_timestamp_rejected_locally.json"))
        fixture.now = fixture.events[0].timestamp  // so the adapter thinks the event is fresh and sends it
        let result = await ConformanceRunner.run(
            fixture, named: "x", scenario: .tooOldTimestampRejectedLocally, subject: try stripeSubject)
        #expect(result.failures.contains { $0.contains("no request") || $0.contains("unexpected request") })
    }

    /// A fixture whose exchanges are not all used fails.
    @Test func unconsumedExchangesAreCaught() async throws {
        var fixture = try Fixture.load(stripeSubject.fixturesDirectory.appending(path: "single_event_accepted.json"))
        fixture.exchanges.append(fixture.exchanges[0])
        let result = await ConformanceRunner.run(
            fixture, named: "x", scenario: .singleEventAccepted, subject: try stripeSubject)
        #expect(result.failures.contains { $0.contains("never requested") })
    }

    /// A correction fixture catches a void sent under another idempotency key, and a void the
    /// adapter answers otherwise than the fixture expects (here: refused locally, as too late).
    @Test func aVoidUnderAnotherKeyOrAnswerIsCaught() async throws {
        let url = try stripeSubject.fixturesDirectory.appending(path: "void_cancel_adjustment.json")
        var rekeyed = try Fixture.load(url)
        let correction = try #require(rekeyed.correction)
        rekeyed.correction?.correctionID = correction.correctionID + "-other"
        rekeyed.expected = [correction.correctionID + "-other": rekeyed.expected[correction.correctionID] ?? []]
        let keyed = await ConformanceRunner.run(rekeyed, named: "x", scenario: nil, subject: try stripeSubject)
        #expect(keyed.failures.contains { $0.contains("Idempotency-Key") }, "\(keyed.failures)")
        var late = try Fixture.load(url)
        late.correction?.deliveredAt = RFC3339.format((late.now ?? Date()).addingTimeInterval(-25 * 3600))
        let refused = await ConformanceRunner.run(late, named: "x", scenario: nil, subject: try stripeSubject)
        #expect(
            refused.failures.contains { $0.contains("expected accepted") }
                && refused.failures.contains { $0.contains("never requested") }, "\(refused.failures)")
    }

    @Test func replayComparesFormAsMultisetAndJSONByValue() {
        let expected = FixtureRequest(
            method: "POST", url: "https://x.test/a?b=1&c=2", headers: ["Idempotency-Key": "k"], form: "x=1&y[z]=2&x=3")
        let same = HTTPRequest(
            method: .post, url: "https://x.test/a?c=2&b=1", headers: ["idempotency-key": "k"],
            body: Data("x=3&y%5Bz%5D=2&x=1".utf8))
        #expect(ReplayHTTPClient.mismatches(same, expected).isEmpty)
        let differs = HTTPRequest(
            method: .post, url: "https://x.test/a?c=2&b=1", headers: ["Idempotency-Key": "k"],
            body: Data("x=3&y[z]=2".utf8))
        #expect(!ReplayHTTPClient.mismatches(differs, expected).isEmpty)
        let json = FixtureRequest(
            method: "POST", url: "https://x.test/j", json: .object(["a": .number(1), "b": .array([.string("x")])]))
        let reordered = HTTPRequest(method: .post, url: "https://x.test/j", body: Data(#"{"b":["x"],"a":1.0}"#.utf8))
        #expect(ReplayHTTPClient.mismatches(reordered, json).isEmpty)
        let wrongKey = HTTPRequest(
            method: .post, url: "https://x.test/a?b=1&c=2", headers: ["Idempotency-Key": "other"], body: same.body)
        #expect(ReplayHTTPClient.mismatches(wrongKey, expected).contains { $0.contains("Idempotency-Key") })
        let charset = FixtureRequest(
            method: "POST", url: "https://x.test/j", headers: ["Content-Type": "application/cloudevents+json"],
            json: .object([:]))
        let withCharset = HTTPRequest(
            method: .post, url: "https://x.test/j",
            headers: ["Content-Type": "application/cloudevents+json; charset=utf-8"], body: Data("{}".utf8))
        #expect(!ReplayHTTPClient.mismatches(withCharset, charset).isEmpty)
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
