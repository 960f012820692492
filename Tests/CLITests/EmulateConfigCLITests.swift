import Foundation
import Testing
import UsageBilling
import UsageBillingTesting
import UsageTestSupport

/// `emulate -c routing.yaml` makes the emulator's meters read events as the config sends them
/// (here OpenMeter's `quantity_property: gb_hours`), so the README's flow against a separate
/// emulator process (import, worker, reconcile) agrees for every provider in the example.
@Suite("CLI emulate -c", .timeLimit(.minutes(3)))
struct EmulateConfigCLITests {
    /// The example plus the newer APIs: Paddle usage events (beta) shadowing the support tickets'
    /// one-time charges, and a Kong Konnect (OpenMeter v3) shadow of the storage route,
    /// under its own source and event type: the emulator holds one OpenMeter, which dedupes by
    /// (source, id), and its meters are per event type.
    static func extended(_ example: String) -> String {
        example
            .replacingOccurrences(
                of: "\nroutes:\n",
                with: """

                      konnect:
                        kind: openmeter
                        region: eu
                        api_key: ${KONNECT_TOKEN}
                        source: billing-service-konnect
                      paddle_usage:
                        kind: paddle_usage
                        api_key: ${PADDLE_API_KEY}
                        event_names: { support_tickets: support_ticket }

                    routes:

                    """
            )
            .replacingOccurrences(of: "    to: paddle\n", with: "    to: paddle\n    shadow: paddle_usage\n")
            .replacingOccurrences(
                of: "    to: openmeter\n    openmeter: { quantity_property: gb_hours }\n",
                with: """
                        to: openmeter
                        shadow: konnect
                        openmeter: { quantity_property: gb_hours }
                        konnect: { quantity_property: gb_hours, event_name: storage_konnect }

                    """)
    }

    @Test func importWorkerReconcileAgreeForEveryProviderOfTheExample() async throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "ub-emulate-c-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let example = Self.extended(
            try String(contentsOf: CLI.root.appending(path: "examples/routing.yaml"), encoding: .utf8))
        #expect(
            example.contains("shadow: konnect") && example.contains("region: eu")
                && example.contains("shadow: paddle_usage"), "the example changed; update extended(_:)")
        let base = directory.appending(path: "routing-base.yaml")
        try Data(example.utf8).write(to: base)
        try FileManager.default.copyItem(
            at: CLI.root.appending(path: "examples/customers.csv"), to: directory.appending(path: "customers.csv"))
        let log = directory.appending(path: "emulator.log").path
        let emulator = try ChildProcess.spawn(
            CLI.binary.path, ["emulate", "--port", "0", "-c", base.path], directory: CLI.root.path, outputFile: log)
        defer { emulator.kill(SIGKILL) }
        var text = ""
        _ = try await eventually(every: .milliseconds(100)) {
            text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            return text.contains("Ctrl-C stops")
        }
        #expect(text.contains("storage_* sums gb_hours") && text.contains("storage_konnect sums gb_hours"), "\(text)")

        // The example config, each provider pointed at the emulator with the settings it printed.
        var settings: [String: String] = [:]
        for line in text.split(separator: "\n") {
            if let m = line.firstMatch(of: /^  ([a-z_]+): \{ (.+) \}/) { settings[String(m.1)] = String(m.2) }
        }
        // The emulator's printed settings carry the key, in place of the one the example reads from the environment.
        var yaml = example.replacingOccurrences(of: "    api_key: ${KONNECT_TOKEN}\n", with: "")
        for (kind, fields) in settings {
            let lines = fields.split(separator: ", ").map { field in
                let kv = field.split(separator: ": ", maxSplits: 1)
                return "    \(kv[0]): \"\(kv.count > 1 ? kv[1] : "")\""
            }
            yaml = yaml.replacingOccurrences(
                of: "    kind: \(kind)\n", with: "    kind: \(kind)\n" + lines.joined(separator: "\n") + "\n")
        }
        #expect(yaml.components(separatedBy: "endpoint: \"http://127.0.0.1").count - 1 >= 7, "\(yaml)")
        let config = directory.appending(path: "routing.yaml").path
        try Data(yaml.utf8).write(to: URL(fileURLWithPath: config))

        // The example events, moved to recent days as the demo does (providers take recent events).
        let lines = try String(contentsOf: CLI.root.appending(path: "examples/events.ndjson"), encoding: .utf8).split(
            separator: "\n")
        let stamps = lines.compactMap {
            JSONValue.parse(Data($0.utf8))?["timestamp"]?.stringValue.flatMap(RFC3339.parse)
        }
        let latest = try #require(stamps.max())
        let shift = (Date().addingTimeInterval(-3 * 3600).timeIntervalSince(latest) / 86_400).rounded(.down) * 86_400
        let moved = try lines.map { line -> String in
            guard case .object(var event) = JSONValue.parse(Data(line.utf8)),
                let at = event["timestamp"]?.stringValue.flatMap(RFC3339.parse)
            else {
                throw UsageBillingError(
                    .invalidInput, "examples/events.ndjson: a line is not an event", fix: "fix the example")
            }
            event["timestamp"] = .string(RFC3339.format(at.addingTimeInterval(shift)))
            return String(decoding: JSONValue.object(event).encoded(), as: UTF8.self)
        }
        let events = directory.appending(path: "events.ndjson").path
        try Data(moved.joined(separator: "\n").utf8).write(to: URL(fileURLWithPath: events))

        let check = try await CLI.run(["config", "check", config])
        #expect(
            check.status == 0
                && check.output.contains(
                    "paddle_usage (paddle_usage, beta: Paddle's usage-based billing is early access"),
            "\(check.output)")
        let spool = directory.appending(path: "usage.spool").path
        let recorded = try await CLI.run(["import", events, "-c", config, "--spool", spool])
        #expect(recorded.status == 0, "\(recorded.output)")
        let worker = try await CLI.run(["worker", "-c", config, "--spool", spool, "--until-empty", "--close-windows"])
        #expect(worker.status == 0, "\(worker.output)")

        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? calendar.timeZone
        let earliest = try #require(stamps.min()).addingTimeInterval(shift), last = latest.addingTimeInterval(shift)
        let from = RFC3339.format(calendar.dateInterval(of: .month, for: earliest)?.start ?? earliest)
        let to = RFC3339.format(calendar.dateInterval(of: .day, for: last)?.end ?? last)
        let json = try await CLI.run([
            "reconcile", "-c", config, "--spool", spool, "--from", from, "--to", to, "--json",
        ])
        #expect(json.status == 0, "\(json.output)")
        let report = JSONValue.parse(Data(json.output.utf8))
        #expect(report?["clean"] == .bool(true), "\(json.output)")
        let providers = Set(report?["rows"]?.arrayValue?.compactMap { $0["provider"]?.stringValue } ?? [])
        #expect(
            providers == [
                "stripe", "orb", "openmeter", "konnect", "metronome", "chargebee", "recurly", "paddle", "paddle_usage",
            ], "\(json.output)")
        for provider in ["openmeter", "konnect", "paddle_usage"] {
            let storage = report?["rows"]?.arrayValue?.filter { $0["provider"]?.stringValue == provider } ?? []
            #expect(
                !storage.isEmpty
                    && storage.allSatisfy { $0["reported"] == $0["recorded"] && $0["reported"] != .string("0") },
                "\(provider): \(storage)")
        }
    }
}
