import ChargebeeUsage
import Foundation
import Testing
import UsageBilling
import UsageBillingCurl
import UsageBillingTesting
import UsageEmulator

/// Chargebee corrects a usage record by deleting it (and adding the right one again): the
/// client against its fixture, and the emulator's usage list without it afterwards.
@Suite("Chargebee corrections", .timeLimit(.minutes(1)))
struct ChargebeeCorrectionTests {
    @Test func theClientSendsWhatTheFixtureRecords() async throws {
        let replay = ReplayHTTPClient(
            try Fixture.load(repositoryRoot.appending(path: "Providers/Chargebee/Fixtures/api/usage_delete.json"))
                .exchanges)
        let client = try ChargebeeClient(
            settings: ChargebeeSettings(apiKey: "cb_test_REDACTED", site: "acme-test", itemPriceID: "p"),
            client: replay)
        let deleted = try await client.deleteUsage(
            subscriptionID: "AzZjGqTQ1xxK0Ezc", usageID: "ub_2856636e133f554e020f703903aa4309",
            idempotencyKey: "delete-ub_2856636e133f554e020f703903aa4309")
        #expect(deleted.id == "ub_2856636e133f554e020f703903aa4309" && deleted.decimalQuantity == 42)
        #expect(replay.failures.isEmpty && replay.unconsumed.isEmpty, "\(replay.failures)")
    }

    @Test func theEmulatorDeletesOnceAndAnswersARetryAsTheFirst() async throws {
        let emulator = try await UsageEmulator.start()
        let http = try CurlHTTPClient()
        defer { http.shutdown() }
        let base = try #require(emulator.endpoints["chargebee"]?["endpoint"])
        let auth = "Basic " + Data("cb_REDACTED:".utf8).base64EncodedString()
        let date = Int64(Date().timeIntervalSince1970) - 3600
        for (id, quantity) in [("u-1", 5), ("u-2", 7)] {
            let created = try await http.send(
                HTTPRequest(
                    method: .post, url: base + "/api/v2/subscriptions/sub_1/usages",
                    headers: ["Authorization": auth, "Content-Type": "application/x-www-form-urlencoded"],
                    body: Data(
                        "id=\(id)&item_price_id=seats-USD&quantity=\(quantity)&usage_date=\(date + Int64(quantity))"
                            .utf8)))
            #expect(created.status == 200, "\(created.bodyText)")
        }
        let client = try ChargebeeClient(
            settings: ChargebeeSettings(
                apiKey: "cb_REDACTED", site: "acme-test", endpoint: base, itemPriceID: "seats-USD"),
            client: http)
        let deleted = try await client.deleteUsage(subscriptionID: "sub_1", usageID: "u-1", idempotencyKey: "del-u-1")
        #expect(deleted.decimalQuantity == 5)
        let again = try await client.deleteUsage(subscriptionID: "sub_1", usageID: "u-1", idempotencyKey: "del-u-1")
        #expect(again.id == "u-1", "a retry with the same key is answered as the first was")
        let left = await emulator.accepted("chargebee")
        #expect(left.map(\.quantity) == [7], "only the deleted record is gone")
        await #expect {
            try await client.deleteUsage(subscriptionID: "sub_1", usageID: "u-1", idempotencyKey: "del-u-1-later")
        } throws: { error in
            (error as? UsageBillingError)?.code == .notFound
        }
        await emulator.shutdown()
    }
}
