import Foundation
import UsageBilling
import UsageReconciliation
import UsageSpool

/// The spool at a glance: per lane what is queued, retrying, delivered, duplicate and dead (by
/// reason), how far behind it is, and its backlog over time; then the last saved reconciliation.
/// Served at `GET /` by `usage-billing serve` (reloading itself) and written by `status --html`.
public struct StatusPage: Sendable {
    /// The last reconciliation saved with `reconcile --json` (or `--html`'s JSON twin).
    public struct SavedReconcile: Sendable {
        public var report: ReconcileReport
        public var savedAt: Date
        public var source: String
        public init(report: ReconcileReport, savedAt: Date, source: String) {
            self.report = report
            self.savedAt = savedAt
            self.source = source
        }
    }

    public var lanes: [LaneStatus]
    /// Per lane, the backlog at evenly spaced instants ending now (oldest first).
    public var history: [String: [Int]]
    /// What the history covers, in words ("the last hour", "since serve started").
    public var historySpan: String
    public var reconcile: SavedReconcile?
    public var now: Date
    /// Seconds between reloads (live pages); nil for a file.
    public var refresh: Int?
    /// A lane older than this is highlighted as behind.
    public var behindAfter: Duration

    public init(
        lanes: [LaneStatus], history: [String: [Int]], historySpan: String, reconcile: SavedReconcile? = nil,
        now: Date = Date(), refresh: Int? = nil, behindAfter: Duration = .seconds(300)
    ) {
        self.lanes = lanes
        self.history = history
        self.historySpan = historySpan
        self.reconcile = reconcile
        self.now = now
        self.refresh = refresh
        self.behindAfter = behindAfter
    }

    public func render() -> String {
        let queued = lanes.map(\.queued).reduce(0, +), dead = lanes.map { $0.dead.values.reduce(0, +) }.reduce(0, +)
        let behind = lanes.filter { lane in
            lane.oldestQueued.map { now.timeIntervalSince($0) > behindAfter.seconds } ?? false
        }
        var body =
            "<h1>UsageBilling status</h1>\n<p class=\"sub\">\(lanes.count) lane(s) · \(queued) queued · \(dead) dead letter(s) · \(HTML.escape(RFC3339.format(now)))"
        body += refresh.map { " · reloads every \($0) s" } ?? ""
        body += "</p>\n"
        let healthy = behind.isEmpty && dead == 0
        let verdict =
            healthy
            ? "Every lane is keeping up; no dead letters."
            : [
                behind.isEmpty
                    ? nil
                    : "\(behind.count) lane(s) behind by more than \(Int(behindAfter.seconds)) s: "
                        + behind.map(\.lane).joined(separator: ", "),
                dead == 0 ? nil : "\(dead) dead letter(s): `usage-billing dlq list` shows them",
            ].compactMap { $0 }.joined(separator: ". ")
        body += "<div class=\"verdict \(healthy ? "ok" : "bad")\" id=\"verdict\">\(HTML.escape(verdict))</div>\n"
        body += "<h2>Lanes</h2>\n"
        if lanes.isEmpty {
            body += "<p>The spool is empty.</p>\n"
        } else {
            let rows = lanes.map { s -> (cls: String, cells: [String]) in
                let deadCount = s.dead.values.reduce(0, +)
                let reasons = s.dead.sorted { $0.key < $1.key }.map { "\(HTML.escape($0.key)) \($0.value)" }.joined(
                    separator: "<br>")
                let age = s.oldestQueued.map { Self.age(now.timeIntervalSince($0)) } ?? "–"
                let isBehind = behind.contains { $0.lane == s.lane }
                return (
                    isBehind ? "lane behind" : deadCount > 0 ? "lane dead" : "lane",
                    [
                        HTML.escape(s.lane), "\(s.queued)", "\(s.retrying)", "\(s.delivered)", "\(s.duplicates)",
                        HTML.escape(age),
                        deadCount == 0 ? "0" : "\(deadCount)<br><span class=\"sub\">\(reasons)</span>",
                        HTML.escape(s.correctionSummary ?? "–"),
                        Charts.sparkline(history[s.lane] ?? [], title: "\(s.lane) backlog, \(historySpan)"),
                    ]
                )
            }
            body += HTML.table(
                [
                    "lane", "queued", "retrying", "delivered", "duplicates", "oldest queued", "dead letters",
                    "corrections", "backlog, \(historySpan)",
                ], rows, numeric: [1, 2, 3, 4, 5])
            body += "\n"
        }
        body += "<h2>Last reconciliation</h2>\n"
        if let reconcile {
            let r = reconcile.report
            body +=
                "<p class=\"sub\">Saved \(HTML.escape(RFC3339.format(reconcile.savedAt))) in \(HTML.escape(reconcile.source))</p>\n"
            body +=
                "<div class=\"verdict \(r.isClean ? "ok" : "bad")\" id=\"reconcile-verdict\">\(HTML.escape(r.verdict))</div>\n"
            let shown = r.rows.filter { $0.status != .match }.prefix(50)
            if !shown.isEmpty {
                body +=
                    HTML.table(
                        ["status", "provider", "customers", "meter", "window start", "recorded", "reported", "why"],
                        shown.map { row in
                            (
                                row.status.rawValue,
                                [
                                    "<span class=\"status \(row.status.rawValue)\">\(row.status.rawValue)</span>",
                                    HTML.escape(row.provider),
                                    HTML.escape(row.customers.joined(separator: ", ")), HTML.escape(row.meter),
                                    HTML.escape(RFC3339.format(row.start)),
                                    HTML.escape(DecimalFormat.plain(row.recorded)),
                                    HTML.escape(row.reported.map(DecimalFormat.plain) ?? "–"), HTML.escape(row.note),
                                ]
                            )
                        }, numeric: [5, 6]) + "\n"
            }
            for problem in r.mappingProblems { body += "<p class=\"problems\">\(HTML.escape(problem))</p>\n" }
        } else {
            body +=
                "<p class=\"sub\">None saved. Run <code>usage-billing reconcile … --json &gt; reconcile.json</code> and pass it with <code>--reconcile reconcile.json</code>.</p>\n"
        }
        body +=
            "<footer>usage-billing: a lane is one provider and route; queued rows wait for the worker, retrying ones were tried and wait for their next attempt.</footer>"
        return HTML.page(title: "UsageBilling status", refresh: refresh, body: body)
    }

    /// 75 → "75 s", 4000 → "1 h 6 min".
    static func age(_ seconds: TimeInterval) -> String {
        let s = Int(max(0, seconds))
        switch s {
        case ..<120: return "\(s) s"
        case ..<7200: return "\(s / 60) min"
        case ..<172_800: return "\(s / 3600) h \((s % 3600) / 60) min"
        default: return "\(s / 86_400) d"
        }
    }
}

extension StatusPage.SavedReconcile {
    /// The reconciliation saved at `path` (the JSON `reconcile --json` prints), as of the file's
    /// modification time.
    public init(contentsOf path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw UsageBillingError(
                .invalidInput, "cannot read \(path)", fix: "save one with `usage-billing reconcile … --json > \(path)`")
        }
        let saved = (try? FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date) ?? Date()
        self.init(report: try ReconcileReport(json: data), savedAt: saved, source: path)
    }
}
