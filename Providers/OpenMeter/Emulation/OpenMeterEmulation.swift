import Foundation
import UsageBilling
import UsageEmulatorCore

/// OpenMeter `POST /api/v1/events` (CloudEvents, single or batch; dedup by (source, id),
/// silently; 204) and `GET /api/v1/meters/{slug}/query` (meter slug = event type, summing the
/// type's value property, default `value`).
final class OpenMeterEmulation: EmulatedProvider {
    let prefix = "openmeter"
    private let valueProperties: MeterValueProperties
    private struct State { var usage: [AcceptedUsage] = []; var keys: Set<String> = [] }
    private let state = Locked(State())
    func reset() { state.with { $0 = State() } }

    init(valueProperties: MeterValueProperties) { self.valueProperties = valueProperties }

    func accepted() async -> [AcceptedUsage] { state.with { $0.usage } }

    private func problem(_ status: Int, _ title: String, _ detail: String, headers: HeaderFields = [:]) -> HTTPResponse {
        var h = headers
        h["Content-Type"] = "application/problem+json"
        return HTTPResponse(status: status, headers: h, body: JSONValue.object([
            "type": .string("about:blank"), "title": .string(title), "status": .number(Double(status)), "detail": .string(detail),
        ]).encoded())
    }

    func injected(status: Int, retryAfter: Bool) -> HTTPResponse {
        problem(status, status == 429 ? "Too Many Requests" : "Internal Server Error", "injected by the emulator",
                headers: status == 429 && retryAfter ? ["Retry-After": "1"] : [:])
    }

    func handle(_ r: EmulatedRequest) -> HTTPResponse {
        switch (r.method, r.path) {
        case ("POST", "/api/v1/events"):
            let type = r.headers["Content-Type"] ?? ""
            let events: [JSONValue]
            if type.hasPrefix("application/cloudevents-batch+json"), let list = r.json?.arrayValue {
                events = list
            } else if type.hasPrefix("application/cloudevents+json"), let one = r.json {
                events = [one]
            } else {
                return problem(400, "Bad Request", "Content-Type must be application/cloudevents+json or application/cloudevents-batch+json")
            }
            // Read outside the lock, which concurrent requests share; OpenMeter dedupes by (source, id).
            var valid: [(key: String, usage: AcceptedUsage)] = []
            valid.reserveCapacity(events.count)
            for e in events {
                guard let id = e["id"]?.stringValue, let source = e["source"]?.stringValue, let type = e["type"]?.stringValue,
                      let subject = e["subject"]?.stringValue else {
                    return problem(400, "Bad Request", "every event needs id, source, type and subject")
                }
                valid.append((source + "\u{1F}" + id,
                              AcceptedUsage(customer: subject, meter: type, timestamp: e["time"]?.stringValue.flatMap(RFC3339.parse) ?? Date(),
                                            quantity: Reply.decimal(e["data"]?[valueProperties.property(for: type, default: "value")]) ?? 0, key: id)))
            }
            state.with { s in
                for item in valid where s.keys.insert(item.key).inserted { s.usage.append(item.usage) }
            }
            return Reply.empty(204)
        case ("GET", _) where r.path.hasPrefix("/api/v1/meters/") && r.path.hasSuffix("/query"):
            let slug = String(r.path.dropFirst("/api/v1/meters/".count).dropLast("/query".count))
            guard let from = r.query("from").flatMap(RFC3339.parse), let to = r.query("to").flatMap(RFC3339.parse) else {
                return problem(400, "Bad Request", "from and to are required")
            }
            let subjects = r.queryAll("subject")
            let usage = state.with { $0.usage }.filter { $0.meter == slug && (subjects.isEmpty || subjects.contains($0.customer)) }
            let step: TimeInterval? = switch r.query("windowSize") { case "HOUR": 3600; case "DAY": 86_400; case "MINUTE": 60; default: nil }
            var rows: [JSONValue] = []
            for subject in (subjects.isEmpty ? Set(usage.map(\.customer)).sorted() : subjects) {
                var windows: [(Date, Date)] = []
                if let step { var s = from; while s < to { windows.append((s, min(s.addingTimeInterval(step), to))); s = s.addingTimeInterval(step) } } else { windows = [(from, to)] }
                for w in windows {
                    let v = usage.filter { $0.customer == subject && $0.timestamp >= w.0 && $0.timestamp < w.1 }.reduce(Decimal(0)) { $0 + $1.quantity }
                    rows.append(.object(["subject": .string(subject), "value": Reply.number(v), "windowStart": .string(RFC3339.format(w.0)),
                                         "windowEnd": .string(RFC3339.format(w.1)), "groupBy": .object([:])]))
                }
            }
            var result: [String: JSONValue] = ["data": .array(rows), "from": .string(RFC3339.format(from)), "to": .string(RFC3339.format(to))]
            if let size = r.query("windowSize") { result["windowSize"] = .string(size) }
            return Reply.json(200, .object(result))
        default:
            return problem(404, "Not Found", "no route for \(r.method) \(r.path)")
        }
    }
}

/// OpenMeter's emulation as the emulator registers it; its meters sum the properties
/// ``MeterSums`` names (default `value`).
public enum EmulatedOpenMeter {
    public static let kind = EmulationKind(
        kind: "openmeter", adapterSettings: "api_key: om_REDACTED", realHosts: ["openmeter.cloud": "openmeter"], endpoints: { ["endpoint": "\($0)/openmeter"] },
        make: { [OpenMeterEmulation(valueProperties: MeterValueProperties($0.options[MeterSums.self].properties))] })
}
