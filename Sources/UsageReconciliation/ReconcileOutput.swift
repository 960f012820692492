import Foundation
import UsageBilling
import UsageSpool

extension ReconcileReport {
    /// A plain-text table: one line per row, mismatches first, then the mapping problems and a
    /// one-line verdict.
    public func table() -> String {
        let header = [
            "status", "provider", "customers", "provider customer", "meter", "window start", "recorded", "reported",
            "difference", "note",
        ]
        let lines = rows.map { r in
            [
                r.status.rawValue, r.provider, r.customers.joined(separator: ","), r.providerCustomer, r.meter,
                RFC3339.format(r.start),
                DecimalFormat.plain(r.recorded), r.reported.map(DecimalFormat.plain) ?? "-",
                r.difference.map(Self.signed) ?? "-", r.note,
            ]
        }
        var widths = header.map(\.count)
        for line in lines {
            for (i, cell) in line.enumerated() where i < header.count - 1 { widths[i] = max(widths[i], cell.count) }
        }
        func render(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in
                let rightAligned = (6...8).contains(i)
                guard i < cells.count - 1 else { return cell }
                let pad = String(repeating: " ", count: max(0, widths[i] - cell.count))
                return rightAligned ? pad + cell : cell + pad
            }.joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }
        var out = ([render(header)] + lines.map(render)).joined(separator: "\n")
        for problem in mappingProblems { out += "\nmapping: " + problem }
        for line in pendingCorrections { out += "\ncorrection: " + line }
        for line in correctionSummary { out += "\ncorrections: " + line }
        out += "\n" + verdict
        return out
    }

    /// Per provider with corrections, how many stand where: `stripe: 2 applied, 1 withheld`.
    public var correctionSummary: [String] {
        Dictionary(grouping: corrections, by: \.provider).sorted { $0.key < $1.key }.map { provider, list in
            let counts = Dictionary(grouping: list, by: \.state).mapValues(\.count)
            return "\(provider): "
                + CorrectionLaneState.allCases.compactMap { state in counts[state].map { "\($0) \(state.label)" } }
                .joined(separator: ", ")
        }
    }

    /// One line: how many rows match, mismatch, are pending or unreadable.
    public var verdict: String {
        let counts = Dictionary(grouping: rows, by: \.status).mapValues(\.count)
        let parts = ReconcileRow.Status.allCases.map { "\(counts[$0] ?? 0) \($0.rawValue)" }
        return (isClean ? "OK: " : "MISMATCH: ") + parts.joined(separator: ", ")
            + (mappingProblems.isEmpty ? "" : ", \(mappingProblems.count) mapping problem(s)")
    }

    /// The report as JSON: `{rows: [...], mapping_problems: [...], pending_corrections: [...],
    /// corrections: [...], clean: Bool}`.
    public func json() -> Data {
        JSONValue.object([
            "clean": .bool(isClean),
            "corrections": .array(
                corrections.map { c in
                    .object([
                        "provider": .string(c.provider), "lane": .string(c.lane), "event_id": .string(c.eventID),
                        "kind": .string(c.kind.rawValue),
                        "quantity": c.quantity.map { .string(DecimalFormat.plain($0)) } ?? .null,
                        "reason": .string(c.reason), "state": .string(c.state.label),
                        "note": c.note.map(JSONValue.string) ?? .null,
                    ])
                }),
            "mapping_problems": .array(mappingProblems.map(JSONValue.string)),
            "pending_corrections": .array(pendingCorrections.map(JSONValue.string)),
            "rows": .array(
                rows.map { r in
                    .object([
                        "status": .string(r.status.rawValue), "provider": .string(r.provider),
                        "customers": .array(r.customers.map(JSONValue.string)),
                        "provider_customer": .string(r.providerCustomer), "meter": .string(r.meter),
                        "window_start": .string(RFC3339.format(r.start)), "window_end": .string(RFC3339.format(r.end)),
                        "recorded": .string(DecimalFormat.plain(r.recorded)), "queued": .number(Double(r.queued)),
                        "reported": r.reported.map { .string(DecimalFormat.plain($0)) } ?? .null,
                        "difference": r.difference.map { .string(DecimalFormat.plain($0)) } ?? .null,
                        "note": .string(r.note),
                    ])
                }),
        ]).encoded()
    }

    /// The rows as CSV (RFC 4180 quoting), with a header line.
    public func csv() -> String {
        func quote(_ s: String) -> String {
            s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" })
                ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
        }
        let header =
            "status,provider,customers,provider_customer,meter,window_start,window_end,recorded,queued,reported,difference,note"
        return
            ([header]
            + rows.map { r in
                [
                    r.status.rawValue, r.provider, r.customers.joined(separator: " "), r.providerCustomer, r.meter,
                    RFC3339.format(r.start), RFC3339.format(r.end),
                    DecimalFormat.plain(r.recorded), String(r.queued), r.reported.map(DecimalFormat.plain) ?? "",
                    r.difference.map(DecimalFormat.plain) ?? "", r.note,
                ]
                .map(quote).joined(separator: ",")
            }).joined(separator: "\n") + "\n"
    }

    static func signed(_ d: Decimal) -> String { d > 0 ? "+" + DecimalFormat.plain(d) : DecimalFormat.plain(d) }
}

extension ReconcileReport {
    /// A report read back from ``json()``'s output (a saved reconciliation); throws
    /// `.invalidInput` naming what is missing.
    public init(json data: Data) throws {
        guard let root = JSONValue.parse(data), let list = root["rows"]?.arrayValue else {
            throw UsageBillingError(
                .invalidInput, "not a saved reconciliation: no rows",
                fix: "save one with `usage-billing reconcile … --json > reconcile.json`")
        }
        rows = try list.enumerated().map { i, r in
            guard let status = r["status"]?.stringValue.flatMap(ReconcileRow.Status.init(rawValue:)),
                let provider = r["provider"]?.stringValue,
                let start = r["window_start"]?.stringValue.flatMap(RFC3339.parse),
                let end = r["window_end"]?.stringValue.flatMap(RFC3339.parse),
                let recorded = r["recorded"]?.stringValue.flatMap({
                    Decimal(string: $0, locale: Locale(identifier: "en_US_POSIX"))
                })
            else {
                throw UsageBillingError(
                    .invalidInput, "saved reconciliation row \(i) lacks status, provider, window or recorded",
                    fix: "save it again with `usage-billing reconcile … --json`", field: "rows[\(i)]")
            }
            return ReconcileRow(
                provider: provider, customers: r["customers"]?.arrayValue?.compactMap(\.stringValue) ?? [],
                providerCustomer: r["provider_customer"]?.stringValue ?? "", meter: r["meter"]?.stringValue ?? "",
                start: start, end: end,
                recorded: recorded, queued: Int(r["queued"]?.numberValue ?? 0),
                reported: r["reported"]?.stringValue.flatMap {
                    Decimal(string: $0, locale: Locale(identifier: "en_US_POSIX"))
                },
                status: status, note: r["note"]?.stringValue ?? "")
        }
        mappingProblems = root["mapping_problems"]?.arrayValue?.compactMap(\.stringValue) ?? []
        pendingCorrections = root["pending_corrections"]?.arrayValue?.compactMap(\.stringValue) ?? []
        corrections = (root["corrections"]?.arrayValue ?? []).compactMap { c in
            guard let provider = c["provider"]?.stringValue, let lane = c["lane"]?.stringValue,
                let eventID = c["event_id"]?.stringValue,
                let kind = c["kind"]?.stringValue.flatMap(CorrectionKind.init(rawValue:)),
                let state = CorrectionLaneState.allCases.first(where: { $0.label == c["state"]?.stringValue })
            else { return nil }
            return ReconcileCorrection(
                provider: provider, lane: lane, eventID: eventID, kind: kind,
                quantity: c["quantity"]?.stringValue.flatMap(DecimalFormat.parse),
                reason: c["reason"]?.stringValue ?? "",
                state: state, note: c["note"]?.stringValue)
        }
    }
}
