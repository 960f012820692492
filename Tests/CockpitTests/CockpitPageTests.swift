import Foundation
import Testing
import UsageBilling
@testable import UsageCockpit
@testable import UsageReconciliation
@testable import UsageSpool

/// The pages render what they are given, escape every piece of user data, and reference
/// nothing outside themselves. (They are loaded in a real browser by the CLI tests.)
@Suite("Cockpit pages")
struct CockpitPageTests {
    static let hostile = #"<script>alert("x")</script>'"#
    static let day = Date(timeIntervalSince1970: 1_795_132_800)  // 2026-11-20T00:00:00Z

    static func row(
        _ provider: String, _ status: ReconcileRow.Status, recorded: Decimal, reported: Decimal?, day offset: Int = 0,
        customer: String = "acme", note: String = ""
    ) -> ReconcileRow {
        let start = day.addingTimeInterval(Double(offset) * 86_400)
        return ReconcileRow(
            provider: provider, customers: [customer], providerCustomer: "p-" + customer, meter: "api_requests",
            start: start,
            end: start.addingTimeInterval(86_400), recorded: recorded, queued: 0, reported: reported, status: status,
            note: note)
    }

    static let report = ReconcileReport(
        rows: [
            row(
                "stripe", .mismatch, recorded: 150, reported: 143, customer: hostile,
                note: #"provider reports 7 less "than" recorded"#),
            row("orb", .pending, recorded: 10, reported: 4, day: 1, note: "lane behind: 3 event(s) still queued"),
            row("stripe", .match, recorded: 10, reported: 10, day: 1),
            row("orb", .match, recorded: 150, reported: 150),
        ], mappingProblems: ["orb: your customers \(hostile) and globex are all billed on orb customer 'x'"])

    /// Nothing a page shows can open an element or leave an attribute, and nothing in it asks
    /// for another resource.
    static func expectInert(_ html: String) {
        #expect(!html.contains("<script"), "a <script> got through")
        #expect(html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39;"))
        for external in ["src=", "href=", "url(", "@import", "http://", "https://"] {
            #expect(!html.contains(external), "\(external)")
        }
        #expect(html.contains("Content-Security-Policy\" content=\"default-src 'none'"))
    }

    @Test func reconcileReportShowsTheVerdictFirstEveryRowAndBothProvidersSideBySide() throws {
        let html = Self.report.html(from: Self.day, to: Self.day.addingTimeInterval(2 * 86_400), generatedAt: Self.day)
        Self.expectInert(html)
        let verdict = try #require(
            html.range(
                of: "id=\"verdict\">MISMATCH: 1 mismatch, 0 unreadable, 1 pending, 2 match, 1 mapping problem(s)"))
        let firstTable = try #require(html.range(of: "<table>"))
        #expect(verdict.lowerBound < firstTable.lowerBound, "the verdict comes before any table")
        #expect(html.contains("<h2>Side by side</h2>"))
        #expect(html.components(separatedBy: "<tr class=\"mismatch\">").count - 1 == 1)
        #expect(html.components(separatedBy: "<tr class=\"pending\">").count - 1 == 1)
        #expect(
            html.contains("provider reports 7 less &quot;than&quot; recorded")
                && html.contains("lane behind: 3 event(s) still queued"))
        #expect(html.contains("id=\"provider-orb\"") && html.contains("id=\"provider-stripe\""))
        #expect(
            html.components(separatedBy: "class=\"band mismatch\"").count - 1 == 1,
            "the mismatched window has its band in the chart")

        let single = ReconcileReport(rows: [Self.row("stripe", .match, recorded: 1, reported: 1)], mappingProblems: [])
        let one = single.html(from: Self.day, to: Self.day.addingTimeInterval(86_400))
        #expect(!one.contains("Side by side") && one.contains("class=\"verdict ok\""))
    }

    /// Each provider's section lists its corrections under a count per state: a dead one with
    /// its fix, an amend with its quantity; user text stays text.
    @Test func reconcileReportShowsEachProvidersCorrections() throws {
        var report = Self.report
        report.corrections = [
            ReconcileCorrection(
                provider: "stripe", lane: "stripe/api_request", eventID: "evt_1", kind: .void, quantity: nil,
                reason: Self.hostile, state: .dead, note: "cancel_window_passed: By hand: credit the customer"),
            ReconcileCorrection(
                provider: "stripe", lane: "stripe/api_request", eventID: "evt_2", kind: .amend, quantity: 7,
                reason: "wrong unit", state: .applied, note: nil),
            ReconcileCorrection(
                provider: "orb", lane: "orb/api_request", eventID: "evt_1", kind: .void, quantity: nil,
                reason: "test customer", state: .pending, note: nil),
        ]
        let html = report.html(from: Self.day, to: Self.day.addingTimeInterval(2 * 86_400), generatedAt: Self.day)
        Self.expectInert(html)
        let stripe = try #require(html.range(of: "id=\"corrections-stripe\">1 applied, 1 dead"))
        let orb = try #require(html.range(of: "id=\"corrections-orb\">1 pending"))
        let stripeSection = try #require(html.range(of: "id=\"provider-stripe\""))
        #expect(orb.lowerBound < stripeSection.lowerBound && stripeSection.lowerBound < stripe.lowerBound)
        #expect(html.contains("amend to 7") && html.contains("By hand: credit the customer"))
        #expect(!Self.report.html(from: Self.day, to: Self.day).contains("<h3>Corrections</h3>"))
        #expect(report.table().contains("corrections: stripe: 1 applied, 1 dead"))
    }

    @Test func statusPageShowsLanesBacklogAndTheSavedReconciliation() throws {
        var lane = LaneStatus(lane: "stripe/api_request")
        lane.queued = 12
        lane.retrying = 2
        lane.delivered = 1_000
        lane.dead = [Self.hostile: 3]
        lane.oldestQueued = Self.day.addingTimeInterval(-900)
        let quiet = LaneStatus(lane: "orb/api_request")
        let page = StatusPage(
            lanes: [lane, quiet], history: ["stripe/api_request": [0, 5, 12]], historySpan: "the last hour",
            reconcile: .init(report: Self.report, savedAt: Self.day, source: "reconcile.json"), now: Self.day,
            refresh: 10)
        let html = page.render()
        Self.expectInert(html)
        #expect(html.contains("<meta http-equiv=\"refresh\" content=\"10\">"))
        #expect(
            html.contains(
                "<tr class=\"lane behind\"><td>stripe/api_request</td><td class=\"num\">12</td><td class=\"num\">2</td><td class=\"num\">1000</td>"
            ))
        #expect(html.contains("15 min") && html.contains("<polyline"))
        #expect(html.contains("id=\"reconcile-verdict\">MISMATCH"))
        let file = StatusPage(lanes: [quiet], history: [:], historySpan: "the last hour", now: Self.day).render()
        #expect(
            !file.contains("http-equiv=\"refresh\"") && file.contains("None saved")
                && file.contains("class=\"verdict ok\""))
    }

    @Test func aSavedReconciliationReadsBackAsTheSameReport() throws {
        let back = try ReconcileReport(json: Self.report.json())
        #expect(back.rows == Self.report.rows && back.mappingProblems == Self.report.mappingProblems)
        #expect(throws: UsageBillingError.self) { try ReconcileReport(json: Data(#"{"clean": true}"#.utf8)) }
    }

    @Test(arguments: [(0.0, "0 s"), (75, "75 s"), (4_000, "66 min"), (8_000, "2 h 13 min"), (400_000, "4 d")])
    func agesReadAsPeopleSayThem(_ seconds: Double, _ text: String) {
        #expect(StatusPage.age(seconds) == text)
    }
}
