import Foundation
import UsageBilling
import UsageEmulatorCore

private func chargebeeError(
    _ status: Int, _ code: String, _ message: String, type: String = "invalid_request", param: String? = nil,
    headers: HeaderFields = [:]
) -> HTTPResponse {
    var body: [String: JSONValue] = [
        "message": .string(message), "type": .string(type), "api_error_code": .string(code),
        "http_status_code": .number(Double(status)),
    ]
    if let param { body["param"] = .string(param) }
    return Reply.json(status, .object(body), headers: headers)
}

private func chargebeeInjected(status: Int, retryAfter: Bool) -> HTTPResponse {
    status == 429
        ? chargebeeError(
            429, "api_request_limit_exceeded",
            "Sorry, access has been blocked temporarily due to request count exceeding acceptable limits.",
            type: "operation_failed", headers: retryAfter ? ["Retry-After": "1"] : [:])
        : chargebeeError(
            status, status == 503 ? "internal_temporary_error" : "internal_error", "Sorry, something went wrong.",
            type: "operation_failed")
}

/// Chargebee's Usages API: `POST /api/v2/subscriptions/{id}/usages` (form; a repeated `id` is
/// refused with `duplicate_entry`; one record per subscription, item price and `usage_date`;
/// `chargebee-idempotency-key` replays the first answer for 30 minutes) and `GET /api/v2/usages`
/// (filters `subscription_id[is]`, `item_price_id[is]`, `usage_date[between]`; `next_offset`
/// paging, 2 per page when `limit` asks for less). A record is invoiced 31 days after it was
/// created (``invoicedAfter``).
final class ChargebeeEmulation: EmulatedProvider {
    let prefix = "chargebee"
    private let now: @Sendable () -> Date
    private struct Record {
        var id: String; var subscription: String; var itemPrice: String; var quantity: Decimal; var date: Int64;
        var note: String?; var created: Date
    }
    /// How long after its creation a record is on an invoice: the emulator's subscriptions renew
    /// monthly, and a renewal invoices the usage of the term that ended, so by 31 days any
    /// record has been invoiced. An invoiced record carries `invoice_id` and cannot be deleted.
    static let invoicedAfter: TimeInterval = 31 * 86_400

    private func invoiceID(_ r: Record, at: Date) -> String? {
        at.timeIntervalSince(r.created) >= Self.invoicedAfter
            ? "inv_emu_"
                + EventID.derived(from: [r.subscription, String(r.date / Int64(Self.invoicedAfter))]).suffix(12)
            : nil
    }
    private struct State { var records: [Record] = []; var replies: [String: HTTPResponse] = [:] }
    private let state = Locked(State())
    func reset() { state.with { $0 = State() } }

    init(now: @escaping @Sendable () -> Date) { self.now = now }

    func accepted() async -> [AcceptedUsage] {
        state.with { $0.records }.map {
            AcceptedUsage(
                customer: $0.subscription, meter: $0.itemPrice,
                timestamp: Date(timeIntervalSince1970: TimeInterval($0.date)), quantity: $0.quantity, key: $0.id)
        }
    }

    func injected(status: Int, retryAfter: Bool) -> HTTPResponse {
        chargebeeInjected(status: status, retryAfter: retryAfter)
    }

    private func usageJSON(_ r: Record) -> JSONValue {
        let at = now()
        var o: [String: JSONValue] = [
            "id": .string(r.id), "usage_date": .number(Double(r.date)), "subscription_id": .string(r.subscription),
            "item_price_id": .string(r.itemPrice), "quantity": .string(DecimalFormat.plain(r.quantity)),
            "source": .string("api"),
            "object": .string("usage"), "created_at": .number(Double(r.date)), "updated_at": .number(Double(r.date)),
        ]
        if let note = r.note { o["note"] = .string(note) }
        if let invoice = invoiceID(r, at: at) { o["invoice_id"] = .string(invoice) }
        return .object(o)
    }

    func handle(_ r: EmulatedRequest) -> HTTPResponse {
        guard basicAuthOK(r.headers) else {
            return chargebeeError(
                401, "api_authentication_failed", "Sorry, authentication failed. Invalid api key", type: "untyped")
        }
        if r.method == "POST", r.path.hasPrefix("/api/v2/subscriptions/"), r.path.hasSuffix("/usages") {
            let subscription =
                String(r.path.dropFirst("/api/v2/subscriptions/".count).dropLast("/usages".count))
                .removingPercentEncoding ?? ""
            return create(subscription: subscription, r)
        }
        if r.method == "GET" && r.path == "/api/v2/usages" { return list(r) }
        if r.method == "POST", r.path.hasPrefix("/api/v2/subscriptions/"), r.path.hasSuffix("/delete_usage") {
            let subscription =
                String(r.path.dropFirst("/api/v2/subscriptions/".count).dropLast("/delete_usage".count))
                .removingPercentEncoding ?? ""
            return delete(subscription: subscription, r)
        }
        return chargebeeError(404, "resource_not_found", "Sorry, we couldn't find that resource")
    }

    /// `POST …/delete_usage` (form `id`): the record leaves the usage list; a retry with the same
    /// `chargebee-idempotency-key` is answered as the first was.
    private func delete(subscription: String, _ r: EmulatedRequest) -> HTTPResponse {
        idempotent(r) { deleteOnce(subscription: subscription, r) }
    }

    /// A request with a `chargebee-idempotency-key` Chargebee answered before is answered as it
    /// was then, marked `chargebee-idempotency-replayed`; a success is kept for the key.
    private func idempotent(_ r: EmulatedRequest, _ answer: () -> HTTPResponse) -> HTTPResponse {
        let key = r.headers["chargebee-idempotency-key"]
        if let key, let replay = state.with({ $0.replies[key] }) {
            var h = replay.headers
            h["chargebee-idempotency-replayed"] = "true"
            return HTTPResponse(status: replay.status, headers: h, body: replay.body)
        }
        let response = answer()
        if let key, response.status == 200 { state.with { $0.replies[key] = response } }
        return response
    }

    private func deleteOnce(subscription: String, _ r: EmulatedRequest) -> HTTPResponse {
        guard let id = r.form["id"], !id.isEmpty else {
            return chargebeeError(400, "param_wrong_value", "id : cannot be blank", param: "id")
        }
        return state.with { s in
            guard let i = s.records.firstIndex(where: { $0.id == id && $0.subscription == subscription }) else {
                return chargebeeError(
                    404, "resource_not_found", "Sorry, we couldn't find that resource", type: "invalid_request")
            }
            if invoiceID(s.records[i], at: now()) != nil {
                return chargebeeError(
                    400, "invalid_state_for_request", "The usage \(id) is already invoiced and cannot be deleted.",
                    param: "id")
            }
            let record = s.records.remove(at: i)
            return Reply.json(200, .object(["usage": usageJSON(record)]))
        }
    }

    private func create(subscription: String, _ r: EmulatedRequest) -> HTTPResponse {
        idempotent(r) { createOnce(subscription: subscription, r) }
    }

    private func createOnce(subscription: String, _ r: EmulatedRequest) -> HTTPResponse {
        let f = r.form
        guard let itemPrice = f["item_price_id"], !itemPrice.isEmpty else {
            return chargebeeError(400, "param_wrong_value", "item_price_id : cannot be blank", param: "item_price_id")
        }
        guard let quantityText = f["quantity"], let quantity = DecimalFormat.parse(quantityText),
            quantityText.count <= 40
        else {
            return chargebeeError(400, "param_wrong_value", "quantity : invalid value", param: "quantity")
        }
        guard let date = f["usage_date"].flatMap(Int64.init) else {
            return chargebeeError(400, "param_wrong_value", "usage_date : cannot be blank", param: "usage_date")
        }
        let id = f["id"] ?? "emu_\(UUID().uuidString.prefix(12))"
        return state.with { s in
            if s.records.contains(where: { $0.id == id }) {
                return chargebeeError(400, "duplicate_entry", "The value \(id) is already present.", param: "id")
            }
            if let i = s.records.firstIndex(where: {
                $0.subscription == subscription && $0.itemPrice == itemPrice && $0.date == date
            }) {
                switch f["dedupe_option"] {
                case "skip": return Reply.json(200, .object(["usage": usageJSON(s.records[i])]))
                case "update_existing":
                    s.records[i].quantity = quantity
                    return Reply.json(200, .object(["usage": usageJSON(s.records[i])]))
                default:
                    return chargebeeError(
                        400, "duplicate_entry",
                        "A usage already exists for this subscription, item price and usage_date.", param: "usage_date")
                }
            }
            let record = Record(
                id: id, subscription: subscription, itemPrice: itemPrice, quantity: quantity, date: date,
                note: f["note"], created: now())
            s.records.append(record)
            return Reply.json(200, .object(["usage": usageJSON(record)]))
        }
    }

    private func list(_ r: EmulatedRequest) -> HTTPResponse {
        let limit = r.query("limit").flatMap(Int.init).map { min(100, max(1, $0)) } ?? 10
        let offset = r.query("offset").flatMap(Int.init) ?? 0
        var between: (Int64, Int64)?
        if let b = r.query("usage_date[between]") {
            let parts = b.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).split(separator: ",").compactMap {
                Int64($0)
            }
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
    func injected(status: Int, retryAfter: Bool) -> HTTPResponse {
        chargebeeInjected(status: status, retryAfter: retryAfter)
    }

    func handle(_ r: EmulatedRequest) -> HTTPResponse {
        guard basicAuthOK(r.headers) else {
            return chargebeeError(
                401, "api_authentication_failed", "Sorry, authentication failed. Invalid api key", type: "untyped")
        }
        guard r.method == "POST", r.path == "/api/v2/batch/usage_events" else {
            return chargebeeError(404, "resource_not_found", "Sorry, we couldn't find that resource")
        }
        guard let events = r.json?["events"]?.arrayValue, (1...500).contains(events.count) else {
            return chargebeeError(400, "invalid_request", "events : must hold 1 to 500 events", param: "events")
        }
        let oldest = (now().timeIntervalSince1970 - 12 * 3600) * 1000
        return state.with { s in
            s.batches += 1
            var failed: [JSONValue] = []
            for e in events {
                let id = e["deduplication_id"]?.stringValue ?? ""
                guard let subscription = e["subscription_id"]?.stringValue, let ts = e["usage_timestamp"]?.numberValue,
                    !id.isEmpty
                else {
                    failed.append(
                        .object([
                            "deduplication_id": .string(id), "error_code": .string("invalid_request"),
                            "error_message": .string(
                                "deduplication_id, subscription_id and usage_timestamp are required"),
                        ]))
                    continue
                }
                if ts < oldest {
                    failed.append(
                        .object([
                            "deduplication_id": .string(id), "error_code": .string("invalid_usage_timestamp"),
                            "error_message": .string("usage_timestamp must be within the last 12 hours"),
                        ]))
                    continue
                }
                guard s.keys.insert("\(Int64(ts))\u{1F}\(subscription)\u{1F}\(id)").inserted else { continue }
                s.usage.append(
                    AcceptedUsage(
                        customer: subscription, meter: "usage_events",
                        timestamp: Date(timeIntervalSince1970: ts / 1000),
                        quantity: Reply.decimal(e["properties"]?["quantity"]) ?? 0, key: id))
            }
            return Reply.json(
                200,
                .object([
                    "batch_id": .string(String(format: "batch_emu_%06d", s.batches)), "failed_events": .array(failed),
                ]))
        }
    }
}

/// Chargebee's emulation as the emulator registers it: the site API at `/chargebee` and the
/// usage-events ingest host at `/chargebee-ingest`.
public enum EmulatedChargebee {
    public static let kind = EmulationKind(
        kind: "chargebee", prefixes: ["chargebee", "chargebee-ingest"],
        adapterSettings: "api_key: cb_REDACTED, site: acme-test, item_price_id: seats-USD, requests_per_minute: 60000",
        realHosts: ["acme-test.chargebee.com": "chargebee", "acme-test.ingest.chargebee.com": "chargebee-ingest"],
        endpoints: { ["endpoint": "\($0)/chargebee", "ingest_endpoint": "\($0)/chargebee-ingest"] },
        make: { [ChargebeeEmulation(now: $0.now), ChargebeeIngestEmulation(now: $0.now)] })
}
