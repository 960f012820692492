import Foundation
import UsageBilling
import UsageEmulatorCore

/// OpenMeter `POST /api/v1/events` (CloudEvents, single or batch; dedup by (source, id),
/// silently; 204) and `GET /api/v1/meters/{slug}/query` (meter slug = event type, summing the
/// type's value property, default `value`); Kong Konnect's v3 API at `/v3/openmeter/…` (or
/// `/openmeter/…` under a base that stands for `…/v3`): `POST events` (202), `GET meters`
/// (any key asked for, else one per event type seen; its id a ULID derived from the key) and
/// `POST meters/{id}/query`.
final class OpenMeterEmulation: EmulatedProvider {
    let prefix = "openmeter"
    private let valueProperties: MeterValueProperties
    private struct State { var usage: [AcceptedUsage] = []; var keys: Set<String> = [] }
    private let state = Locked(State())
    func reset() { state.with { $0 = State() } }

    init(valueProperties: MeterValueProperties) { self.valueProperties = valueProperties }

    func accepted() async -> [AcceptedUsage] { state.with { $0.usage } }

    private func problem(_ status: Int, _ title: String, _ detail: String, headers: HeaderFields = [:]) -> HTTPResponse
    {
        var h = headers
        h["Content-Type"] = "application/problem+json"
        return HTTPResponse(
            status: status, headers: h,
            body: JSONValue.object([
                "type": .string("about:blank"), "title": .string(title), "status": .number(Double(status)),
                "detail": .string(detail),
            ]).encoded())
    }

    func injected(status: Int, retryAfter: Bool) -> HTTPResponse {
        problem(
            status, status == 429 ? "Too Many Requests" : "Internal Server Error", "injected by the emulator",
            headers: status == 429 && retryAfter ? ["Retry-After": "1"] : [:])
    }

    func handle(_ r: EmulatedRequest) -> HTTPResponse {
        let path = r.path.hasPrefix("/v3/openmeter/") ? String(r.path.dropFirst("/v3".count)) : r.path
        switch (r.method, path) {
        case ("POST", "/openmeter/events"):
            return ingest(r, accepted: 202)
        case ("GET", "/openmeter/meters"):
            return meters(r)
        case ("POST", _) where path.hasPrefix("/openmeter/meters/") && path.hasSuffix("/query"):
            return queryV3(r, id: String(path.dropFirst("/openmeter/meters/".count).dropLast("/query".count)))
        case ("POST", "/api/v1/events"):
            return ingest(r, accepted: 204)
        case ("GET", _) where r.path.hasPrefix("/api/v1/meters/") && r.path.hasSuffix("/query"):
            return queryV1(r)
        default:
            return problem(404, "Not Found", "no route for \(r.method) \(r.path)")
        }
    }

    private func ingest(_ r: EmulatedRequest, accepted: Int) -> HTTPResponse {
        let type = r.headers["Content-Type"] ?? ""
        let events: [JSONValue]
        if type.hasPrefix("application/cloudevents-batch+json"), let list = r.json?.arrayValue {
            events = list
        } else if type.hasPrefix("application/cloudevents+json"), let one = r.json {
            events = [one]
        } else if accepted == 202, type.hasPrefix("application/json"), let body = r.json {
            events = body.arrayValue ?? [body]
        } else {
            return problem(
                400, "Bad Request",
                "Content-Type must be application/cloudevents+json or application/cloudevents-batch+json")
        }
        // Read outside the lock, which concurrent requests share; OpenMeter dedupes by (source, id).
        var valid: [(key: String, usage: AcceptedUsage)] = []
        valid.reserveCapacity(events.count)
        for e in events {
            guard let id = e["id"]?.stringValue, let source = e["source"]?.stringValue,
                let type = e["type"]?.stringValue,
                let subject = e["subject"]?.stringValue
            else {
                return problem(400, "Bad Request", "every event needs id, source, type and subject")
            }
            valid.append(
                (
                    source + "\u{1F}" + id,
                    AcceptedUsage(
                        customer: subject, meter: type,
                        timestamp: e["time"]?.stringValue.flatMap(RFC3339.parse) ?? Date(),
                        quantity: Reply.decimal(e["data"]?[valueProperties.property(for: type, default: "value")]) ?? 0,
                        key: id)
                ))
        }
        state.with { s in
            for item in valid where s.keys.insert(item.key).inserted { s.usage.append(item.usage) }
        }
        return Reply.empty(accepted)
    }

    private func queryV1(_ r: EmulatedRequest) -> HTTPResponse {
        let slug = String(r.path.dropFirst("/api/v1/meters/".count).dropLast("/query".count))
        guard let from = r.query("from").flatMap(RFC3339.parse), let to = r.query("to").flatMap(RFC3339.parse) else {
            return problem(400, "Bad Request", "from and to are required")
        }
        let subjects = r.queryAll("subject")
        let usage = state.with { $0.usage }.filter {
            $0.meter == slug && (subjects.isEmpty || subjects.contains($0.customer))
        }
        let step: TimeInterval? =
            switch r.query("windowSize") {
            case "HOUR": 3600;
            case "DAY": 86_400;
            case "MINUTE": 60;
            default: nil
            }
        var rows: [JSONValue] = []
        for subject in (subjects.isEmpty ? Set(usage.map(\.customer)).sorted() : subjects) {
            var windows: [(Date, Date)] = []
            if let step {
                var s = from;
                while s < to {
                    windows.append((s, min(s.addingTimeInterval(step), to))); s = s.addingTimeInterval(step)
                }
            } else {
                windows = [(from, to)]
            }
            for w in windows {
                let v = usage.filter { $0.customer == subject && $0.timestamp >= w.0 && $0.timestamp < w.1 }.reduce(
                    Decimal(0)
                ) { $0 + $1.quantity }
                rows.append(
                    .object([
                        "subject": .string(subject), "value": Reply.number(v),
                        "windowStart": .string(RFC3339.format(w.0)),
                        "windowEnd": .string(RFC3339.format(w.1)), "groupBy": .object([:]),
                    ]))
            }
        }
        var result: [String: JSONValue] = [
            "data": .array(rows), "from": .string(RFC3339.format(from)), "to": .string(RFC3339.format(to)),
        ]
        if let size = r.query("windowSize") { result["windowSize"] = .string(size) }
        return Reply.json(200, .object(result))
    }

    /// A meter's ULID, derived from its key (Crockford base 32, first digit 0–7 as ULIDs have).
    static func meterID(_ key: String) -> String {
        let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
        let hex = EventID.derived(from: ["openmeter-meter", key]).dropFirst(3)
        let digits = hex.compactMap { $0.hexDigitValue }
        return String(alphabet[digits[0] % 8])
            + String((1..<26).map { alphabet[(digits[$0 % digits.count] * 2 + $0 / digits.count) % 32] })
    }

    private func meters(_ r: EmulatedRequest) -> HTTPResponse {
        // The emulator keeps no meter list: a key asked for is a meter, as is every event type seen.
        let keys = r.query("filter[key][eq]").map { [$0] } ?? Set(state.with { $0.usage.map(\.meter) }).sorted()
        let stamp = JSONValue.string("2026-01-01T00:00:00Z")
        let data = keys.map { key -> JSONValue in
            .object([
                "id": .string(Self.meterID(key)), "key": .string(key), "name": .string(key),
                "aggregation": .string("sum"),
                "event_type": .string(key), "created_at": stamp, "updated_at": stamp,
            ])
        }
        return Reply.json(
            200,
            .object([
                "data": .array(data),
                "meta": .object([
                    "page": .object([
                        "number": .number(1), "size": .number(Double(max(1, data.count))),
                        "total": .number(Double(data.count)),
                    ])
                ]),
            ]))
    }

    private func queryV3(_ r: EmulatedRequest, id: String) -> HTTPResponse {
        let usage = state.with { $0.usage }
        guard id.wholeMatch(of: /[0-7][0-9A-HJKMNP-TV-Z]{25}/) != nil else {
            return problem(404, "Not Found", "no meter with the id \(id)")
        }
        // A meter id no event type derives to is a meter with no usage yet.
        let key = Set(usage.map(\.meter)).first { Self.meterID($0) == id }
        let body = r.json
        guard let from = body?["from"]?.stringValue.flatMap(RFC3339.parse),
            let to = body?["to"]?.stringValue.flatMap(RFC3339.parse), from < to
        else {
            return problem(400, "Bad Request", "from and to are required, from before to")
        }
        let wanted =
            body?["filters"]?["dimensions"]?["subject"]?["in"]?.arrayValue?.compactMap(\.stringValue)
            ?? body?["filters"]?["dimensions"]?["subject"]?["eq"]?.stringValue.map { [$0] }
        let mine = usage.filter { $0.meter == key && (wanted == nil || wanted?.contains($0.customer) == true) }
        let step: TimeInterval? =
            switch body?["granularity"]?.stringValue {
            case "PT1M": 60;
            case "PT1H": 3600;
            case "P1D": 86_400;
            default: nil
            }
        var rows: [JSONValue] = []
        for subject in Set(mine.map(\.customer)).sorted() {
            var s = from
            while s < to {
                let e = step.map { min(s.addingTimeInterval($0), to) } ?? to
                let items = mine.filter { $0.customer == subject && $0.timestamp >= s && $0.timestamp < e }
                if !items.isEmpty {
                    rows.append(
                        .object([
                            "value": .string(DecimalFormat.plain(items.reduce(Decimal(0)) { $0 + $1.quantity })),
                            "from": .string(RFC3339.format(s)), "to": .string(RFC3339.format(e)),
                            "dimensions": .object(["subject": .string(subject)]),
                        ]))
                }
                s = e
            }
        }
        return Reply.json(
            200,
            .object(["from": .string(RFC3339.format(from)), "to": .string(RFC3339.format(to)), "data": .array(rows)]))
    }
}

/// OpenMeter's emulation as the emulator registers it; its meters sum the properties
/// ``MeterSums`` names (default `value`).
public enum EmulatedOpenMeter {
    public static let kind = EmulationKind(
        kind: "openmeter", adapterSettings: "api_key: om_REDACTED",
        realHosts: ["openmeter.cloud": "openmeter"].merging(
            ["us", "eu", "au", "me", "in"].map { ("\($0).api.konghq.com", "openmeter") }
        ) { a, _ in a },
        meters: .sumQuantityProperty, endpoints: { ["endpoint": "\($0)/openmeter"] },
        make: { [OpenMeterEmulation(valueProperties: MeterValueProperties($0.options[MeterSums.self].properties))] })
}
