import Foundation

/// Inline SVG charts: drawn on the server, so the pages need no script.
enum Charts {
    /// One window of a provider's chart.
    struct Bar {
        var label: String
        var recorded: Double
        /// Nil: the provider could not say.
        var reported: Double?
        /// `match`, `mismatch`, `pending` or `unreadable`: the band behind the bars.
        var status: String
    }

    /// Recorded against reported per window, side by side; mismatched windows on a red band,
    /// pending ones on an amber band.
    static func bars(_ bars: [Bar], title: String) -> String {
        let slot = 34.0, height = 150.0, top = 10.0, bottom = 34.0, left = 44.0
        let width = left + slot * Double(max(bars.count, 1)) + 10
        let peak = max(bars.map { max($0.recorded, $0.reported ?? 0) }.max() ?? 0, 1)
        func y(_ v: Double) -> Double { top + height - height * v / peak }
        var svg =
            "<svg role=\"img\" aria-label=\"\(HTML.escape(title))\" width=\"\(Int(width))\" height=\"\(Int(top + height + bottom))\" viewBox=\"0 0 \(Int(width)) \(Int(top + height + bottom))\">"
        svg += "<title>\(HTML.escape(title))</title>"
        svg += "<line x1=\"\(left)\" y1=\"\(y(0))\" x2=\"\(width - 6)\" y2=\"\(y(0))\" stroke=\"#d0d7de\"/>"
        svg +=
            "<text x=\"\(left - 6)\" y=\"\(y(peak) + 4)\" text-anchor=\"end\">\(HTML.escape(Self.short(peak)))</text>"
        svg += "<text x=\"\(left - 6)\" y=\"\(y(0))\" text-anchor=\"end\">0</text>"
        for (i, bar) in bars.enumerated() {
            let x = left + slot * Double(i)
            let band = bar.status == "mismatch" ? "#ffebe9" : bar.status == "pending" ? "#fff8c5" : nil
            if let band {
                svg +=
                    "<rect class=\"band \(bar.status)\" x=\"\(x + 1)\" y=\"\(top)\" width=\"\(slot - 2)\" height=\"\(height)\" fill=\"\(band)\"/>"
            }
            svg +=
                "<rect class=\"recorded\" x=\"\(x + 5)\" y=\"\(y(bar.recorded))\" width=\"11\" height=\"\(max(0, y(0) - y(bar.recorded)))\" fill=\"#0969da\"><title>recorded \(HTML.escape(Self.short(bar.recorded)))</title></rect>"
            if let reported = bar.reported {
                svg +=
                    "<rect class=\"reported\" x=\"\(x + 17)\" y=\"\(y(reported))\" width=\"11\" height=\"\(max(0, y(0) - y(reported)))\" fill=\"#8250df\"><title>reported \(HTML.escape(Self.short(reported)))</title></rect>"
            }
            svg +=
                "<text x=\"\(x + slot / 2)\" y=\"\(top + height + 14)\" text-anchor=\"middle\">\(HTML.escape(bar.label))</text>"
        }
        return svg + "</svg>"
    }

    /// A backlog over time as a line, with its latest value's dot.
    static func sparkline(_ values: [Int], title: String) -> String {
        let w = 160.0, h = 28.0
        guard values.count > 1 else { return "<span class=\"sub\">–</span>" }
        let peak = Double(max(values.max() ?? 0, 1))
        let points = values.enumerated().map { i, v in
            String(format: "%.1f,%.1f", w * Double(i) / Double(values.count - 1), 2 + (h - 4) * (1 - Double(v) / peak))
        }
        let last = points.last ?? "0,0"
        let xy = last.split(separator: ",")
        return
            "<svg role=\"img\" aria-label=\"\(HTML.escape(title))\" width=\"\(Int(w))\" height=\"\(Int(h))\" viewBox=\"0 0 \(Int(w)) \(Int(h))\"><title>\(HTML.escape(title))</title>"
            + "<polyline fill=\"none\" stroke=\"#0969da\" stroke-width=\"1.5\" points=\"\(points.joined(separator: " "))\"/>"
            + "<circle cx=\"\(xy.first ?? "0")\" cy=\"\(xy.last ?? "0")\" r=\"2.5\" fill=\"#0969da\"/></svg>"
    }

    /// 1234567 → "1.2M", 1500 → "1.5k", small numbers as they are.
    static func short(_ v: Double) -> String {
        switch abs(v) {
        case 1_000_000...: String(format: "%.1fM", v / 1_000_000)
        case 10_000...: String(format: "%.0fk", v / 1_000)
        case 1_000...: String(format: "%.1fk", v / 1_000)
        default: v == v.rounded() ? String(Int(v)) : String(format: "%.6g", v)
        }
    }
}
