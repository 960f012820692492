import Foundation
import PaddleUsage
import Testing
import UsageBilling
import UsageBillingTesting

/// Paddle's usage events (kind `paddle_usage`, beta): the kind says it is beta and which docs it
/// follows, the batch limit is Paddle's, and reconciliation reads the customer's usage balances
/// through the meters that draw them down.
@Suite("Paddle usage events (beta)")
struct PaddleUsageTests {
    @Test func theKindSaysItIsBetaAndTheDateOfTheDocsItFollows() {
        let notice = PaddleUsageSink.kind.notice ?? ""
        #expect(notice.hasPrefix("beta") && notice.contains(PaddleUsageSettings.docsChecked))
        #expect(PaddleSink.kind.notice == nil, "the one-time charges are generally available")
    }

    @Test(arguments: [0, 101])
    func aBatchSizePaddleCannotTakeIsNamed(_ size: Int) {
        #expect {
            try PaddleUsageSettings(apiKey: "pdl_sdbx_apikey_REDACTED", maxBatchSize: size).validate()
        } throws: { ($0 as? UsageBillingError)?.field == "max_batch_size" }
    }

    @Test func theEventKeyAndOccurredAtAreTheSameOnEveryAttempt() async throws {
        let now = Date(timeIntervalSince1970: 1_795_176_000)
        let client = Capturing()
        let event = UsageEvent(
            id: "evt-1", name: "api_call", customer: "ctm_01hv8wt8nffez4p2t6typn4a5j",
            timestamp: now.addingTimeInterval(-90), quantity: 3)
        for attempt in [now, now.addingTimeInterval(3600)] {
            let sink = try PaddleUsageSink(
                settings: PaddleUsageSettings(apiKey: "pdl_sdbx_apikey_REDACTED"), client: client,
                clock: TestClock(now: attempt))
            #expect(try await sink.deliver([event]) == [.accepted])
        }
        let bodies = client.requests.current.map { $0.body ?? Data() }
        #expect(bodies.count == 2 && bodies[0] == bodies[1], "Paddle counts a retry with a changed occurred_at again")
        let sent = try #require(JSONValue.parse(bodies[0])?["events"]?.arrayValue?.first)
        #expect(
            sent["event_key"]?.stringValue == "evt-1"
                && sent["occurred_at"]?.stringValue == RFC3339.format(event.timestamp))
    }

    @Test func reconciliationReadsTheBalanceOfEachActionsUnit() async throws {
        let client = ReplayHTTPClient(
            try Fixture.load(root.appending(path: "Providers/Paddle/Fixtures/usage/api/meters_and_usage_balances.json"))
                .exchanges)
        let readBack = PaddleUsageReadBack(
            settings: PaddleUsageSettings(apiKey: "pdl_sdbx_apikey_REDACTED"), client: client)
        let now = Date(timeIntervalSince1970: 1_795_176_000)
        let rows = try await readBack.usage(
            customer: "ctm_01hv8wt8nffez4p2t6typn4a5j", meters: ["api_call"], from: now.addingTimeInterval(-86_400),
            to: now, granularity: .day)
        #expect(rows.map(\.meter) == ["api_call"] && rows.map(\.value) == [7500])
        #expect(client.failures.isEmpty && client.unconsumed.isEmpty)
    }
}

/// Answers every request as Paddle accepts a batch, and keeps the requests.
private final class Capturing: HTTPClient, Sendable {
    let requests = Locked<[HTTPRequest]>([])
    func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        requests.with { $0.append(request) }
        return HTTPResponse(
            status: 201, headers: ["Content-Type": "application/json"],
            body: Data(#"{"data":[{"status":"accepted"}],"meta":{"request_id":"r"}}"#.utf8))
    }
}
