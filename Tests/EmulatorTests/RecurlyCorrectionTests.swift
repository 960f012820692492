import Foundation
import RecurlyUsage
import Testing
import UsageBilling
import UsageBillingCurl
import UsageBillingTesting
import UsageEmulator

/// Recurly takes back usage not yet billed by deleting the record (`DELETE /usage/{id}`): the
/// client against its fixture, and the emulator's list without it afterwards.
@Suite("Recurly corrections", .timeLimit(.minutes(1)))
struct RecurlyCorrectionTests {
    @Test func theClientSendsWhatTheFixtureRecords() async throws {
        let replay = ReplayHTTPClient(
            try Fixture.load(repositoryRoot.appending(path: "Providers/Recurly/Fixtures/api/usage_delete.json"))
                .exchanges)
        try await RecurlyClient(settings: RecurlySettings(apiKey: "recurly_REDACTED"), client: replay)
            .deleteUsage(id: "ufy8p0zl9x01")
        #expect(replay.failures.isEmpty && replay.unconsumed.isEmpty, "\(replay.failures)")
    }

    @Test func theEmulatorDeletesARecordOnce() async throws {
        let emulator = try await UsageEmulator.start()
        let http = try CurlHTTPClient()
        defer { http.shutdown() }
        let settings = RecurlySettings(
            apiKey: "recurly_REDACTED", endpoint: try #require(emulator.endpoints["recurly"]?["endpoint"]),
            addOnID: "code-seats")
        let at = Date().addingTimeInterval(-7200)
        for amount in [5, 7] {
            let created = try await http.send(
                HTTPRequest(
                    method: .post, url: settings.endpoint + "/subscriptions/sub-1/add_ons/code-seats/usage",
                    headers: [
                        "Authorization": settings.apiKey.basicAuthorization,
                        "Accept": "application/vnd.recurly.v2021-02-25", "Content-Type": "application/json",
                    ],
                    body: Data(#"{"amount":\#(amount),"usage_timestamp":"\#(RFC3339.format(at))"}"#.utf8)))
            #expect(created.status == 201, "\(created.bodyText)")
        }
        let client = RecurlyClient(settings: settings, client: http)
        let before = try await client.usage(
            subscription: "sub-1", addOn: "code-seats", begin: at.addingTimeInterval(-60), end: Date())
        let first = try #require(before.first { $0.amount == 5 })
        try await client.deleteUsage(id: first.id)
        let after = try await client.usage(
            subscription: "sub-1", addOn: "code-seats", begin: at.addingTimeInterval(-60), end: Date())
        #expect(after.map(\.amount) == [7], "only the deleted record is gone")
        await #expect {
            try await client.deleteUsage(id: first.id)
        } throws: { error in
            (error as? UsageBillingError)?.code == .notFound
        }
        await emulator.shutdown()
    }
}
