import Foundation
import UsageBilling
import UsageEmulatorCore

/// Paddle's usage-based billing (early access) as the Paddle emulation answers it:
/// `POST /usage-events` (1–100 events; a malformed one refuses the whole batch with a 400 naming
/// `events[i].field`; an `occurred_at` more than 60 days old or 24 hours ahead is that event's
/// `rejected` status; counted once per customer, action, `event_key` and `occurred_at`),
/// `GET /meters` (one per action seen, rate 1, each drawing its own usage balance unit) and
/// `GET /customers/{id}/usage-balances` (used this period per unit; the emulator grants no
/// allowance, so nothing remains and nothing is overage).
final class PaddleUsageEvents: Sendable {
    private struct Counted: Hashable {
        var customer: String; var action: String; var key: String; var occurredAt: String
    }
    private struct State { var usage: [AcceptedUsage] = []; var counted: Set<Counted> = [] }
    private let state = Locked(State())
    private let now: @Sendable () -> Date

    init(now: @escaping @Sendable () -> Date) { self.now = now }

    func reset() { state.with { $0 = State() } }
    func accepted() -> [AcceptedUsage] { state.with { $0.usage } }

    /// A Paddle-shaped id (`prefix_` and 26 of [a-z0-9]) derived from `seed`.
    static func id(_ prefix: String, _ seed: String) -> String {
        prefix + "_" + String(EventID.derived(from: ["paddle-emulation", prefix, seed]).dropFirst(3).prefix(26))
    }

    /// The answer when `path` is one of usage-based billing's; nil otherwise.
    func handle(_ r: EmulatedRequest, error: (Int, String, String, String?) -> HTTPResponse, meta: () -> JSONValue)
        -> HTTPResponse?
    {
        let parts = r.path.split(separator: "/").map(String.init)
        switch (r.method, parts.count, parts.first) {
        case ("POST", 1, "usage-events"): return ingest(r.json, error: error, meta: meta)
        case ("GET", 1, "meters"): return meters(meta: meta)
        case ("GET", 3, "customers") where parts[2] == "usage-balances": return balances(customer: parts[1], meta: meta)
        default: return nil
        }
    }

    private func ingest(
        _ body: JSONValue?, error: (Int, String, String, String?) -> HTTPResponse, meta: () -> JSONValue
    ) -> HTTPResponse {
        guard let events = body?["events"]?.arrayValue, (1...100).contains(events.count) else {
            return error(400, "bad_request", "events must hold 1 to 100 usage events", "events")
        }
        var parsed: [(counted: Counted, at: Date, quantity: Decimal)] = []
        var invalid: [(String, String)] = []
        for (i, e) in events.enumerated() {
            let key = e["event_key"]?.stringValue ?? "", action = e["action"]?.stringValue ?? "",
                customer = e["customer_id"]?.stringValue ?? ""
            let stamp = e["occurred_at"]?.stringValue ?? ""
            if key.isEmpty { invalid.append(("events[\(i)].event_key", "event_key is required")) }
            if action.isEmpty { invalid.append(("events[\(i)].action", "action is required")) }
            if customer.isEmpty { invalid.append(("events[\(i)].customer_id", "customer_id is required")) }
            guard let at = RFC3339.parse(stamp) else {
                invalid.append(("events[\(i)].occurred_at", "occurred_at must be an RFC 3339 date-time")); continue
            }
            guard let quantity = e["quantity"]?.numberValue, quantity >= 0 else {
                invalid.append(("events[\(i)].quantity", "quantity must be a number ≥ 0")); continue
            }
            parsed.append(
                (
                    Counted(customer: customer, action: action, key: key, occurredAt: stamp), at,
                    Decimal(reported: quantity)
                ))
        }
        if !invalid.isEmpty {
            // The whole batch is refused; the errors name each failed field by the event's index.
            return Reply.json(
                400,
                .object([
                    "error": .object([
                        "type": .string("request_error"), "code": .string("bad_request"),
                        "detail": .string("Invalid request."),
                        "documentation_url": .string("https://developer.paddle.com/v1/errors/shared/bad_request"),
                        "errors": .array(invalid.map { .object(["field": .string($0.0), "message": .string($0.1)]) }),
                    ]), "meta": meta(),
                ]))
        }
        let now = self.now()
        let statuses: [JSONValue] = state.with { s in
            parsed.map { item in
                var status: [String: JSONValue] = [
                    "event_key": .string(item.counted.key), "status": .string("accepted"),
                ]
                let code: String? =
                    item.at < now.addingTimeInterval(-60 * 86_400)
                    ? "usage_event_timestamp_too_old"
                    : item.at > now.addingTimeInterval(24 * 3600) ? "usage_event_future_timestamp" : nil
                if let code {
                    status["status"] = .string("rejected")
                    status["error"] = .object([
                        "code": .string(code),
                        "detail": .string("occurred_at must be within 60 days in the past and 24 hours in the future"),
                    ])
                } else if s.counted.insert(item.counted).inserted {
                    s.usage.append(
                        AcceptedUsage(
                            customer: item.counted.customer, meter: item.counted.action, timestamp: item.at,
                            quantity: item.quantity,
                            key: item.counted.key, receivedAt: now, kind: "paddle_usage"))
                }
                return .object(status)
            }
        }
        return Reply.json(201, .object(["data": .array(statuses), "meta": meta()]))
    }

    private func page(_ data: [JSONValue], meta: () -> JSONValue) -> HTTPResponse {
        var m: [String: JSONValue] = [:]
        if case .object(let fields) = meta() { m = fields }
        m["pagination"] = .object([
            "per_page": .number(200), "next": .string(""), "has_more": .bool(false),
            "estimated_total": .number(Double(data.count)),
        ])
        return Reply.json(200, .object(["data": .array(data), "meta": .object(m)]))
    }

    private func meters(meta: () -> JSONValue) -> HTTPResponse {
        let actions = Set(state.with { $0.usage.map(\.meter) }).sorted()
        let stamp = JSONValue.string("2026-01-01T00:00:00.000Z")
        return page(
            actions.map { action in
                .object([
                    "id": .string(Self.id("mtr", action)), "action": .string(action),
                    "usage_balance_unit_id": .string(Self.id("ubu", action)),
                    "rate": .string("1"), "aggregation": .string("sum"), "status": .string("active"),
                    "created_at": stamp, "updated_at": stamp,
                ])
            }, meta: meta)
    }

    private func balances(customer: String, meta: () -> JSONValue) -> HTTPResponse {
        let mine = state.with { $0.usage }.filter { $0.customer == customer }
        return page(
            Set(mine.map(\.meter)).sorted().map { action in
                let used = mine.filter { $0.meter == action }.reduce(Decimal(0)) { $0 + $1.quantity }
                return .object([
                    "id": .string(Self.id("ubl", customer + "/" + action)), "customer_id": .string(customer),
                    "usage_balance_unit_id": .string(Self.id("ubu", action)),
                    "balance": .object([
                        "used": .object(["total": .string(DecimalFormat.plain(used))]),
                        "remaining": .object(["total": .string("0")]), "overage": .object(["total": .string("0")]),
                    ]),
                ])
            }, meta: meta)
    }
}

/// `paddle_usage` shares the Paddle emulation (one Paddle API, one host), so its faults and
/// statistics are the Paddle emulation's.
public enum EmulatedPaddleUsage {
    public static let kind = EmulationKind(
        kind: "paddle_usage", prefixes: ["paddle"],
        adapterSettings: "api_key: pdl_sdbx_apikey_REDACTED, requests_per_minute: 6000000",
        endpoints: { ["endpoint": "\($0)/paddle"] }, make: { _ in [] })
}
