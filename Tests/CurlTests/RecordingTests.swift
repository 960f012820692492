import Foundation
import Testing
import UsageBilling
import UsageBillingCurl
import UsageBillingTesting
import UsageTestSupport

@Suite("RecordingHTTPClient")
struct RecordingTests {
    @Test func recordsRedactedExchangesThatReplay() async throws {
        let key = "sk_" + "test_" + String(repeating: "Rk7", count: 9)
        let server = try await LoopbackHTTPServer.start { request in
            .respond(
                .json(
                    200, .object(["echo_key": .string(request.headers["Authorization"] ?? ""), "ok": .bool(true)]),
                    headers: ["Request-Id": "req_1"]))
        }
        let curl = try CurlHTTPClient()
        defer { curl.shutdown() }
        let recorder = RecordingHTTPClient(wrapping: curl, secrets: [key])
        let request = HTTPRequest(
            method: .post, url: server.baseURL + "/v1/billing/meter_events",
            headers: [
                "Authorization": "Bearer \(key)", "Content-Type": "application/x-www-form-urlencoded",
                "Idempotency-Key": "e1",
            ],
            body: Data("event_name=api&identifier=e1&note=\(key)".utf8))
        let live = try await recorder.send(request)
        #expect(live.status == 200)

        let folder = FileManager.default.temporaryDirectory.appending(path: "ub-record-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appending(path: "recorded.json")
        try recorder.writeFixture(
            to: file, scenario: nil, description: "recorded", settings: .object(["secret_key": .string(key)]),
            events: [], now: nil, expected: [:])
        let text = try String(contentsOf: file, encoding: .utf8)
        #expect(!text.contains(key))
        #expect(SecretScanner.findSecrets(in: text).isEmpty)
        #expect(text.contains("sk_test_REDACTED"))

        let fixture = try Fixture.load(file)
        #expect(fixture.exchanges.count == 1)
        #expect(fixture.exchanges[0].request.form?.contains("identifier=e1") == true)
        #expect(fixture.exchanges[0].response?.json?["ok"] == .bool(true))
        // The recorded exchange replays for the same request, once its credential is the placeholder.
        var replayed = request
        replayed.headers["Authorization"] = "Bearer sk_test_REDACTED"
        replayed.body = Data("event_name=api&identifier=e1&note=sk_test_REDACTED".utf8)
        let replay = ReplayHTTPClient(fixture.exchanges)
        #expect(try await replay.send(replayed).status == 200)
        #expect(replay.unconsumed.isEmpty && replay.failures.isEmpty)
        await server.shutdown()
    }

    @Test func recordsTransportFailures() async throws {
        let server = try await LoopbackHTTPServer.start { _ in .reset }
        let curl = try CurlHTTPClient()
        defer { curl.shutdown() }
        let recorder = RecordingHTTPClient(wrapping: curl)
        _ = try? await recorder.send(HTTPRequest(method: .post, url: server.baseURL + "/x", body: Data("a=1".utf8)))
        #expect(recorder.exchanges.first?.failure == .connectionReset)
        await server.shutdown()
    }
}
