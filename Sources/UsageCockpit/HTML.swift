import Foundation

/// Building blocks of the cockpit's pages: escaping, the page shell and its style.
///
/// Every page is one self-contained file: inline style and SVG, no script, and a
/// Content-Security-Policy that lets the browser load nothing from anywhere, so a page saved on a
/// laptop or mailed to finance opens the same offline. Everything that comes from events,
/// configs or providers (customer ids, meters, reasons) is user data and goes through ``escape(_:)``.
public enum HTML {
    /// `text` safe inside an element or a double- or single-quoted attribute.
    public static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for c in text.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// A whole page. `refresh`: seconds after which the browser reloads it (live pages).
    static func page(title: String, refresh: Int? = nil, body: String) -> String {
        """
        <!DOCTYPE html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        \(refresh.map { "<meta http-equiv=\"refresh\" content=\"\($0)\">\n" } ?? "")<title>\(escape(title))</title>
        <style>\(style)</style>
        </head>
        <body>
        \(body)
        </body>
        </html>

        """
    }

    /// A table: `header` cells, then rows of (class, cells); cells are HTML already escaped.
    static func table(_ header: [String], _ rows: [(cls: String, cells: [String])], numeric: Set<Int> = []) -> String {
        var out =
            "<table>\n<thead><tr>"
            + header.enumerated().map {
                "<th\(numeric.contains($0.offset) ? " class=\"num\"" : "")>\(escape($0.element))</th>"
            }.joined() + "</tr></thead>\n<tbody>\n"
        for row in rows {
            out +=
                "<tr class=\"\(row.cls)\">"
                + row.cells.enumerated().map {
                    "<td\(numeric.contains($0.offset) ? " class=\"num\"" : "")>\($0.element)</td>"
                }.joined() + "</tr>\n"
        }
        return out + "</tbody>\n</table>"
    }

    static let style = """
        :root { --ok: #1a7f37; --bad: #cf222e; --wait: #9a6700; --muted: #57606a; --line: #d0d7de; --rec: #0969da; --rep: #8250df; }
        body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto; max-width: 1200px; padding: 0 16px; color: #1f2328; }
        h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; } h3 { font-size: 15px; margin: 16px 0 6px; }
        .sub { color: var(--muted); margin: 0 0 16px; }
        .verdict { border-radius: 6px; padding: 12px 16px; font-weight: 600; margin: 12px 0 20px; }
        .verdict.ok { background: #dafbe1; color: var(--ok); } .verdict.bad { background: #ffebe9; color: var(--bad); }
        table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; }
        th, td { border-bottom: 1px solid var(--line); padding: 5px 8px; text-align: left; vertical-align: top; }
        th { background: #f6f8fa; font-weight: 600; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
        tr.mismatch td { background: #ffebe9; } tr.pending td { background: #fff8c5; } tr.unreadable td { color: var(--muted); }
        tr.behind td { background: #fff8c5; } tr.dead td:nth-child(7) { color: var(--bad); font-weight: 600; }
        .status { font-weight: 600; } .status.mismatch { color: var(--bad); } .status.match { color: var(--ok); } .status.pending { color: var(--wait); }
        .card { border: 1px solid var(--line); border-radius: 6px; padding: 4px 16px 8px; margin: 16px 0; overflow-x: auto; }
        .legend span { margin-right: 14px; } .sw { display: inline-block; width: 10px; height: 10px; margin-right: 4px; border-radius: 2px; }
        .problems { color: var(--bad); } footer { color: var(--muted); margin-top: 28px; font-size: 12px; }
        svg text { font: 10px system-ui, sans-serif; fill: #57606a; }
        """
}
