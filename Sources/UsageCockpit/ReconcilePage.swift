import Foundation
import UsageBilling
import UsageReconciliation

extension ReconcileReport {
    /// The report as one self-contained HTML page: the verdict at the top, mapping problems, a
    /// side-by-side table of every provider's totals per window (the dual-write view: the same
    /// events on Stripe and on Orb, say), then per provider a chart of recorded against reported
    /// per window and every compared total with its reason.
    public func html(from: Date, to: Date, generatedAt: Date = Date(), title: String = "Reconciliation") -> String {
        let providers = Array(Set(rows.map(\.provider))).sorted()
        let daily = rows.allSatisfy { $0.end.timeIntervalSince($0.start) >= 86_400 }
        // One formatter for the page: every row and window is labelled with it.
        let formatter = Self.formatter(daily ? "yyyy-MM-dd" : "MM-dd HH:mm")
        func label(_ date: Date) -> String { formatter.string(from: date) }

        var body = "<h1>\(HTML.escape(title))</h1>\n"
        body +=
            "<p class=\"sub\">\(HTML.escape(RFC3339.format(from))) to \(HTML.escape(RFC3339.format(to))) · \(providers.count) provider(s) · generated \(HTML.escape(RFC3339.format(generatedAt)))</p>\n"
        body += "<div class=\"verdict \(isClean ? "ok" : "bad")\" id=\"verdict\">\(HTML.escape(verdict))</div>\n"
        if !mappingProblems.isEmpty {
            body +=
                "<h2>Customer mapping problems</h2>\n<ul class=\"problems\">"
                + mappingProblems.map { "<li>\(HTML.escape($0))</li>" }.joined() + "</ul>\n"
        }
        if providers.count > 1 {
            body +=
                "<h2>Side by side</h2>\n<p class=\"sub\">Recorded / reported per window; the worst status of the window's totals colours the cell.</p>\n"
            let starts = Array(Set(rows.map(\.start))).sorted()
            let byCell = Dictionary(grouping: rows) { "\($0.provider)\u{1F}\($0.start.timeIntervalSince1970)" }
            let table = starts.map { start -> (cls: String, cells: [String]) in
                let cells = providers.map { provider -> String in
                    guard let cell = byCell["\(provider)\u{1F}\(start.timeIntervalSince1970)"] else {
                        return "<span class=\"sub\">–</span>"
                    }
                    let worst = cell.map(\.status).min() ?? .match
                    let recorded = cell.reduce(Decimal(0)) { $0 + $1.recorded }
                    let reported =
                        cell.allSatisfy { $0.reported != nil }
                        ? cell.reduce(Decimal(0)) { $0 + ($1.reported ?? 0) } : nil
                    return
                        "<span class=\"status \(worst.rawValue)\">\(HTML.escape(DecimalFormat.plain(recorded))) / \(HTML.escape(reported.map(DecimalFormat.plain) ?? "?"))</span>"
                }
                return ("side", [HTML.escape(label(start))] + cells)
            }
            body += HTML.table(["window"] + providers, table, numeric: Set(1...providers.count)) + "\n"
        }
        for provider in providers {
            let mine = rows.filter { $0.provider == provider }
            let counts = Dictionary(grouping: mine, by: \.status).mapValues(\.count)
            let summary = ReconcileRow.Status.allCases.compactMap { s in counts[s].map { "\($0) \(s.rawValue)" } }
                .joined(separator: ", ")
            body +=
                "<section class=\"card provider\" id=\"provider-\(HTML.escape(provider))\">\n<h2>\(HTML.escape(provider))</h2>\n<p class=\"sub\">\(HTML.escape(summary))</p>\n"
            let bars = Dictionary(grouping: mine, by: \.start).sorted { $0.key < $1.key }.map { start, cell in
                Charts.Bar(
                    label: label(start).suffix(5).description,
                    recorded: NSDecimalNumber(decimal: cell.reduce(Decimal(0)) { $0 + $1.recorded }).doubleValue,
                    reported: cell.allSatisfy { $0.reported != nil }
                        ? NSDecimalNumber(decimal: cell.reduce(Decimal(0)) { $0 + ($1.reported ?? 0) }).doubleValue
                        : nil,
                    status: (cell.map(\.status).min() ?? .match).rawValue)
            }
            body += Charts.bars(bars, title: "\(provider): recorded and reported per window") + "\n"
            body +=
                "<p class=\"legend\"><span><i class=\"sw\" style=\"background:#0969da\"></i>recorded (spool)</span><span><i class=\"sw\" style=\"background:#8250df\"></i>reported (\(HTML.escape(provider)))</span><span><i class=\"sw\" style=\"background:#ffebe9\"></i>mismatch</span><span><i class=\"sw\" style=\"background:#fff8c5\"></i>pending</span></p>\n"
            let table = mine.map { r -> (cls: String, cells: [String]) in
                (
                    r.status.rawValue,
                    [
                        "<span class=\"status \(r.status.rawValue)\">\(r.status.rawValue)</span>",
                        HTML.escape(r.customers.joined(separator: ", ")),
                        HTML.escape(r.providerCustomer), HTML.escape(r.meter), HTML.escape(label(r.start)),
                        HTML.escape(DecimalFormat.plain(r.recorded)),
                        HTML.escape(r.reported.map(DecimalFormat.plain) ?? "–"),
                        HTML.escape(
                            r.difference.map { $0 > 0 ? "+" + DecimalFormat.plain($0) : DecimalFormat.plain($0) } ?? "–"
                        ), HTML.escape(r.note),
                    ]
                )
            }
            body += HTML.table(
                [
                    "status", "customers", "\(provider) customer", "meter", "window", "recorded", "reported",
                    "difference", "why",
                ], table, numeric: [5, 6, 7])
            body += corrections(of: provider)
            body += "\n</section>\n"
        }
        body +=
            "<footer>usage-billing reconcile: the spool's ledger against each provider's read-back API. Mismatches are settled windows that differ beyond the tolerance; pending windows are younger than --settle.</footer>"
        return HTML.page(title: "\(title) \(RFC3339.format(from)) – \(RFC3339.format(to))", body: body)
    }

    /// The provider's corrections: how many stand where, then the latest of them (the JSON and
    /// `usage-billing corrections` list all), each with its reason and, when dead, the fix.
    func corrections(of provider: String) -> String {
        let mine = corrections.filter { $0.provider == provider }
        guard !mine.isEmpty else { return "" }
        let shown = 100
        let summary = correctionSummary.first { $0.hasPrefix(provider + ": ") }.map {
            String($0.dropFirst(provider.count + 2))
        }
        var out =
            "\n<h3>Corrections</h3>\n<p class=\"sub\" id=\"corrections-\(HTML.escape(provider))\">\(HTML.escape(summary ?? "")): the recorded totals above count what the ledger holds after them\(mine.count > shown ? "; the last \(shown) shown, `usage-billing corrections` lists all" : "").</p>\n"
        let table = mine.suffix(shown).map { c -> (cls: String, cells: [String]) in
            // Dead reads as a mismatch (the provider still bills it), pending as pending.
            let status = c.state == .dead ? "mismatch" : c.state == .pending ? "pending" : "match"
            return (
                status == "match" ? "" : status,
                [
                    HTML.escape(c.eventID), HTML.escape(c.what), HTML.escape(c.lane),
                    "<span class=\"status \(status)\">\(HTML.escape(c.state.label))</span>",
                    HTML.escape(c.reason), HTML.escape(c.note ?? ""),
                ]
            )
        }
        out += HTML.table(["event", "correction", "lane", "state", "reason", "note"], table, numeric: [])
        return out
    }

    /// A UTC formatter for `pattern`.
    static func formatter(_ pattern: String) -> DateFormatter {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = pattern
        return f
    }
}
