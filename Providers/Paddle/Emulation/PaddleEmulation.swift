import Foundation
import UsageBilling
import UsageEmulatorCore

/// Paddle Billing charges: `POST /subscriptions/{id}/charge` (201 with the subscription; **no
/// idempotency**), `GET /subscriptions/{id}?include=next_transaction` (the charges added for the
/// next renewal as line items), `POST /transactions` and `GET /transactions` (filters
/// `customer_id`, `subscription_id`, `origin`; `custom_data` kept).
final class PaddleEmulation: EmulatedProvider {
    let prefix = "paddle"
    private struct Charge {
        var subscription: String; var price: String; var quantity: Int; var immediately: Bool; var custom: JSONValue?;
        var id: String; var created: Date
    }
    private let state = Locked([Charge]())
    /// Usage-based billing's endpoints (kind `paddle_usage`), on the same API.
    private let usageEvents: PaddleUsageEvents

    init(now: @escaping @Sendable () -> Date = { Date() }) { usageEvents = PaddleUsageEvents(now: now) }

    func reset() {
        state.with { $0 = [] }
        usageEvents.reset()
    }

    func accepted() async -> [AcceptedUsage] {
        state.with { $0 }.map {
            AcceptedUsage(
                customer: $0.subscription, meter: $0.price, timestamp: $0.created, quantity: Decimal($0.quantity),
                key: $0.custom?["ub_charge_key"]?.stringValue, kind: "paddle")
        }
            + usageEvents.accepted()
    }

    private func error(
        _ status: Int, _ type: String, _ code: String, _ detail: String, field: String? = nil,
        headers: HeaderFields = [:]
    ) -> HTTPResponse {
        var e: [String: JSONValue] = [
            "type": .string(type), "code": .string(code), "detail": .string(detail),
            "documentation_url": .string("https://developer.paddle.com/v1/errors/shared/\(code)"),
        ]
        if let field { e["errors"] = .array([.object(["field": .string(field), "message": .string(detail)])]) }
        return Reply.json(
            status,
            .object(["error": .object(e), "meta": .object(["request_id": .string(UUID().uuidString.lowercased())])]),
            headers: headers)
    }

    func injected(status: Int, retryAfter: Bool) -> HTTPResponse {
        status == 429
            ? error(
                429, "api_error", "too_many_requests", "IP address exceeded the allowed rate limit.",
                headers: retryAfter ? ["Retry-After": "1"] : [:])
            : error(status, "api_error", "internal_error", "An internal error occurred.")
    }

    private func meta() -> JSONValue { .object(["request_id": .string(UUID().uuidString.lowercased())]) }

    private func items(_ body: JSONValue?) -> Result<[(String, Int)], Refusal> {
        guard let list = body?["items"]?.arrayValue, (1...100).contains(list.count) else {
            return .failure(
                Refusal(
                    response: error(
                        400, "request_error", "bad_request", "items must hold 1 to 100 items", field: "items")))
        }
        var out: [(String, Int)] = []
        for (i, item) in list.enumerated() {
            guard let price = item["price_id"]?.stringValue, let q = item["quantity"]?.numberValue, q == q.rounded(),
                q >= 1
            else {
                return .failure(
                    Refusal(
                        response: error(
                            400, "request_error", "bad_request", "items[\(i)] needs price_id and a whole quantity ≥ 1",
                            field: "items[\(i)].quantity")))
            }
            guard q <= 999_999_999 else {
                return .failure(
                    Refusal(
                        response: error(
                            400, "request_error", "transaction_item_quantity_out_of_range",
                            "Item quantity \(Int(q)) is not within the range of 1 and 999999999",
                            field: "items[\(i)].quantity")))
            }
            out.append((price, Int(q)))
        }
        return .success(out)
    }

    func handle(_ r: EmulatedRequest) -> HTTPResponse {
        guard r.headers["Authorization"]?.hasPrefix("Bearer ") == true else {
            return error(401, "request_error", "authentication_missing", "Authentication header missing")
        }
        if let answer = usageEvents.handle(r, error: { error($0, "request_error", $1, $2, field: $3) }, meta: meta) {
            return answer
        }
        let parts = r.path.split(separator: "/").map(String.init)
        switch (r.method, parts.count, parts.first) {
        case ("POST", 3, "subscriptions") where parts[2] == "charge":
            let body = r.json
            guard let effective = body?["effective_from"]?.stringValue,
                ["next_billing_period", "immediately"].contains(effective)
            else {
                return error(
                    400, "request_error", "bad_request", "effective_from must be next_billing_period or immediately",
                    field: "effective_from")
            }
            switch items(body) {
            case .failure(let refusal): return refusal.response
            case .success(let list):
                state.with { s in
                    for (price, q) in list {
                        s.append(
                            Charge(
                                subscription: parts[1], price: price, quantity: q,
                                immediately: effective == "immediately", custom: nil,
                                id: String(format: "txn_emu_%08d", s.count + 1), created: Date()))
                    }
                }
                return Reply.json(201, .object(["data": subscription(parts[1], include: false), "meta": meta()]))
            }
        case ("GET", 2, "subscriptions"):
            return Reply.json(
                200,
                .object([
                    "data": subscription(parts[1], include: r.query("include")?.contains("next_transaction") == true),
                    "meta": meta(),
                ]))
        case ("POST", 1, "transactions"):
            let body = r.json
            guard let customer = body?["customer_id"]?.stringValue else {
                return error(
                    400, "request_error", "bad_request", "customer_id is required for a stand-alone transaction",
                    field: "customer_id")
            }
            switch items(body) {
            case .failure(let refusal): return refusal.response
            case .success(let list):
                let charges: [Charge] = state.with { s in
                    let id = String(format: "txn_emu_%08d", s.count + 1)
                    let new = list.map {
                        Charge(
                            subscription: customer, price: $0.0, quantity: $0.1, immediately: true,
                            custom: body?["custom_data"], id: id, created: Date())
                    }
                    s += new
                    return new
                }
                return Reply.json(201, .object(["data": transaction(charges), "meta": meta()]))
            }
        case ("GET", 1, "transactions"):
            let all = state.with { $0 }.filter { c in
                (r.query("customer_id").map { c.subscription == $0 } ?? true)
                    && (r.query("subscription_id").map { c.subscription == $0 } ?? true)
                    && (r.query("origin").map { $0 == "api" ? c.custom != nil : c.custom == nil && c.immediately }
                        ?? true)
            }
            let grouped = Dictionary(grouping: all, by: \.id).values.sorted { $0[0].id < $1[0].id }
            return Reply.json(
                200,
                .object([
                    "data": .array(grouped.map(transaction)),
                    "meta": .object([
                        "request_id": .string("emu"),
                        "pagination": .object(["per_page": .number(30), "has_more": .bool(false), "next": .string("")]),
                    ]),
                ]))
        default:
            return error(404, "request_error", "not_found", "No route for \(r.method) \(r.path)")
        }
    }

    private func transaction(_ charges: [Charge]) -> JSONValue {
        .object([
            "id": .string(charges.first?.id ?? ""), "status": .string("billed"),
            "customer_id": .string(charges.first?.subscription ?? ""),
            "origin": .string(charges.first?.custom == nil ? "subscription_charge" : "api"),
            "custom_data": charges.first?.custom ?? .null,
            "items": .array(
                charges.map {
                    .object(["price": .object(["id": .string($0.price)]), "quantity": .number(Double($0.quantity))])
                }),
            "created_at": .string(RFC3339.format(charges.first?.created ?? Date())),
        ])
    }

    private func subscription(_ id: String, include: Bool) -> JSONValue {
        // The subscription entity's required fields, as Paddle answers them (a monthly period
        // around now; the SDKs parse every one of them).
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? calendar.timeZone
        let period =
            calendar.dateInterval(of: .month, for: Date()) ?? DateInterval(start: Date(), duration: 30 * 86_400)
        let started = RFC3339.format(period.start.addingTimeInterval(-90 * 86_400), fractional: true)
        var o: [String: JSONValue] = [
            "id": .string(id), "status": .string("active"), "customer_id": .string("ctm_emu_\(id)"),
            "currency_code": .string("USD"),
            "address_id": .string("add_emu_\(id)"), "business_id": .null, "collection_mode": .string("automatic"),
            "items": .array([]),
            "created_at": .string(started), "updated_at": .string(started), "started_at": .string(started),
            "first_billed_at": .string(started),
            "next_billed_at": .string(RFC3339.format(period.end, fractional: true)),
            "billing_cycle": .object(["interval": .string("month"), "frequency": .number(1)]),
            "current_billing_period": .object([
                "starts_at": .string(RFC3339.format(period.start, fractional: true)),
                "ends_at": .string(RFC3339.format(period.end, fractional: true)),
            ]),
            "paused_at": .null, "canceled_at": .null, "discount": .null, "custom_data": .null,
            "scheduled_change": .null,
        ]
        if include {
            let lines = state.with { $0 }.filter { $0.subscription == id && !$0.immediately && $0.custom == nil }
            o["next_transaction"] = .object([
                "details": .object([
                    "line_items": .array(
                        lines.map {
                            .object(["price_id": .string($0.price), "quantity": .number(Double($0.quantity))])
                        })
                ])
            ])
        }
        return .object(o)
    }
}

/// Paddle's emulation as the emulator registers it, at `/paddle`.
public enum EmulatedPaddle {
    public static let kind = EmulationKind(
        kind: "paddle",
        adapterSettings:
            "api_key: pdl_sdbx_apikey_REDACTED, price_id: pri_01emu, max_quantity: 999999999, requests_per_minute: 60000",
        realHosts: ["sandbox-api.paddle.com": "paddle"], endpoints: { ["endpoint": "\($0)/paddle"] },
        make: { [PaddleEmulation(now: $0.now)] })
}
