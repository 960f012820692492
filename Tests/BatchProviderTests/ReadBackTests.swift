import Foundation
import MetronomeUsage
import OpenMeterUsage
import OrbUsage
import Testing
import UsageBilling
import UsageBillingTesting

let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

func replay(_ provider: String, _ name: String) throws -> ReplayHTTPClient {
    ReplayHTTPClient(
        try Fixture.load(root.appending(path: "Providers/\(provider)/Fixtures/api/\(name).json")).exchanges)
}

let midnight = Date(timeIntervalSince1970: 1_795_132_800)  // 2026-11-20T00:00:00Z

@Suite("Read-back: Orb, Metronome, OpenMeter")
struct ReadBackTests {
    @Test func orbSubscriptionUsagePerDay() async throws {
        let client = try replay("Orb", "subscription_usage_daily")
        let usage = try await OrbClient(settings: OrbSettings(apiKey: "orb_REDACTED"), client: client)
            .subscriptionUsage(
                subscriptionID: "sub_Q8x2Lm", start: midnight.addingTimeInterval(-86_400),
                end: midnight.addingTimeInterval(86_400))
        #expect(usage.count == 1)
        #expect(usage.first?.metricName == "API requests")
        #expect(usage.first?.windows.map(\.quantity) == [120, 35.5])
        #expect(client.failures.isEmpty && client.unconsumed.isEmpty)
    }

    @Test func orbEventSearchByIdempotencyKey() async throws {
        let client = try replay("Orb", "events_search")
        let found = try await OrbClient(settings: OrbSettings(apiKey: "orb_REDACTED"), client: client)
            .searchEvents(ids: ["019aa0f4-7c00-7000-8000-000000000001", "019aa0f4-7c00-7000-8000-000000000002"])
        #expect(found.map(\.id) == ["019aa0f4-7c00-7000-8000-000000000001"])
        #expect(found.first?.properties["quantity"] == .number(5))
        #expect(client.failures.isEmpty && client.unconsumed.isEmpty)
    }

    @Test func metronomeUsageFollowsNextPage() async throws {
        let client = try replay("Metronome", "usage_paginated")
        let rows = try await MetronomeClient(settings: MetronomeSettings(apiKey: "metronome_REDACTED"), client: client)
            .usage(start: midnight.addingTimeInterval(-2 * 86_400), end: midnight)
        #expect(rows.count == 3)
        #expect(rows.compactMap(\.value) == [120, 7.5])
        #expect(client.failures.isEmpty && client.unconsumed.isEmpty)
    }

    @Test(arguments: [(1.0, 86_401.0, "starting_on"), (0.0, 90_000.0, "ending_before"), (0.0, 3600.0, "ending_before")])
    func metronomeWindowsMustBeUTCMidnightAligned(_ startOffset: Double, _ endOffset: Double, _ field: String)
        async throws
    {
        let client = ReplayHTTPClient([])
        await #expect {
            _ = try await MetronomeClient(settings: MetronomeSettings(apiKey: "metronome_REDACTED"), client: client)
                .usage(start: midnight.addingTimeInterval(startOffset), end: midnight.addingTimeInterval(endOffset))
        } throws: { ($0 as? UsageBillingError)?.field == field }
        #expect(client.received.isEmpty)
    }

    @Test func openMeterMeterQueryPerHour() async throws {
        let client = try replay("OpenMeter", "meter_query_hourly")
        let now = Date(timeIntervalSince1970: 1_795_176_000)
        let rows = try await OpenMeterClient(settings: OpenMeterSettings(apiKey: "om_REDACTED"), client: client)
            .query(
                meter: "api_requests", from: now.addingTimeInterval(-3 * 3600), to: now, windowSize: .hour,
                subjects: ["customer-acme"])
        #expect(rows.map(\.value) == [12, 0, 30.5])
        #expect(client.failures.isEmpty && client.unconsumed.isEmpty)
    }

    @Test func openMeterUnknownMeterIsNotFound() async throws {
        let client = try replay("OpenMeter", "meter_query_unknown_meter")
        let now = Date(timeIntervalSince1970: 1_795_176_000)
        await #expect {
            _ = try await OpenMeterClient(settings: OpenMeterSettings(apiKey: "om_REDACTED"), client: client)
                .query(meter: "gpu_seconds", from: now.addingTimeInterval(-3 * 3600), to: now)
        } throws: { ($0 as? UsageBillingError)?.code == .notFound }
    }
}
