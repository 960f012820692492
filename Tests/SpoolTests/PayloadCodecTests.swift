import Foundation
import Testing
import UsageBilling
@testable import UsageSpool

@Suite("Spool payload codec")
struct PayloadCodecTests {
    static let samples: [UsageEvent] = [
        UsageEvent(
            id: "e1", name: "api_request", customer: "acme", timestamp: Date(timeIntervalSince1970: 1_795_176_000.123),
            quantity: 150),
        UsageEvent(
            id: String(repeating: "é", count: 200), name: "gpu_seconds", customer: "ünïcødé 顧客",
            timestamp: Date(timeIntervalSince1970: -1.5),
            quantity: Decimal(string: "12345678901234567890.000000000001") ?? 0,
            properties: [
                "region": .string("eu-west"), "weight": .number(Decimal(string: "0.1") ?? 0), "beta": .bool(true),
                "gamma": .bool(false), "": .string(""),
            ]),
        UsageEvent(
            id: "", name: "", customer: "", timestamp: Date(timeIntervalSince1970: 0),
            quantity: Decimal(string: "-0.000001") ?? 0),
    ]

    @Test(arguments: samples)
    func roundTripsExactly(_ event: UsageEvent) throws {
        let data = PayloadCodec.encode(event)
        #expect(data.first == 0x01)
        let back = try PayloadCodec.decode(data)
        #expect(back == event)
        #expect(back.timestamp.timeIntervalSince1970.bitPattern == event.timestamp.timeIntervalSince1970.bitPattern)
    }

    /// Spools written before the binary form hold JSON payloads: they still read.
    @Test func readsJSONPayloadsOfEarlierVersions() throws {
        let event = Self.samples[1]
        let legacy = try JSONEncoder().encode(event)
        #expect(try PayloadCodec.decode(legacy) == event)
    }

    /// A truncated or garbled payload is an error, never a wrong event.
    @Test func damagedPayloadsThrow() throws {
        let data = PayloadCodec.encode(Self.samples[1])
        for cut in [1, 5, data.count / 2, data.count - 1] {
            #expect(throws: UsageBillingError.self) { _ = try PayloadCodec.decode(data.prefix(cut)) }
        }
        var garbled = data
        garbled[1] = 0xFF
        #expect(throws: UsageBillingError.self) { _ = try PayloadCodec.decode(garbled) }
    }
}
