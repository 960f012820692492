import Foundation
import OpenMeterUsage
import Testing
import UsageBilling
import UsageBillingTesting

/// Kong Konnect Metering & Billing speaks OpenMeter's v3 API: a region picks the host, the path is
/// `/v3/openmeter/events`, and read-back finds the meter by key before querying it by id.
@Suite("OpenMeter on Kong Konnect (v3)")
struct OpenMeterKonnectTests {
    static func settings(_ json: String) throws -> OpenMeterSettings {
        try OpenMeterSettings.decode(#require(JSONValue.parse(Data(json.utf8))))
    }

    @Test(arguments: OpenMeterSettings.konnectRegions)
    func aRegionPicksItsHostAndTheV3API(_ region: String) throws {
        let settings = try Self.settings(#"{"region": "\#(region)", "api_key": "spat_REDACTED"}"#)
        try settings.validate()
        #expect(settings.endpoint == "https://\(region).api.konghq.com/v3" && settings.api == .v3)
        #expect(settings.eventsPath == "/openmeter/events")
    }

    @Test func selfHostedStaysOnV1AndAKonnectEndpointMeansV3() throws {
        #expect(try Self.settings(#"{"endpoint": "http://openmeter.internal:8888"}"#).api == .v1)
        #expect(
            try Self.settings(#"{"endpoint": "https://au.api.konghq.com/v3", "api_key": "kpat_REDACTED"}"#).api == .v3)
        #expect(
            try Self.settings(#"{"endpoint": "http://localhost:8888/api/v3", "api": "v3"}"#).eventsPath
                == "/openmeter/events")
    }

    @Test(arguments: [
        (#"{"region": "ap", "api_key": "spat_REDACTED"}"#, "region"),
        (#"{"region": "eu"}"#, "api_key"),
        (#"{"region": "eu", "api_key": "spat_REDACTED", "api": "v1"}"#, "api"),
        (#"{"endpoint": "https://eu.api.konghq.com", "api_key": "spat_REDACTED"}"#, "endpoint"),
    ])
    func aSettingKonnectCannotTakeIsNamedWithTheFix(_ json: String, _ field: String) throws {
        #expect {
            try Self.settings(json).validate()
        } throws: { error in
            guard let e = error as? UsageBillingError else { return false }
            return e.field == field && e.fix?.isEmpty == false
        }
    }

    @Test func readBackFindsTheMeterByKeyThenQueriesItsID() async throws {
        let client = try replay("OpenMeter", "meter_query_hourly--konnect")
        let now = Date(timeIntervalSince1970: 1_795_176_000)
        let settings = try Self.settings(#"{"region": "eu", "api_key": "spat_REDACTED"}"#)
        let rows = try await OpenMeterClient(settings: settings, client: client)
            .query(
                meter: "api_requests", from: now.addingTimeInterval(-3 * 3600), to: now, windowSize: .hour,
                subjects: ["customer-acme"])
        #expect(rows.map(\.value) == [12, 30.5] && rows.allSatisfy { $0.subject == "customer-acme" })
        #expect(client.failures.isEmpty && client.unconsumed.isEmpty)
    }

    @Test func aMeterKeyKonnectDoesNotHaveIsNamed() async throws {
        let client = try replay("OpenMeter", "meter_unknown_key--konnect")
        let settings = try Self.settings(#"{"region": "eu", "api_key": "spat_REDACTED"}"#)
        await #expect {
            _ = try await OpenMeterClient(settings: settings, client: client).meterID(key: "gpu_seconds")
        } throws: { error in
            guard let e = error as? UsageBillingError else { return false }
            return e.message.contains("gpu_seconds") && e.field == "meter_slugs"
        }
    }
}
