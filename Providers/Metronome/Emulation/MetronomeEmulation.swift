import Foundation
import UsageBilling
import UsageEmulatorCore

/// Metronome `POST /v1/ingest` (a bare array; dedup by `transaction_id` for 34 days, silently),
/// `POST /v1/usage` (per customer and billable metric = event type, summing the event type's
/// value property, in day or hour windows) and `GET /v1/customers?ingest_alias=`. An event
/// backdated more than 34 days is refused with a 400 (Metronome documents the limit, not the
/// answer; the emulator's message names it).
///
/// Ingest aliases: an event's `customer_id` that is not a UUID is an ingest alias of a customer
/// whose Metronome id is derived from it, and usage answers name that id, as Metronome's do.
/// A Stripe restricted key (`Bearer rk_…`) is refused, as Metronome refuses it.
final class MetronomeEmulation: EmulatedProvider {
    let prefix = "metronome"
    private let valueProperties: MeterValueProperties
    private struct State { var usage: [AcceptedUsage] = []; var keys: Set<String> = [] }
    private let state = Locked(State())
    func reset() { state.with { $0 = State() } }

    private let now: @Sendable () -> Date
    /// How far back Metronome takes an event's timestamp (metronome.md: backdated up to 34 days).
    static let backdatingLimit: TimeInterval = 34 * 86_400

    init(valueProperties: MeterValueProperties, now: @escaping @Sendable () -> Date) {
        self.valueProperties = valueProperties
        self.now = now
    }

    func accepted() async -> [AcceptedUsage] { state.with { $0.usage } }

    func injected(status: Int, retryAfter: Bool) -> HTTPResponse {
        var h: HeaderFields = status == 429 ? ["X-Metronome-Rate-Limit-Type": "client"] : [:]
        if status == 429 && retryAfter { h["Retry-After"] = "1" }
        return Reply.json(
            status, .object(["message": .string(status == 429 ? "Too many requests" : "Internal server error")]),
            headers: h)
    }

    func handle(_ r: EmulatedRequest) -> HTTPResponse {
        guard let auth = r.headers["Authorization"], auth.hasPrefix("Bearer "), !auth.hasPrefix("Bearer rk_") else {
            return Reply.json(401, .object(["message": .string("Unauthorized")]))
        }
        switch (r.method, r.path) {
        case ("GET", "/v1/customers"):
            let known = Set(state.with { $0.usage.map(\.customer) })
            // The emulator keeps no customer list: every alias belongs to a customer, as if each
            // customer had been created with the alias the events use.
            let matches =
                r.query("ingest_alias").map { alias in Self.isCustomerID(alias) ? [] : [alias] } ?? known.sorted()
            return Reply.json(
                200,
                .object([
                    "data": .array(
                        matches.map { name in
                            .object([
                                "id": .string(Self.customerID(name)), "name": .string(name),
                                "ingest_aliases": .array(Self.isCustomerID(name) ? [] : [.string(name)]),
                            ])
                        }), "next_page": .null,
                ]))
        case ("POST", "/v1/ingest"):
            guard let events = r.json?.arrayValue, (1...100).contains(events.count) else {
                return Reply.json(400, .object(["message": .string("body must be an array of 1 to 100 events")]))
            }
            let received = now()
            var valid: [AcceptedUsage] = []
            valid.reserveCapacity(events.count)
            for (i, e) in events.enumerated() {
                guard let key = e["transaction_id"]?.stringValue, let customer = e["customer_id"]?.stringValue,
                    let type = e["event_type"]?.stringValue,
                    let at = e["timestamp"]?.stringValue.flatMap(RFC3339.parse)
                else {
                    return Reply.json(
                        400,
                        .object([
                            "message": .string(
                                "body/\(i) must have transaction_id, customer_id, event_type and an RFC 3339 timestamp")
                        ]))
                }
                guard at >= received.addingTimeInterval(-Self.backdatingLimit) else {
                    return Reply.json(
                        400,
                        .object([
                            "message": .string(
                                "body/\(i)/timestamp is more than 34 days in the past; events can be backdated up to 34 days"
                            )
                        ]))
                }
                valid.append(
                    AcceptedUsage(
                        customer: customer, meter: type, timestamp: at,
                        quantity: Reply.decimal(
                            e["properties"]?[valueProperties.property(for: type, default: "quantity")]) ?? 0, key: key))
            }
            state.with { s in
                // a repeat: silently the same 200
                for usage in valid where s.keys.insert(usage.key ?? "").inserted { s.usage.append(usage) }
            }
            return Reply.empty(200)
        case ("POST", "/v1/usage"):
            let body = r.json
            guard let start = body?["starting_on"]?.stringValue.flatMap(RFC3339.parse),
                let end = body?["ending_before"]?.stringValue.flatMap(RFC3339.parse)
            else {
                return Reply.json(400, .object(["message": .string("starting_on and ending_before are required")]))
            }
            let step: TimeInterval = body?["window_size"]?.stringValue == "hour" ? 3600 : 86_400
            let customers = body?["customer_ids"]?.arrayValue?.compactMap(\.stringValue)
            let all = state.with { $0.usage }
            let ids = Dictionary(uniqueKeysWithValues: Set(all.map(\.customer)).map { ($0, Self.customerID($0)) })
            let usage = all.filter { customers == nil || customers?.contains(ids[$0.customer] ?? "") == true }
            var rows: [JSONValue] = []
            for customer in Set(usage.map(\.customer)).sorted() {
                for metric in Set(usage.filter { $0.customer == customer }.map(\.meter)).sorted() {
                    var s = start
                    while s < end {
                        let e = s.addingTimeInterval(step)
                        let items = usage.filter {
                            $0.customer == customer && $0.meter == metric && $0.timestamp >= s && $0.timestamp < e
                        }
                        rows.append(
                            .object([
                                "customer_id": .string(ids[customer] ?? customer),
                                "billable_metric_id": .string("bm_\(metric)"), "billable_metric_name": .string(metric),
                                "start_timestamp": .string(RFC3339.format(s)),
                                "end_timestamp": .string(RFC3339.format(e)),
                                "value": items.isEmpty
                                    ? .null : Reply.number(items.reduce(Decimal(0)) { $0 + $1.quantity }),
                            ]))
                        s = e
                    }
                }
            }
            // Pages of `limit` rows (default 100) with an opaque `next_page` cursor, as Metronome's.
            let limit = r.query("limit").flatMap(Int.init).map { min(100, max(1, $0)) } ?? 100
            let offset = r.query("next_page").flatMap { Int($0.dropFirst("emu-".count)) } ?? 0
            let page = Array(rows.dropFirst(offset).prefix(limit))
            let next: JSONValue = offset + page.count < rows.count ? .string("emu-\(offset + page.count)") : .null
            return Reply.json(200, .object(["data": .array(page), "next_page": next]))
        default:
            return Reply.json(404, .object(["message": .string("Not found")]))
        }
    }
}

/// Metronome's emulation as the emulator registers it; its billable metrics sum the properties
/// ``MeterSums`` names (default `quantity`).
public enum EmulatedMetronome {
    public static let kind = EmulationKind(
        kind: "metronome", adapterSettings: "api_key: metronome_REDACTED, events_per_second: 100000000",
        realHosts: ["api.metronome.com": "metronome"],
        meters: .sumQuantityProperty, endpoints: { ["endpoint": "\($0)/metronome"] },
        make: {
            [
                MetronomeEmulation(
                    valueProperties: MeterValueProperties($0.options[MeterSums.self].properties), now: $0.now)
            ]
        })
}

extension MetronomeEmulation {
    static func isCustomerID(_ name: String) -> Bool { UUID(uuidString: name) != nil }

    /// The Metronome id of the customer an event names: itself when it is one, else the id of
    /// the customer the alias belongs to (a UUID derived from the alias).
    static func customerID(_ name: String) -> String {
        if isCustomerID(name) { return name.lowercased() }
        let hex = Array(EventID.derived(from: ["metronome-ingest-alias", name]).dropFirst(3))
        return [0..<8, 8..<12, 12..<16, 16..<20, 20..<32].map { String(hex[$0]) }.joined(separator: "-")
    }

    /// The usage query is a POST that only reads.
    func isRead(_ request: EmulatedRequest) -> Bool { request.path == "/v1/usage" }
}
