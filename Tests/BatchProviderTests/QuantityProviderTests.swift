import ChargebeeUsage
import Foundation
import PaddleUsage
import RecurlyUsage
import Testing
import UsageBilling
import UsageBillingTesting

@Suite("Read-back and rules: Chargebee, Recurly, Paddle")
struct QuantityProviderTests {
    @Test func chargebeeUsagesFollowNextOffset() async throws {
        let client = try replay("Chargebee", "usages_paginated")
        let day = midnight.addingTimeInterval(-86_400)
        let usages = try await ChargebeeClient(
            settings: ChargebeeSettings(apiKey: "cb_test_REDACTED", site: "acme-test"), client: client
        )
        .usages(from: day.addingTimeInterval(-2 * 86_400), to: midnight, subscriptionID: "AzZjGqTQ1xxK0Ezc")
        #expect(usages.count == 3)
        #expect(usages.map(\.usageDate) == [1_794_873_600, 1_794_960_000, 1_795_046_400])
        #expect(usages.compactMap(\.decimalQuantity) == [42, 42, 42])
        #expect(client.failures.isEmpty && client.unconsumed.isEmpty)
    }

    @Test func recurlyUsageFollowsNext() async throws {
        let client = try replay("Recurly", "usage_paginated")
        let day = midnight.addingTimeInterval(-86_400)
        let usage = try await RecurlyClient(
            settings: RecurlySettings(apiKey: "recurly_REDACTED", addOnID: "code-api-calls"), client: client
        )
        .usage(
            subscription: "uuid-6f2c1d5e8a9b4c3d2e1f0a9b8c7d6e5f", addOn: "code-api-calls",
            begin: day.addingTimeInterval(-2 * 86_400), end: day)
        #expect(usage.count == 3)
        #expect(usage.allSatisfy { $0.merchantTag?.hasPrefix("ub_") == true })
        #expect(client.failures.isEmpty && client.unconsumed.isEmpty)
    }

    private func paddle(_ rounding: PaddleSettings.Rounding, per units: Decimal = 1, max: Int = 100) throws
        -> PaddleSink
    {
        try PaddleSink(
            settings: PaddleSettings(
                apiKey: "pdl_sdbx_apikey_REDACTED", priceID: "pri_1", unitsPerQuantity: units, rounding: rounding,
                maxQuantity: max),
            client: ReplayHTTPClient([]))
    }

    @Test(arguments: [
        (PaddleSettings.Rounding.up, Decimal(1), Decimal(string: "12.2")!, 13),
        (.down, 1, Decimal(string: "12.8")!, 12),
        (.nearest, 1, Decimal(string: "12.5")!, 13), (.nearest, 1000, 1_499, 1), (.up, 1000, 1_001, 2),
        (.reject, 1000, 3_000, 3),
    ])
    func paddleQuantitiesScaleAndRound(
        _ rounding: PaddleSettings.Rounding, _ per: Decimal, _ usage: Decimal, _ expected: Int
    ) throws {
        guard case .success(let q?) = try paddle(rounding, per: per).quantity(for: usage) else {
            Issue.record("expected a quantity")
            return
        }
        #expect(q == expected)
    }

    @Test(arguments: [
        (Decimal(0), PaddleSettings.Rounding.reject), (Decimal(string: "0.4")!, .down),
        (Decimal(string: "0.4")!, .nearest),
    ])
    func paddleZeroPeriodsAreSkipped(_ usage: Decimal, _ rounding: PaddleSettings.Rounding) throws {
        guard case .success(nil) = try paddle(rounding).quantity(for: usage) else {
            Issue.record("a period that bills 0 must be skipped")
            return
        }
    }

    @Test(arguments: [
        (Decimal(string: "12.5")!, PaddleSettings.Rounding.reject, 100, "quantity_not_whole", "rounding"),
        (Decimal(101), .reject, 100, "quantity_above_price_range", "max_quantity"),
        (Decimal(string: "100.2")!, .up, 100, "quantity_above_price_range", "999999999"),
        (Decimal(-1), .nearest, 100, "quantity_negative", "≥ 1"),
    ])
    func paddleQuantityRulesExplainTheFix(
        _ usage: Decimal, _ rounding: PaddleSettings.Rounding, _ max: Int, _ code: String, _ fix: String
    ) throws {
        guard case .failure(let reason) = try paddle(rounding, max: max).quantity(for: usage) else {
            Issue.record("expected a rejection")
            return
        }
        #expect(reason.code == code)
        #expect(reason.field == "quantity")
        #expect(reason.message.contains(fix))
    }

    @Test func paddleSandboxKeysPickTheSandboxHost() {
        #expect(PaddleSettings(apiKey: "pdl_sdbx_apikey_REDACTED").endpoint == "https://sandbox-api.paddle.com")
        #expect(PaddleSettings(apiKey: "pdl_live_apikey_REDACTED").endpoint == "https://api.paddle.com")
    }

    @Test(arguments: [
        ("{\"api_key\": \"k\"}", "site"), ("{\"api_key\": \"k\", \"site\": \"acme.chargebee.com\"}", "site"),
        ("{\"api_key\": \"k\", \"site\": \"acme\"}", "item_price_id"),
        (
            "{\"api_key\": \"k\", \"site\": \"acme\", \"mode\": \"usage_events\", \"max_batch_size\": 501}",
            "max_batch_size"
        ),
        (
            "{\"api_key\": \"k\", \"site\": \"acme\", \"item_price_id\": \"p\", \"dedupe_option\": \"merge\"}",
            "dedupe_option"
        ),
        (
            "{\"api_key\": \"k\", \"site\": \"acme\", \"item_price_id\": \"p\", \"aggregate\": {\"window\": \"7m\"}}",
            "aggregate.window"
        ),
    ])
    func chargebeeBadSettingsNameTheKey(_ json: String, _ field: String) throws {
        let settings = try #require(JSONValue.parse(Data(json.utf8)))
        #expect {
            _ = try ChargebeeSink.kind.makeSink(settings, ReplayHTTPClient([]), SystemClock(), "chargebee")
        } throws: { ($0 as? UsageBillingError)?.field == field }
    }

    @Test func chargebeeUsagesModeDeclaresAggregationAndEventsModeDoesNot() throws {
        let usages = try ChargebeeSink(
            settings: ChargebeeSettings(apiKey: "k", site: "acme", itemPriceID: "p"), client: ReplayHTTPClient([]))
        #expect(usages.capabilities.aggregation?.window == .fixed(seconds: 86_400))
        let events = try ChargebeeSink(
            settings: ChargebeeSettings(apiKey: "k", site: "acme", mode: .usageEvents), client: ReplayHTTPClient([]))
        #expect(events.capabilities.aggregation == nil)
        #expect(events.capabilities.maxBatchSize == 500)
    }

    @Test func recurlyAndPaddleCheckBeforeRetry() throws {
        let recurly = try RecurlySink(
            settings: RecurlySettings(apiKey: "k", addOnID: "code-a"), client: ReplayHTTPClient([]))
        let paddle = try self.paddle(.reject)
        #expect(recurly.capabilities.idempotency == .clientCheckBeforeRetry)
        #expect(paddle.capabilities.idempotency == .clientCheckBeforeRetry)
        #expect(recurly.capabilities.aggregation != nil && paddle.capabilities.aggregation != nil)
    }

    @Test func chargebeeLongEventIDsAreHashedToFit() {
        let short = "019aa0f4-7c00-7000-8000-000000000001"
        #expect(ChargebeeSink.deduplicationID(short) == short)
        let long = String(repeating: "x", count: 40)
        #expect(ChargebeeSink.deduplicationID(long).count <= 36)
        #expect(ChargebeeSink.deduplicationID(long) == ChargebeeSink.deduplicationID(long))
    }
}
