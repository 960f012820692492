import Foundation
import UsageBilling

private func chargebeeError(_ status: Int, _ code: String, _ message: String, type: String = "invalid_request", param: String? = nil, headers: HeaderFields = [:]) -> HTTPResponse {
    var body: [String: JSONValue] = ["message": .string(message), "type": .string(type), "api_error_code": .string(code), "http_status_code": .number(Double(status))]
    if let param { body["param"] = .string(param) }
    return Reply.json(status, .object(body), headers: headers)
}

private func chargebeeInjected(status: Int, retryAfter: Bool) -> HTTPResponse {
    status == 429
        ? chargebeeError(429, "api_request_limit_exceeded", "Sorry, access has been blocked temporarily due to request count exceeding acceptable limits.",
                         type: "operation_failed", headers: retryAfter ? ["Retry-After": "1"] : [:])
        : chargebeeError(status, status == 503 ? "internal_temporary_error" : "internal_error", "Sorry, something went wrong.", type: "operation_failed")
}

private func basicAuthOK(_ headers: HeaderFields) -> Bool {
    guard let auth = headers["Authorization"], auth.hasPrefix("Basic "), let data = Data(base64Encoded: String(auth.dropFirst(6))) else { return false }
    return String(decoding: data, as: UTF8.self).hasSuffix(":") && data.count > 1
}

/// Chargebee's Usages API: `POST /api/v2/subscriptions/{id}/usages` (form; a repeated `id` is
/// refused with `duplicate_entry`; one record per subscription, item price and `usage_date`;
/// `chargebee-idempotency-key` replays the first answer for 30 minutes) and `GET /api/v2/usages`
/// (filters `subscription_id[is]`, `item_price_id[is]`, `usage_date[between]`; `next_offset`
/// paging, 2 per page when `limit` asks for less).
final class ChargebeeEmulation: EmulatedProvider {
    let prefix = "chargebee"
    private let now: @Sendable () -> Date
    private struct Record { var id: String; var subscription: String; var itemPrice: String; var quantity: Decimal; var date: Int64; var note: String? }
    private struct State { var records: [Record] = []; var replies: [String: HTTPResponse] = [:] }
    private let state = Locked(State())
    func reset() { state.with { $0 = State() } }

    init(now: @escaping @Sendable () -> Date) { self.now = now }

    func accepted() async -> [AcceptedUsage] {
        state.with { $0.records }.map { AcceptedUsage(customer: $0.subscription, meter: $0.itemPrice, timestamp: Date(timeIntervalSince1970: TimeInterval($0.date)), quantity: $0.quantity, key: $0.id) }
    }

    func injected(status: Int, retryAfter: Bool) -> HTTPResponse { chargebeeInjected(status: status, retryAfter: retryAfter) }

    private func usageJSON(_ r: Record) -> JSONValue {
        var o: [String: JSONValue] = ["id": .string(r.id), "usage_date": .number(Double(r.date)), "subscription_id": .string(r.subscription),
                                      "item_price_id": .string(r.itemPrice), "quantity": .string(DecimalFormat.plain(r.quantity)), "source": .string("api"),
                                      "object": .string("usage"), "created_at": .number(Double(r.date)), "updated_at": .number(Double(r.date))]
        if let note = r.note { o["note"] = .string(note) }
        return .object(o)
    }

    func handle(_ r: EmulatedRequest) -> HTTPResponse {
        guard basicAuthOK(r.headers) else {
            return chargebeeError(401, "api_authentication_failed", "Sorry, authentication failed. Invalid api key", type: "untyped")
        }
        if r.method == "POST", r.path.hasPrefix("/api/v2/subscriptions/"), r.path.hasSuffix("/usages") {
            let subscription = String(r.path.dropFirst("/api/v2/subscriptions/".count).dropLast("/usages".count)).removingPercentEncoding ?? ""
            return create(subscription: subscription, r)
        }
        if r.method == "GET" && r.path == "/api/v2/usages" { return list(r) }
        return chargebeeError(404, "resource_not_found", "Sorry, we couldn't find that resource")
    }

    private func create(subscription: String, _ r: EmulatedRequest) -> HTTPResponse {
        let key = r.headers["chargebee-idempotency-key"]
        if let key, let replay = state.with({ $0.replies[key] }) {
            var h = replay.headers
            h["chargebee-idempotency-replayed"] = "true"
            return HTTPResponse(status: replay.status, headers: h, body: replay.body)
        }
        let f = r.form
        guard let itemPrice = f["item_price_id"], !itemPrice.isEmpty else { return chargebeeError(400, "param_wrong_value", "item_price_id : cannot be blank", param: "item_price_id") }
        guard let quantityText = f["quantity"], let quantity = DecimalFormat.parse(quantityText), quantityText.count <= 40 else {
            return chargebeeError(400, "param_wrong_value", "quantity : invalid value", param: "quantity")
        }
        guard let date = f["usage_date"].flatMap(Int64.init) else { return chargebeeError(400, "param_wrong_value", "usage_date : cannot be blank", param: "usage_date") }
        let id = f["id"] ?? "emu_\(UUID().uuidString.prefix(12))"
        let response: HTTPResponse = state.with { s in
            if s.records.contains(where: { $0.id == id }) {
                return chargebeeError(400, "duplicate_entry", "The value \(id) is already present.", param: "id")
            }
            if let i = s.records.firstIndex(where: { $0.subscription == subscription && $0.itemPrice == itemPrice && $0.date == date }) {
                switch f["dedupe_option"] {
                case "skip": return Reply.json(200, .object(["usage": usageJSON(s.records[i])]))
                case "update_existing":
                    s.records[i].quantity = quantity
                    return Reply.json(200, .object(["usage": usageJSON(s.records[i])]))
                default:
                    return chargebeeError(400, "duplicate_entry", "A usage already exists for this subscription, item price and usage_date.", param: "usage_date")
                }
            }
            let record = Record(id: id, subscription: subscription, itemPrice: itemPrice, quantity: quantity, date: date, note: f["note"])
            s.records.append(record)
            return Reply.json(200, .object(["usage": usageJSON(record)]))
        }
        if let key, response.status == 200 { state.with { $0.replies[key] = response } }
        return response
    }

    private func list(_ r: EmulatedRequest) -> HTTPResponse {
        let limit = r.query("limit").flatMap(Int.init).map { min(100, max(1, $0)) } ?? 10
        let offset = r.query("offset").flatMap(Int.init) ?? 0
        var between: (Int64, Int64)?
        if let b = r.query("usage_date[between]") {
            let parts = b.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).split(separator: ",").compactMap { Int64($0) }
            if parts.count == 2 { between = (parts[0], parts[1]) }
        }
        let matching = state.with { $0.records }.filter { rec in
            (r.query("subscription_id[is]").map { rec.subscription == $0 } ?? true)
                && (r.query("item_price_id[is]").map { rec.itemPrice == $0 } ?? true)
                && (between.map { rec.date >= $0.0 && rec.date <= $0.1 } ?? true)
        }.sorted { $0.date < $1.date }
        let page = Array(matching.dropFirst(offset).prefix(limit))
        var body: [String: JSONValue] = ["list": .array(page.map { .object(["usage": usageJSON($0)]) })]
        if offset + page.count < matching.count { body["next_offset"] = .string(String(offset + page.count)) }
        return Reply.json(200, .object(body))
    }
}

/// Chargebee's Usage Events API on the ingest host: `POST /api/v2/batch/usage_events` (≤ 500;
/// an event is unique on (usage_timestamp, subscription_id, deduplication_id), as Chargebee
/// documents: a repeat of all three is dropped, the same deduplication_id at another time is a
/// new event; events older than 12 hours are listed in `failed_events`).
final class ChargebeeIngestEmulation: EmulatedProvider {
    let prefix = "chargebee-ingest"
    private let now: @Sendable () -> Date
    private struct State { var usage: [AcceptedUsage] = []; var keys: Set<String> = []; var batches = 0 }
    private let state = Locked(State())
    func reset() { state.with { $0 = State() } }

    init(now: @escaping @Sendable () -> Date) { self.now = now }

    func accepted() async -> [AcceptedUsage] { state.with { $0.usage } }
    func injected(status: Int, retryAfter: Bool) -> HTTPResponse { chargebeeInjected(status: status, retryAfter: retryAfter) }

    func handle(_ r: EmulatedRequest) -> HTTPResponse {
        guard basicAuthOK(r.headers) else { return chargebeeError(401, "api_authentication_failed", "Sorry, authentication failed. Invalid api key", type: "untyped") }
        guard r.method == "POST", r.path == "/api/v2/batch/usage_events" else { return chargebeeError(404, "resource_not_found", "Sorry, we couldn't find that resource") }
        guard let events = r.json?["events"]?.arrayValue, (1...500).contains(events.count) else {
            return chargebeeError(400, "invalid_request", "events : must hold 1 to 500 events", param: "events")
        }
        let oldest = (now().timeIntervalSince1970 - 12 * 3600) * 1000
        return state.with { s in
            s.batches += 1
            var failed: [JSONValue] = []
            for e in events {
                let id = e["deduplication_id"]?.stringValue ?? ""
                guard let subscription = e["subscription_id"]?.stringValue, let ts = e["usage_timestamp"]?.numberValue, !id.isEmpty else {
                    failed.append(.object(["deduplication_id": .string(id), "error_code": .string("invalid_request"), "error_message": .string("deduplication_id, subscription_id and usage_timestamp are required")]))
                    continue
                }
                if ts < oldest {
                    failed.append(.object(["deduplication_id": .string(id), "error_code": .string("invalid_usage_timestamp"), "error_message": .string("usage_timestamp must be within the last 12 hours")]))
                    continue
                }
                guard s.keys.insert("\(Int64(ts))\u{1F}\(subscription)\u{1F}\(id)").inserted else { continue }
                s.usage.append(AcceptedUsage(customer: subscription, meter: "usage_events", timestamp: Date(timeIntervalSince1970: ts / 1000),
                                             quantity: Reply.decimal(e["properties"]?["quantity"]) ?? 0, key: id))
            }
            return Reply.json(200, .object(["batch_id": .string(String(format: "batch_emu_%06d", s.batches)), "failed_events": .array(failed)]))
        }
    }
}

/// Recurly v2021-02-25 usage: `POST /subscriptions/{id}/add_ons/{id}/usage` (201; **no dedup**:
/// a repeat is a second record, as in Recurly) and the list with `begin_time`/`end_time` on
/// `usage_timestamp`, ascending, `has_more`/`next` paging at `limit`.
final class RecurlyEmulation: EmulatedProvider {
    let prefix = "recurly"
    private struct Record { var id: String; var subscription: String; var addOn: String; var amount: Decimal; var tag: String?; var at: Date; var recorded: Date?; var created = Date() }
    private let state = Locked([Record]())
    func reset() { state.with { $0 = [] } }

    func accepted() async -> [AcceptedUsage] {
        state.with { $0 }.map { AcceptedUsage(customer: $0.subscription, meter: $0.addOn, timestamp: $0.at, quantity: $0.amount, key: $0.tag) }
    }

    private func error(_ status: Int, _ type: String, _ message: String, headers: HeaderFields = [:]) -> HTTPResponse {
        Reply.json(status, .object(["error": .object(["type": .string(type), "message": .string(message)])]), headers: headers)
    }

    func injected(status: Int, retryAfter: Bool) -> HTTPResponse {
        status == 429
            ? error(429, "rate_limited", "You have made too many API requests.",
                    headers: retryAfter ? ["X-RateLimit-Limit": "400", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": String(Int(Date().timeIntervalSince1970) + 1)] : [:])
            : error(status, status == 503 ? "service_not_available" : "internal_server_error", "An internal server error has occurred.")
    }

    private func json(_ r: Record) -> JSONValue {
        var o: [String: JSONValue] = ["id": .string(r.id), "object": .string("usage"), "amount": Reply.number(r.amount), "usage_type": .string("price"),
                                      "tier_type": .string("flat"), "tiers": .array([]), "measured_unit_id": .string("emu_unit"),
                                      "unit_amount": .number(0.01), "unit_amount_decimal": .string("0.01"), "usage_timestamp": .string(RFC3339.format(r.at)),
                                      "created_at": .string(RFC3339.format(r.created)), "updated_at": .string(RFC3339.format(r.created))]
        if let tag = r.tag { o["merchant_tag"] = .string(tag) }
        if let recorded = r.recorded { o["recording_timestamp"] = .string(RFC3339.format(recorded)) }  // Recurly answers whole seconds, Z
        return .object(o)
    }

    func handle(_ r: EmulatedRequest) -> HTTPResponse {
        guard basicAuthOK(r.headers) else { return error(401, "unauthorized", "Please provide a valid API key.") }
        guard r.headers["Accept"]?.hasPrefix("application/vnd.recurly.v2021-02-25") == true else {
            return error(406, "invalid_api_version", "Please specify a supported version: application/vnd.recurly.v2021-02-25")
        }
        let parts = r.path.split(separator: "/").map { String($0).removingPercentEncoding ?? String($0) }
        guard parts.count == 5, parts[0] == "subscriptions", parts[2] == "add_ons", parts[4] == "usage" else {
            return error(404, "not_found", "Couldn't find a resource at \(r.path)")
        }
        let (subscription, addOn) = (parts[1], parts[3])
        if r.method == "POST" {
            let body = r.json
            guard let amount = Reply.decimal(body?["amount"]) else {
                return Reply.json(422, .object(["error": .object(["type": .string("validation"), "message": .string("Amount is required"),
                                                                  "params": .array([.object(["param": .string("amount"), "message": .string("is required")])])])]))
            }
            let at = body?["usage_timestamp"]?.stringValue.flatMap(RFC3339.parse) ?? Date()
            let record: Record = state.with { s in
                let rec = Record(id: String(format: "emu%09d", s.count + 1), subscription: subscription, addOn: addOn, amount: amount,
                                 tag: body?["merchant_tag"]?.stringValue, at: at, recorded: body?["recording_timestamp"]?.stringValue.flatMap(RFC3339.parse))
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
            rec.subscription == subscription && rec.addOn == addOn && (begin.map { rec.at >= $0 } ?? true) && (end.map { rec.at <= $0 } ?? true)
                && status != "billed"  // nothing is billed in the emulator
        }.sorted { ($0.at, $0.id) < ($1.at, $1.id) }
        let page = Array(matching.dropFirst(cursor).prefix(limit))
        var body: [String: JSONValue] = ["object": .string("list"), "has_more": .bool(cursor + page.count < matching.count), "data": .array(page.map(json))]
        if cursor + page.count < matching.count {
            let rest = r.query.filter { $0.0 != "cursor" } + [("cursor", String(cursor + page.count))]
            body["next"] = .string("/subscriptions/\(parts[1])/add_ons/\(parts[3])/usage?" + FormEncoding.encode(rest))
        }
        return Reply.json(200, .object(body))
    }
}

/// Paddle Billing charges: `POST /subscriptions/{id}/charge` (201 with the subscription; **no
/// idempotency**), `GET /subscriptions/{id}?include=next_transaction` (the charges added for the
/// next renewal as line items), `POST /transactions` and `GET /transactions` (filters
/// `customer_id`, `subscription_id`, `origin`; `custom_data` kept).
final class PaddleEmulation: EmulatedProvider {
    let prefix = "paddle"
    private struct Charge { var subscription: String; var price: String; var quantity: Int; var immediately: Bool; var custom: JSONValue?; var id: String; var created: Date }
    private let state = Locked([Charge]())
    func reset() { state.with { $0 = [] } }

    func accepted() async -> [AcceptedUsage] {
        state.with { $0 }.map { AcceptedUsage(customer: $0.subscription, meter: $0.price, timestamp: $0.created, quantity: Decimal($0.quantity), key: $0.custom?["ub_charge_key"]?.stringValue) }
    }

    private func error(_ status: Int, _ type: String, _ code: String, _ detail: String, field: String? = nil, headers: HeaderFields = [:]) -> HTTPResponse {
        var e: [String: JSONValue] = ["type": .string(type), "code": .string(code), "detail": .string(detail),
                                      "documentation_url": .string("https://developer.paddle.com/v1/errors/shared/\(code)")]
        if let field { e["errors"] = .array([.object(["field": .string(field), "message": .string(detail)])]) }
        return Reply.json(status, .object(["error": .object(e), "meta": .object(["request_id": .string(UUID().uuidString.lowercased())])]), headers: headers)
    }

    func injected(status: Int, retryAfter: Bool) -> HTTPResponse {
        status == 429
            ? error(429, "api_error", "too_many_requests", "IP address exceeded the allowed rate limit.", headers: retryAfter ? ["Retry-After": "1"] : [:])
            : error(status, "api_error", "internal_error", "An internal error occurred.")
    }

    private func meta() -> JSONValue { .object(["request_id": .string(UUID().uuidString.lowercased())]) }


    private func items(_ body: JSONValue?) -> Result<[(String, Int)], Refusal> {
        guard let list = body?["items"]?.arrayValue, (1...100).contains(list.count) else {
            return .failure(Refusal(response: error(400, "request_error", "bad_request", "items must hold 1 to 100 items", field: "items")))
        }
        var out: [(String, Int)] = []
        for (i, item) in list.enumerated() {
            guard let price = item["price_id"]?.stringValue, let q = item["quantity"]?.numberValue, q == q.rounded(), q >= 1 else {
                return .failure(Refusal(response: error(400, "request_error", "bad_request", "items[\(i)] needs price_id and a whole quantity ≥ 1", field: "items[\(i)].quantity")))
            }
            guard q <= 999_999_999 else {
                return .failure(Refusal(response: error(400, "request_error", "transaction_item_quantity_out_of_range", "Item quantity \(Int(q)) is not within the range of 1 and 999999999", field: "items[\(i)].quantity")))
            }
            out.append((price, Int(q)))
        }
        return .success(out)
    }

    func handle(_ r: EmulatedRequest) -> HTTPResponse {
        guard r.headers["Authorization"]?.hasPrefix("Bearer ") == true else {
            return error(401, "request_error", "authentication_missing", "Authentication header missing")
        }
        let parts = r.path.split(separator: "/").map(String.init)
        switch (r.method, parts.count, parts.first) {
        case ("POST", 3, "subscriptions") where parts[2] == "charge":
            let body = r.json
            guard let effective = body?["effective_from"]?.stringValue, ["next_billing_period", "immediately"].contains(effective) else {
                return error(400, "request_error", "bad_request", "effective_from must be next_billing_period or immediately", field: "effective_from")
            }
            switch items(body) {
            case .failure(let refusal): return refusal.response
            case .success(let list):
                state.with { s in
                    for (price, q) in list {
                        s.append(Charge(subscription: parts[1], price: price, quantity: q, immediately: effective == "immediately", custom: nil,
                                        id: String(format: "txn_emu_%08d", s.count + 1), created: Date()))
                    }
                }
                return Reply.json(201, .object(["data": subscription(parts[1], include: false), "meta": meta()]))
            }
        case ("GET", 2, "subscriptions"):
            return Reply.json(200, .object(["data": subscription(parts[1], include: r.query("include")?.contains("next_transaction") == true), "meta": meta()]))
        case ("POST", 1, "transactions"):
            let body = r.json
            guard let customer = body?["customer_id"]?.stringValue else {
                return error(400, "request_error", "bad_request", "customer_id is required for a stand-alone transaction", field: "customer_id")
            }
            switch items(body) {
            case .failure(let refusal): return refusal.response
            case .success(let list):
                let charges: [Charge] = state.with { s in
                    let id = String(format: "txn_emu_%08d", s.count + 1)
                    let new = list.map { Charge(subscription: customer, price: $0.0, quantity: $0.1, immediately: true, custom: body?["custom_data"], id: id, created: Date()) }
                    s += new
                    return new
                }
                return Reply.json(201, .object(["data": transaction(charges), "meta": meta()]))
            }
        case ("GET", 1, "transactions"):
            let all = state.with { $0 }.filter { c in
                (r.query("customer_id").map { c.subscription == $0 } ?? true) && (r.query("subscription_id").map { c.subscription == $0 } ?? true)
                    && (r.query("origin").map { $0 == "api" ? c.custom != nil : c.custom == nil && c.immediately } ?? true)
            }
            let grouped = Dictionary(grouping: all, by: \.id).values.sorted { $0[0].id < $1[0].id }
            return Reply.json(200, .object(["data": .array(grouped.map(transaction)),
                                            "meta": .object(["request_id": .string("emu"), "pagination": .object(["per_page": .number(30), "has_more": .bool(false), "next": .string("")])])]))
        default:
            return error(404, "request_error", "not_found", "No route for \(r.method) \(r.path)")
        }
    }

    private func transaction(_ charges: [Charge]) -> JSONValue {
        .object([
            "id": .string(charges.first?.id ?? ""), "status": .string("billed"), "customer_id": .string(charges.first?.subscription ?? ""),
            "origin": .string(charges.first?.custom == nil ? "subscription_charge" : "api"), "custom_data": charges.first?.custom ?? .null,
            "items": .array(charges.map { .object(["price": .object(["id": .string($0.price)]), "quantity": .number(Double($0.quantity))]) }),
            "created_at": .string(RFC3339.format(charges.first?.created ?? Date())),
        ])
    }

    private func subscription(_ id: String, include: Bool) -> JSONValue {
        // The subscription entity's required fields, as Paddle answers them (a monthly period
        // around now; the SDKs parse every one of them).
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? calendar.timeZone
        let period = calendar.dateInterval(of: .month, for: Date()) ?? DateInterval(start: Date(), duration: 30 * 86_400)
        let started = RFC3339.format(period.start.addingTimeInterval(-90 * 86_400), fractional: true)
        var o: [String: JSONValue] = ["id": .string(id), "status": .string("active"), "customer_id": .string("ctm_emu_\(id)"), "currency_code": .string("USD"),
                                      "address_id": .string("add_emu_\(id)"), "business_id": .null, "collection_mode": .string("automatic"), "items": .array([]),
                                      "created_at": .string(started), "updated_at": .string(started), "started_at": .string(started), "first_billed_at": .string(started),
                                      "next_billed_at": .string(RFC3339.format(period.end, fractional: true)),
                                      "billing_cycle": .object(["interval": .string("month"), "frequency": .number(1)]),
                                      "current_billing_period": .object(["starts_at": .string(RFC3339.format(period.start, fractional: true)),
                                                                         "ends_at": .string(RFC3339.format(period.end, fractional: true))]),
                                      "paused_at": .null, "canceled_at": .null, "discount": .null, "custom_data": .null, "scheduled_change": .null]
        if include {
            let lines = state.with { $0 }.filter { $0.subscription == id && !$0.immediately && $0.custom == nil }
            o["next_transaction"] = .object(["details": .object(["line_items": .array(lines.map {
                .object(["price_id": .string($0.price), "quantity": .number(Double($0.quantity))])
            })])])
        }
        return .object(o)
    }
}
