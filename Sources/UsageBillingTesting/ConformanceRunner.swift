import Foundation
import UsageBilling

/// A provider under test: how to build its sink from fixture settings, where its fixtures are,
/// and which catalogue scenarios it cannot do (with the reason).
public struct ConformanceSubject: Sendable {
    /// Builds the sink for one fixture.
    public typealias SinkFactory =
        @Sendable (_ settings: JSONValue, _ client: any HTTPClient, _ clock: any UsageClock) throws -> any UsageSink

    /// The provider's name, for messages.
    public var provider: String
    /// The folder holding its fixture files (`Providers/<Name>/Fixtures`).
    public var fixturesDirectory: URL
    /// Scenarios the provider cannot do, with the reason each is skipped.
    public var unsupported: [ConformanceScenario: String]
    /// The retry policy the runner delivers with (jitter is seeded, waits are recorded).
    public var retryPolicy: RetryPolicy
    /// Builds the sink for one fixture's settings.
    public var makeSink: SinkFactory

    /// A subject for `provider` whose fixtures are in `fixturesDirectory`.
    public init(
        provider: String, fixturesDirectory: URL, unsupported: [ConformanceScenario: String] = [:],
        retryPolicy: RetryPolicy = RetryPolicy(maxAttempts: 5), makeSink: @escaping SinkFactory
    ) {
        self.provider = provider
        self.fixturesDirectory = fixturesDirectory
        self.unsupported = unsupported
        self.retryPolicy = retryPolicy
        self.makeSink = makeSink
    }

    /// Every fixture file directly in ``fixturesDirectory``, sorted by name.
    public func fixtureFiles() throws -> [URL] {
        try FileManager.default.contentsOfDirectory(at: fixturesDirectory, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "json" }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
    }

    /// The fixtures recorded for `scenario` (files named `<scenario>.json` or `<scenario>--<variant>.json`).
    public func fixtures(for scenario: ConformanceScenario) throws -> [(name: String, fixture: Fixture)] {
        try fixtureFiles().compactMap { url in
            let name = url.deletingPathExtension().lastPathComponent
            guard name == scenario.rawValue || name.hasPrefix(scenario.rawValue + "--") else { return nil }
            return (name, try Fixture.load(url))
        }
    }
}

/// What one fixture run found.
public struct ConformanceResult: Sendable {
    /// The fixture's file name without `.json`.
    public var fixtureName: String
    /// Every broken expectation; empty means the fixture passed.
    public var failures: [String]
    /// Per event, the outcomes of each attempt.
    public var reports: [RetryingDeliverer.Report]
    /// The requests the adapter made.
    public var requests: [HTTPRequest]
    /// The waits between attempts.
    public var sleeps: [Duration]
}

/// Runs fixtures against a subject's sink through the real retry driver (``RetryingDeliverer``)
/// and checks the expectations plus the scenario's own invariants (local rejections make no
/// request; retries resend the same body and Idempotency-Key; a split respects the batch limit...).
public enum ConformanceRunner {
    /// A correction fixture's void, reported under the correction's id.
    private static func void(
        _ correction: FixtureCorrection, fixture: Fixture, sink: any UsageSink, failures: inout [String]
    ) async throws -> RetryingDeliverer.Report {
        guard let event = fixture.events.first(where: { $0.id == correction.void }) else {
            failures.append("correction: no event \(correction.void) among the fixture's events")
            return RetryingDeliverer.Report(eventID: correction.correctionID, history: [])
        }
        guard let sink = sink as? any CorrectionSink else {
            failures.append("correction: the sink takes no voids (it is no CorrectionSink)")
            return RetryingDeliverer.Report(eventID: correction.correctionID, history: [])
        }
        let deliveredAt = correction.deliveredAt.flatMap(RFC3339.parse)
        if correction.deliveredAt != nil && deliveredAt == nil {
            failures.append("correction: delivered_at '\(correction.deliveredAt ?? "")' is not RFC 3339")
        }
        let outcome = try await sink.void(event, deliveredAt: deliveredAt, correctionID: correction.correctionID)
        return RetryingDeliverer.Report(eventID: correction.correctionID, history: [outcome])
    }

    /// Runs one fixture.
    public static func run(
        _ fixture: Fixture, named name: String, scenario: ConformanceScenario?,
        subject: ConformanceSubject
    ) async -> ConformanceResult {
        var failures: [String] = []
        let replay = ReplayHTTPClient(fixture.exchanges)
        let clock = TestClock(now: fixture.now ?? Date())
        var reports: [RetryingDeliverer.Report] = []
        var thrown: (any Error)?
        var maxBatch = Int.max
        do {
            let sink = try subject.makeSink(fixture.settings ?? .object([:]), replay, clock)
            maxBatch = sink.capabilities.maxBatchSize
            if let correction = fixture.correction {
                reports = [try await void(correction, fixture: fixture, sink: sink, failures: &failures)]
            } else {
                let deliverer = RetryingDeliverer(sink: sink, policy: subject.retryPolicy, clock: clock)
                var rng = SeededGenerator(seed: 42)
                reports = try await deliverer.deliver(fixture.events, using: &rng)
            }
        } catch {
            thrown = error
        }
        failures += replay.failures
        if !replay.unconsumed.isEmpty {
            failures.append(
                "\(replay.unconsumed.count) recorded exchange(s) never requested, first: "
                    + "\(replay.unconsumed[0].request.method) \(replay.unconsumed[0].request.url)")
        }

        // The expected error, or none.
        switch (fixture.expectedError, thrown) {
        case (let want?, let error as UsageBillingError):
            if error.code.description != want { failures.append("threw \(error.code), expected \(want)") }
            if !SecretScanner.findSecrets(in: error.description).isEmpty {
                failures.append("error message leaks a secret")
            }
        case (let want?, let error?):
            failures.append("threw \(error), expected UsageBillingError \(want)")
        case (let want?, nil):
            failures.append("expected the sink to throw \(want), it did not")
        case (nil, let error?):
            failures.append("unexpected error: \(error)")
        case (nil, nil):
            break
        }

        // Per-event outcome histories.
        for report in reports {
            guard let expected = fixture.expected[report.eventID] else {
                failures.append("event \(report.eventID): no expectation in the fixture")
                continue
            }
            if expected.count != report.history.count {
                failures.append(
                    "event \(report.eventID): \(report.history.count) attempt(s) \(report.history.map(\.label)), expected \(expected.count) \(expected.map(\.outcome))"
                )
            }
            for (attempt, (want, got)) in zip(expected, report.history).enumerated() {
                for problem in want.mismatches(got) {
                    failures.append("event \(report.eventID) attempt \(attempt + 1): \(problem)")
                }
            }
        }
        if thrown == nil {
            for id in fixture.expected.keys where !reports.contains(where: { $0.eventID == id }) {
                failures.append("expectation for unknown event \(id)")
            }
        }

        if let scenario {
            failures += invariants(
                scenario, fixture: fixture, reports: reports, requests: replay.received,
                maxBatch: maxBatch, thrown: thrown)
        }
        return ConformanceResult(
            fixtureName: name, failures: failures, reports: reports,
            requests: replay.received, sleeps: clock.sleeps)
    }

    /// Checks that hold for a scenario whatever the provider.
    static func invariants(
        _ scenario: ConformanceScenario, fixture: Fixture, reports: [RetryingDeliverer.Report],
        requests: [HTTPRequest], maxBatch: Int, thrown: (any Error)?
    ) -> [String] {
        var failures: [String] = []
        let finals = reports.map(\.final)
        func has(_ predicate: (DeliveryOutcome) -> Bool) -> Bool { finals.contains(where: predicate) }

        if scenario.isLocalRejection {
            if !requests.isEmpty { failures.append("a local rejection must make no request; made \(requests.count)") }
            let allLocal = reports.contains { report in
                if case .rejected(let reason) = report.final { return reason.origin == .local }
                return false
            }
            if !allLocal { failures.append("no event was rejected locally") }
        }
        if scenario.involvesRetry {
            if !reports.contains(where: { $0.history.count >= 2 && !$0.history[0].isFinal }) {
                failures.append("no event was retried")
            }
            if !has({ $0 == .accepted || $0 == .duplicate }) { failures.append("the retry did not end accepted") }
            failures += sameKeysOnRetry(fixture: fixture, requests: requests, reports: reports)
        }
        switch scenario {
        case .singleEventAccepted:
            if fixture.events.count != 1 || finals != [.accepted] { failures.append("expected one accepted event") }
        case .batchSplitAtProviderLimit:
            if fixture.events.count <= maxBatch {
                failures.append("\(fixture.events.count) events do not exceed the batch limit \(maxBatch)")
            }
            let needed = (fixture.events.count + maxBatch - 1) / max(1, maxBatch)
            let ingest = requests.filter { $0.method == .post }
            if ingest.count < needed { failures.append("\(ingest.count) requests, need at least \(needed)") }
            if !finals.allSatisfy({ $0 == .accepted }) { failures.append("not every event was accepted") }
        case .rateLimitedWithRetryAfter:
            if !reports.contains(where: { report in
                if case .retryable(let reason, let after?) = report.history.first {
                    return reason.kind == .rateLimited && after > .zero
                }
                return false
            }) {
                failures.append("no rate-limited outcome carried Retry-After")
            }
        case .rateLimitedWithoutRetryAfter:
            if !reports.contains(where: { report in
                if case .retryable(let reason, nil) = report.history.first { return reason.kind == .rateLimited }
                return false
            }) {
                failures.append("no rate-limited outcome without Retry-After")
            }
        case .timeoutIsPossiblyDelivered:
            if !reports.contains(where: { $0.history.first == .possiblyDelivered }) {
                failures.append("the timeout was not reported as possiblyDelivered")
            }
        case .badRequestRejected, .unknownMeterOrCustomer:
            let providerRejection = has { outcome in
                if case .rejected(let reason) = outcome { return reason.origin == .provider && !reason.message.isEmpty }
                return false
            }
            let notFound = (thrown as? UsageBillingError)?.code == .notFound
            if !providerRejection && !notFound { failures.append("no provider rejection with a message") }
        case .unauthorizedIsConfigurationError:
            if (thrown as? UsageBillingError)?.code != .configuration {
                failures.append("401 did not throw .configuration")
            }
        case .partialBatchFailure:
            if !(has({ $0 == .accepted }) && has({ if case .rejected = $0 { return true } else { return false } })) {
                failures.append("a partial failure needs both accepted and rejected events")
            }
        case .duplicateIsDuplicate:
            if !has({ $0 == .duplicate }) { failures.append("no event ended as .duplicate") }
        default:
            break
        }
        return failures
    }

    /// The first failed request and its next same-endpoint request must carry the same body and
    /// Idempotency-Key (the retry is the same request, so the provider can dedupe it).
    /// The failed request must be sent again unchanged, unless the provider cannot dedupe and a
    /// lookup after the failure found the event there (it ends `.duplicate` with no second send).
    static func sameKeysOnRetry(fixture: Fixture, requests: [HTTPRequest], reports: [RetryingDeliverer.Report] = [])
        -> [String]
    {
        guard
            let failedIndex = fixture.exchanges.firstIndex(where: { exchange in
                exchange.failure != nil
                    || (exchange.response.map { $0.status == 409 || $0.status == 429 || $0.status >= 500 } ?? false)
            }), failedIndex < requests.count
        else {
            return ["no failed exchange to retry in the fixture"]
        }
        let failed = requests[failedIndex]
        guard
            let retry = requests[(failedIndex + 1)...].first(where: {
                $0.method == failed.method && $0.url == failed.url
            })
        else {
            let lookedUp = requests[(failedIndex + 1)...].contains { $0.method == .get }
            if lookedUp && !reports.isEmpty && reports.allSatisfy({ $0.final == .duplicate }) { return [] }
            return [
                "the failed request to \(failed.url) was never retried"
                    + (lookedUp ? " and the lookup did not end as a duplicate" : "")
            ]
        }
        var problems: [String] = []
        if retry.body != failed.body { problems.append("the retry's body differs from the failed request's") }
        if retry.headers["Idempotency-Key"] != failed.headers["Idempotency-Key"] {
            problems.append("the retry's Idempotency-Key differs from the failed request's")
        }
        return problems
    }
}
