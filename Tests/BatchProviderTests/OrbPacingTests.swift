import Foundation
import OrbUsage
import Testing
import UsageBilling

/// Orb documents ingest limits per environment (requests a second and events a minute); the
/// sink paces a tenth under the key's mode unless the account's raised figures are set.
@Suite("Orb pacing by mode")
struct OrbPacingTests {
    static func settings(_ yaml: String) throws -> OrbSettings {
        try OrbSettings.decode(#require(JSONValue.parse(Data(#"{"api_key": "orb_REDACTED"\#(yaml)}"#.utf8))))
    }

    @Test(arguments: OrbSettings.Mode.allCases)
    func defaultsPaceATenthUnderTheModesDocumentedLimits(_ mode: OrbSettings.Mode) throws {
        let settings = try Self.settings(#", "mode": "\#(mode.rawValue)""#)
        let documented = mode.documentedLimits
        let sink = try OrbSink(settings: settings, client: UnreachableClient())
        let limit = try #require(sink.capabilities.rateLimit)
        #expect(abs(limit.requestsPerSecond - documented.requestsPerSecond * 0.9) < 1e-9)
        let events = try #require(limit.eventsPerSecond)
        #expect(abs(events * 60 - documented.eventsPerMinute * 0.9) < 1e-9)
        #expect(
            limit.eventBurst <= Int(documented.eventsPerMinute), "a burst never spends more than a minute's allowance")
    }

    @Test func liveIsTheDefaultAndRaisedFiguresReplaceIt() throws {
        #expect(try Self.settings("").mode == .live)
        let raised = try Self.settings(#", "requests_per_second": 500, "events_per_minute": 600000"#).rateLimit
        #expect(raised.requestsPerSecond == 500 && raised.eventsPerSecond == 10_000)
    }

    @Test(arguments: [
        (#", "mode": "sandbox""#, "mode"), (#", "events_per_minute": 0"#, "events_per_minute"),
        (#", "requests_per_second": -1"#, "requests_per_second"),
    ])
    func badFiguresNameTheirField(_ setting: String, _ field: String) throws {
        #expect {
            try Self.settings(setting).validate()
        } throws: { error in
            guard let e = error as? UsageBillingError else { return false }
            return e.field == field && e.fix != nil
        }
    }
}

/// A client for sinks built only to read their capabilities.
private struct UnreachableClient: HTTPClient {
    func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        throw UsageBillingError(.transport, "no network in this test", fix: "none needed")
    }
}
