import Foundation
import Testing
import UsageBilling
import UsageBillingTesting

private let hour: Int64 = 3600
private let t0 = Date(timeIntervalSince1970: 1_795_132_800)  // 2026-11-20T00:00:00Z

private func ev(
    _ id: String, _ offset: TimeInterval, _ quantity: Decimal = 1, customer: String = "acme",
    name: String = "api_request"
) -> UsageEvent {
    UsageEvent(id: id, name: name, customer: customer, timestamp: t0.addingTimeInterval(offset), quantity: quantity)
}

private func spec(
    _ window: String = "1h", _ formula: AggregationFormula = .sum, grace: Duration = .seconds(300),
    report: AggregationReport = .increments
) -> AggregationSpec {
    AggregationSpec(
        window: AggregationWindow.parse(window, anchor: nil) ?? .fixed(seconds: hour), formula: formula, grace: grace,
        report: report)
}

@Suite("Windowed aggregation")
struct AggregationTests {
    @Test(arguments: [
        (0.0, 0.0, 3600.0), (3599.999, 0.0, 3600.0), (3600.0, 3600.0, 7200.0), (-0.001, -3600.0, 0.0),
    ])
    func hourWindowBoundaries(_ offset: Double, _ start: Double, _ end: Double) {
        let bounds = AggregationWindow.fixed(seconds: hour).bounds(containing: t0.addingTimeInterval(offset))
        #expect(bounds.start == t0.addingTimeInterval(start))
        #expect(bounds.end == t0.addingTimeInterval(end))
    }

    @Test func dayWindowsStartAtUTCMidnight() throws {
        let window = try #require(AggregationWindow.parse("1d", anchor: nil))
        let bounds = window.bounds(containing: t0.addingTimeInterval(86_399))
        #expect(RFC3339.format(bounds.start) == "2026-11-20T00:00:00Z")
        #expect(RFC3339.format(bounds.end) == "2026-11-21T00:00:00Z")
    }

    @Test func calendarAndAnchoredMonths() throws {
        let month = try #require(AggregationWindow.parse("month", anchor: nil)).bounds(containing: t0)
        #expect(RFC3339.format(month.start) == "2026-11-01T00:00:00Z")
        #expect(RFC3339.format(month.end) == "2026-12-01T00:00:00Z")
        let anchor = try #require(RFC3339.parse("2026-01-31T10:00:00Z"))
        let period = try #require(AggregationWindow.parse("billing_period", anchor: anchor))
        // Anchored on the 31st: February's period ends on its last day (Calendar clamps), and a
        // date just before the period edge stays in the earlier period.
        let feb = period.bounds(containing: try #require(RFC3339.parse("2026-02-15T00:00:00Z")))
        #expect(RFC3339.format(feb.start) == "2026-01-31T10:00:00Z")
        #expect(RFC3339.format(feb.end) == "2026-02-28T10:00:00Z")
        let edge = period.bounds(containing: try #require(RFC3339.parse("2026-01-31T09:59:59Z")))
        #expect(RFC3339.format(edge.end) == "2026-01-31T10:00:00Z")
        #expect(AggregationWindow.parse("billing_period", anchor: nil) == nil)
    }

    @Test(arguments: ["7m", "0m", "90s", "1x", "", "month2"])
    func windowsThatDoNotTileADayAreRefused(_ text: String) {
        #expect(AggregationWindow.parse(text, anchor: nil) == nil)
    }

    @Test(arguments: [
        (AggregationFormula.sum, Decimal(16)), (.count, Decimal(4)), (.max, Decimal(9)), (.last, Decimal(2)),
    ])
    func formulas(_ formula: AggregationFormula, _ expected: Decimal) {
        var aggregator = WindowAggregator(spec: spec("1h", formula), namespace: "p")
        // Out of order on purpose: "last" is by timestamp, not arrival.
        for e in [ev("a", 60, 3), ev("d", 3000, 2), ev("b", 120, 9), ev("c", 600, 2)] { aggregator.add(e) }
        let records = aggregator.flush()
        #expect(records.count == 1)
        #expect(records.first?.quantity == expected)
        #expect(AggregateInfo(try! #require(records.first)).events == 4)
    }

    @Test func lastBreaksTimestampTiesByID() {
        var aggregator = WindowAggregator(spec: spec("1h", .last), namespace: "p")
        for e in [ev("b", 60, 7), ev("a", 60, 5)] { aggregator.add(e) }
        #expect(aggregator.flush().first?.quantity == 7)
    }

    @Test func windowsCloseOnlyAfterEndPlusGrace() {
        var aggregator = WindowAggregator(spec: spec("1h", grace: .seconds(300)), namespace: "p")
        aggregator.add(ev("a", 10, 2))
        aggregator.add(ev("b", 3700, 3))  // next hour
        #expect(aggregator.closeDue(now: t0.addingTimeInterval(3600)).isEmpty)
        #expect(aggregator.closeDue(now: t0.addingTimeInterval(3899)).isEmpty)
        let first = aggregator.closeDue(now: t0.addingTimeInterval(3900))
        #expect(first.map(\.quantity) == [2])
        #expect(first.first?.timestamp == t0)
        #expect(aggregator.closeDue(now: t0.addingTimeInterval(3900)).isEmpty, "an emitted window is not emitted again")
        #expect(aggregator.closeDue(now: t0.addingTimeInterval(7500)).map(\.quantity) == [3])
    }

    @Test func lateEventsLandInTheirOwnWindowAsTheNextRevision() throws {
        var aggregator = WindowAggregator(spec: spec("1h"), namespace: "stripe#0")
        aggregator.add(ev("a", 10, 2))
        let first = try #require(aggregator.closeDue(now: t0.addingTimeInterval(4000)).first)
        aggregator.add(ev("late", 20, 5))  // belongs to the emitted hour
        aggregator.add(ev("now", 7300, 1))  // the current hour
        let next = aggregator.closeDue(now: t0.addingTimeInterval(7300))
        #expect(next.count == 1, "only the late window is due; the current hour is open")
        let late = try #require(next.first)
        #expect(late.timestamp == t0)
        #expect(late.quantity == 5, "increments: the late event's quantity")
        #expect(AggregateInfo(late).revision == 1)
        #expect(AggregateInfo(late).total == 7)
        #expect(late.id != first.id)
    }

    @Test func totalsReportCarriesTheWindowValue() {
        var aggregator = WindowAggregator(spec: spec("1h", .max, report: .totals), namespace: "p")
        aggregator.add(ev("a", 10, 4))
        _ = aggregator.flush()
        aggregator.add(ev("b", 20, 6))
        #expect(aggregator.flush().map(\.quantity) == [6])
        aggregator.add(ev("c", 30, 1))  // max unchanged: nothing to bill
        #expect(aggregator.flush().isEmpty)
    }

    @Test func idsAreDeterministicAndMatchTheFixtureComposer() throws {
        var a = WindowAggregator(spec: spec("1d"), namespace: "chargebee#0")
        var b = WindowAggregator(spec: spec("1d"), namespace: "chargebee#0")
        a.add(ev("x", -86_400 + 5, 42))
        b.add(ev("y", -86_400 + 9, 42))
        let ra = try #require(a.flush().first), rb = try #require(b.flush().first)
        #expect(ra.id == rb.id, "same (lane, customer, meter, window start) → same id, whatever the events")
        // scripts/fixturekit.py window_record("chargebee#0", "acme", "api_request", 2026-11-19T00:00Z, ...)
        let fixture = try Fixture.load(
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent()
                .appending(path: "Providers/Chargebee/Fixtures/single_event_accepted.json"))
        #expect(fixture.events.first?.id == ra.id)
        #expect(
            fixture.events.first?.properties == ra.properties.merging([AggregateInfo.Key.events: .number(7)]) { $1 })
        var other = WindowAggregator(spec: spec("1d"), namespace: "chargebee#1")
        other.add(ev("x", -86_400 + 5, 42))
        #expect(other.flush().first?.id != ra.id, "another lane gets another id")
    }

    @Test func stateRoundTripsSoARestartNeitherLosesNorDoubleCounts() throws {
        var before = WindowAggregator(spec: spec("1h"), namespace: "p")
        before.add(ev("a", 10, 2))
        _ = before.closeDue(now: t0.addingTimeInterval(4000))
        before.add(ev("b", 3700, 3))
        // Saved and loaded as the spool does (JSON per window).
        let pairs = Array(before.windows)
        let keys = try JSONDecoder().decode([WindowKey].self, from: JSONEncoder().encode(pairs.map(\.key)))
        let states = try JSONDecoder().decode([WindowState].self, from: JSONEncoder().encode(pairs.map(\.value)))
        var after = WindowAggregator(
            spec: spec("1h"), namespace: "p", windows: Dictionary(uniqueKeysWithValues: zip(keys, states)))
        #expect(after.flush().map(\.quantity) == [3], "the emitted hour stays emitted; the open one is billed once")
    }

    @Test(arguments: [
        ("{\"window\": \"7m\"}", "aggregate.window"),
        ("{\"window\": \"1h\", \"formula\": \"avg\"}", "aggregate.formula"),
        ("{\"window\": \"1h\", \"grace\": \"soon\"}", "aggregate.grace"),
        ("{\"window\": \"billing_period\"}", "aggregate.window"),
        ("{\"window\": \"1h\", \"report\": \"deltas\"}", "aggregate.report"),
        ("{\"window\": \"1h\", \"windw\": 1}", "aggregate.windw"),
        ("{\"window\": \"billing_period\", \"anchor\": \"3rd\"}", "aggregate.anchor"),
    ])
    func badSpecsNameTheField(_ json: String, _ field: String) {
        #expect {
            _ = try JSONDecoder().decode(AggregationSpec.self, from: Data(json.utf8))
        } throws: { ($0 as? UsageBillingError)?.field == field }
    }
}
