import Foundation
import UsageBilling
import UsageEmulatorCore

/// Recurly v2021-02-25 usage: `POST /subscriptions/{id}/add_ons/{id}/usage` (201; **no dedup**:
/// a repeat is a second record, as in Recurly) and the list with `begin_time`/`end_time` on
/// `usage_timestamp`, ascending, `has_more`/`next` paging at `limit`.
final class RecurlyEmulation: EmulatedProvider {
    let prefix = "recurly"
    private struct Record {
        var id: String; var subscription: String; var addOn: String; var amount: Decimal; var tag: String?;
        var at: Date; var recorded: Date?; var created = Date()
    }
    private let state = Locked([Record]())
    func reset() { state.with { $0 = [] } }

    func accepted() async -> [AcceptedUsage] {
        state.with { $0 }.map {
            AcceptedUsage(
                customer: $0.subscription, meter: $0.addOn, timestamp: $0.at, quantity: $0.amount, key: $0.tag)
        }
    }

    private func error(_ status: Int, _ type: String, _ message: String, headers: HeaderFields = [:]) -> HTTPResponse {
        Reply.json(
            status, .object(["error": .object(["type": .string(type), "message": .string(message)])]), headers: headers)
    }

    func injected(status: Int, retryAfter: Bool) -> HTTPResponse {
        status == 429
            ? error(
                429, "rate_limited", "You have made too many API requests.",
                headers: retryAfter
                    ? [
                        "X-RateLimit-Limit": "400", "X-RateLimit-Remaining": "0",
                        "X-RateLimit-Reset": String(Int(Date().timeIntervalSince1970) + 1),
                    ] : [:])
            : error(
                status, status == 503 ? "service_not_available" : "internal_server_error",
                "An internal server error has occurred.")
    }

    private func json(_ r: Record) -> JSONValue {
        var o: [String: JSONValue] = [
            "id": .string(r.id), "object": .string("usage"), "amount": Reply.number(r.amount),
            "usage_type": .string("price"),
            "tier_type": .string("flat"), "tiers": .array([]), "measured_unit_id": .string("emu_unit"),
            "unit_amount": .number(0.01), "unit_amount_decimal": .string("0.01"),
            "usage_timestamp": .string(RFC3339.format(r.at)),
            "created_at": .string(RFC3339.format(r.created)), "updated_at": .string(RFC3339.format(r.created)),
        ]
        if let tag = r.tag { o["merchant_tag"] = .string(tag) }
        // Recurly answers whole seconds, Z
        if let recorded = r.recorded { o["recording_timestamp"] = .string(RFC3339.format(recorded)) }
        return .object(o)
    }

    func handle(_ r: EmulatedRequest) -> HTTPResponse {
        guard basicAuthOK(r.headers) else { return error(401, "unauthorized", "Please provide a valid API key.") }
        guard r.headers["Accept"]?.hasPrefix("application/vnd.recurly.v2021-02-25") == true else {
            return error(
                406, "invalid_api_version", "Please specify a supported version: application/vnd.recurly.v2021-02-25")
        }
        let parts = r.path.split(separator: "/").map { String($0).removingPercentEncoding ?? String($0) }
        if r.method == "DELETE", parts.count == 2, parts[0] == "usage" {
            // Nothing is billed in the emulator, so every record it has may be deleted.
            let removed = state.with { s in s.firstIndex { $0.id == parts[1] }.map { s.remove(at: $0) } }
            return removed == nil
                ? error(404, "not_found", "Couldn't find Usage with id = \(parts[1])")
                : HTTPResponse(status: 204, headers: [:], body: Data())
        }
        guard parts.count == 5, parts[0] == "subscriptions", parts[2] == "add_ons", parts[4] == "usage" else {
            return error(404, "not_found", "Couldn't find a resource at \(r.path)")
        }
        let (subscription, addOn) = (parts[1], parts[3])
        if r.method == "POST" {
            let body = r.json
            guard let amount = Reply.decimal(body?["amount"]) else {
                return Reply.json(
                    422,
                    .object([
                        "error": .object([
                            "type": .string("validation"), "message": .string("Amount is required"),
                            "params": .array([.object(["param": .string("amount"), "message": .string("is required")])]
                            ),
                        ])
                    ]))
            }
            let at = body?["usage_timestamp"]?.stringValue.flatMap(RFC3339.parse) ?? Date()
            let record: Record = state.with { s in
                let rec = Record(
                    id: String(format: "emu%09d", s.count + 1), subscription: subscription, addOn: addOn,
                    amount: amount,
                    tag: body?["merchant_tag"]?.stringValue, at: at,
                    recorded: body?["recording_timestamp"]?.stringValue.flatMap(RFC3339.parse))
                s.append(rec)
                return rec
            }
            return Reply.json(201, json(record))
        }
        let begin = r.query("begin_time").flatMap(RFC3339.parse), end = r.query("end_time").flatMap(RFC3339.parse)
        let limit = r.query("limit").flatMap(Int.init).map { min(200, max(1, $0)) } ?? 20
        let cursor = r.query("cursor").flatMap(Int.init) ?? 0
        let status = r.query("billing_status") ?? "unbilled"
        let matching = state.with { $0 }.filter { rec in
            rec.subscription == subscription && rec.addOn == addOn && (begin.map { rec.at >= $0 } ?? true)
                && (end.map { rec.at <= $0 } ?? true)
                && status != "billed"  // nothing is billed in the emulator
        }.sorted { ($0.at, $0.id) < ($1.at, $1.id) }
        let page = Array(matching.dropFirst(cursor).prefix(limit))
        var body: [String: JSONValue] = [
            "object": .string("list"), "has_more": .bool(cursor + page.count < matching.count),
            "data": .array(page.map(json)),
        ]
        if cursor + page.count < matching.count {
            let rest = r.query.filter { $0.0 != "cursor" } + [("cursor", String(cursor + page.count))]
            body["next"] = .string("/subscriptions/\(parts[1])/add_ons/\(parts[3])/usage?" + FormEncoding.encode(rest))
        }
        return Reply.json(200, .object(body))
    }
}

/// Recurly's emulation as the emulator registers it, at `/recurly`.
public enum EmulatedRecurly {
    public static let kind = EmulationKind(
        kind: "recurly",
        adapterSettings: "api_key: recurly_REDACTED, add_on_id: code-seats, requests_per_minute: 60000",
        realHosts: ["v3.recurly.com": "recurly"], endpoints: { ["endpoint": "\($0)/recurly"] },
        make: { _ in [RecurlyEmulation()] })
}
