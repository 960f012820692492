import Foundation
import OrbUsage
import Testing
import UsageBilling
import UsageBillingTesting

/// Orb rejects a whole batch that repeats an `idempotency_key` with a different body, so the sink
/// sends each key once per batch and refuses a reused id with other content before sending.
@Suite("Orb: one idempotency key per batch")
struct OrbBatchKeyTests {
    @Test func aRepeatedIDIsSentOnceAndAReusedOneIsRefusedLocally() async throws {
        let client = AnsweringClient()
        let settings = try OrbSettings.decode(#require(JSONValue.parse(Data(#"{"api_key": "orb_REDACTED"}"#.utf8))))
        let now = Date(timeIntervalSince1970: 1_795_176_000)
        let sink = try OrbSink(settings: settings, client: client, clock: TestClock(now: now))
        let a = UsageEvent(
            id: "evt-a", name: "api_request", customer: "acme", timestamp: now.addingTimeInterval(-60), quantity: 5)
        var changed = a
        changed.quantity = 7
        let b = UsageEvent(
            id: "evt-b", name: "api_request", customer: "acme", timestamp: now.addingTimeInterval(-60), quantity: 1)

        let outcomes = try await sink.deliver([a, a, changed, b])

        #expect([outcomes[0], outcomes[1], outcomes[3]] == [DeliveryOutcome.accepted, .accepted, .accepted])
        guard case .rejected(let reason) = outcomes[2] else {
            Issue.record("the reused id with other content was not refused: \(outcomes[2])")
            return
        }
        #expect(
            reason.code == "idempotency_key_reused" && reason.origin == RejectionReason.Origin.local
                && reason.message.contains("evt-a"))
        let requests = client.requests.current
        #expect(requests.count == 1)
        let keys = try #require(JSONValue.parse(requests.first?.body ?? Data())?["events"]?.arrayValue).compactMap {
            $0["idempotency_key"]?.stringValue
        }
        #expect(keys == ["evt-a", "evt-b"], "each key once, the first copy's body")
    }
}

/// Answers every ingest with Orb's success body and keeps the requests.
private final class AnsweringClient: HTTPClient, Sendable {
    let requests = Locked<[HTTPRequest]>([])
    func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        requests.with { $0.append(request) }
        return HTTPResponse(
            status: 200, headers: ["Content-Type": "application/json"], body: Data(#"{"validation_failed":[]}"#.utf8))
    }
}
