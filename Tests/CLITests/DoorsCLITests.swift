import Foundation
import Testing
import UsageBilling
import UsageBillingTesting
import UsageTestSupport

/// The doors a person or a file comes in by, met as a user meets them: the built binary, a real
/// spool file, another Unix user for permissions.
@Suite("Doors: imports, lane tools, spool errors (built binary)", .timeLimit(.minutes(3)))
struct DoorsCLITests {
    static let yesterday = RFC3339.format(Date().addingTimeInterval(-86_400))

    /// A config routing `api` to OpenMeter with an Orb shadow (unreachable endpoints: nothing here sends).
    static func config(orbName: String = "orb", unrouted: String = "reject", extraRoutes: String = "") throws -> String
    {
        try CLI.temp(
            "doors.yaml",
            """
            version: 1
            providers:
              openmeter: { kind: openmeter, api_key: ${OPENMETER_TOKEN}, endpoint: "http://127.0.0.1:9" }
              \(orbName): { kind: orb, api_key: ${ORB_API_KEY}, endpoint: "http://127.0.0.1:9" }
            routes:
              - { events: [api], to: openmeter, shadow: \(orbName) }
            \(extraRoutes)
            unrouted: \(unrouted)
            """)
    }

    static func spool() -> String {
        FileManager.default.temporaryDirectory.appending(path: "ub-doors-\(UUID().uuidString.prefix(8)).spool").path
    }

    /// Queued rows per lane, from `status --json`.
    static func queued(_ spool: String) async throws -> [String: Int] {
        let r = try await CLI.run(["status", "--spool", spool, "--json"])
        var out: [String: Int] = [:]
        for lane in JSONValue.parse(Data(r.output.utf8))?.arrayValue ?? [] {
            if let name = lane["lane"]?.stringValue { out[name] = Int(lane["queued"]?.numberValue ?? -1) }
        }
        return out
    }

    // MARK: 1. Events without an id

    @Test func idLessEventsImportedTwiceAreRecordedOnceAndIdenticalLinesStayTwo() async throws {
        let line = #"{"name":"api","customer":"acme","timestamp":"\#(Self.yesterday)","quantity":3}"#
        let other = #"{"name":"api","customer":"beta","timestamp":"\#(Self.yesterday)","quantity":3}"#
        let file = try CLI.temp("noid.ndjson", [line, line, other].joined(separator: "\n") + "\n")
        let (config, spool) = (try Self.config(), Self.spool())
        let first = try await CLI.run(["import", file, "-c", config, "--spool", spool])
        #expect(first.status == 0, "\(first.output)")
        #expect(first.output.contains("3 event(s) had no id and got one derived"), "\(first.output)")
        let second = try await CLI.run(["import", file, "-c", config, "--spool", spool])
        #expect(second.status == 0)
        #expect(second.output.contains("0 new, 3 already recorded"), "\(second.output)")
        #expect(
            try await Self.queued(spool) == ["openmeter/api": 3, "orb/api": 3],
            "two identical lines are two events; a re-import adds none")

        let strict = try await CLI.run(["import", file, "-c", config, "--spool", Self.spool(), "--require-ids"])
        #expect(strict.status == 2)
        #expect(
            strict.output.contains("line 1: the event has no 'id'") && strict.output.contains("--require-ids"),
            "\(strict.output)")
    }

    @Test func aCSVWithoutAnIdColumnGetsTheSameIdsOnEveryImport() async throws {
        let csv = try CLI.temp(
            "noid.csv", "name,customer,timestamp,quantity\napi,acme,\(Self.yesterday),2\napi,acme,\(Self.yesterday),2\n"
        )
        let (config, spool) = (try Self.config(), Self.spool())
        for _ in 0..<2 { #expect(try await CLI.run(["import", csv, "-c", config, "--spool", spool]).status == 0) }
        #expect(try await Self.queued(spool)["openmeter/api"] == 2)
    }

    // MARK: 2. Unroutable events

    @Test func anUnroutableEventIsRefusedWithItsLineAndEveryValidEventIsRecorded() async throws {
        var lines = (1...1_500).map {
            #"{"id":"u-\#($0)","name":"api","customer":"acme","timestamp":"\#(Self.yesterday)"}"#
        }
        lines[1_200] = #"{"id":"u-1201","name":"unknown_event","customer":"acme","timestamp":"\#(Self.yesterday)"}"#
        let file = try CLI.temp("unrouted.ndjson", lines.joined(separator: "\n"))
        let spool = Self.spool()
        let r = try await CLI.run(["import", file, "-c", try Self.config(), "--spool", spool])
        #expect(r.status == 1, "\(r.output)")
        #expect(r.output.contains("Recorded 1499 events"), "\(r.output)")
        #expect(
            r.output.contains("1 refused") && r.output.contains("refused line 1201: 'unknown_event'")
                && r.output.contains("Fix: add a route"))
        #expect(try await Self.queued(spool)["openmeter/api"] == 1_499)

        let kept = try await CLI.run([
            "import", file, "-c", try Self.config(unrouted: "dead-letter"), "--spool", Self.spool(),
        ])
        #expect(kept.status == 1, "\(kept.output)")
        #expect(
            kept.output.contains("Recorded 1500 events") && kept.output.contains("1 dead-lettered"), "\(kept.output)")
    }

    // MARK: 3–4. Orphaned lanes

    @Test func theOrphanFixNamesALaneOfTheSameKindAndReassignNeverQueuesAnIdTwice() async throws {
        let spool = Self.spool()
        let events = try CLI.temp(
            "two.ndjson",
            (1...2).map { #"{"id":"o-\#($0)","name":"api","customer":"acme","timestamp":"\#(Self.yesterday)"}"# }
                .joined(separator: "\n"))
        #expect(try await CLI.run(["import", events, "-c", try Self.config(), "--spool", spool]).status == 0)
        let b = try Self.config(orbName: "orb2", extraRoutes: "  - { events: [other], to: openmeter }")

        let worker = try await CLI.run(["worker", "-c", b, "--spool", spool, "--until-empty"])
        #expect(worker.status == 2)
        #expect(worker.output.contains("lanes reassign orb/api orb2/api"), "\(worker.output)")
        #expect(!worker.output.contains("lanes reassign orb/api openmeter"))

        let check = try await CLI.run(["config", "check", b, "--spool", spool])
        #expect(check.status == 2)
        #expect(!check.output.contains(": OK"), "config check says OK only when it is: \(check.output)")
        #expect(check.output.contains("orb/api: move it with"))

        let across = try await CLI.run(["lanes", "reassign", "orb/api", "openmeter/api", "-c", b, "--spool", spool])
        #expect(across.status == 2)
        #expect(
            across.output.contains("provider kind orb") && across.output.contains("--to-other-provider")
                && across.output.contains("orb2/api"), "\(across.output)")
        #expect(
            try await Self.queued(spool) == ["openmeter/api": 2, "orb/api": 2], "a refused reassign changes nothing")

        let forced = try await CLI.run([
            "lanes", "reassign", "orb/api", "openmeter/api", "-c", b, "--spool", spool, "--to-other-provider",
        ])
        #expect(forced.status == 0, "\(forced.output)")
        #expect(
            forced.output.contains("Moved 0 row(s)") && forced.output.contains("2 row(s) were already there"),
            "\(forced.output)")
        #expect(try await Self.queued(spool)["openmeter/api"] == 2, "no id is queued twice on one lane")
    }

    @Test func everyOrphanedLaneIsNamedWithItsOwnFix() async throws {
        let spool = Self.spool()
        let a = try Self.config(extraRoutes: "  - { events: [storage], to: openmeter }")
        let events = try CLI.temp(
            "both.ndjson",
            """
            {"id":"e-1","name":"api","customer":"acme","timestamp":"\(Self.yesterday)"}
            {"id":"e-2","name":"storage","customer":"acme","timestamp":"\(Self.yesterday)"}
            """)
        #expect(try await CLI.run(["import", events, "-c", a, "--spool", spool]).status == 0)
        let b = try CLI.temp(
            "b.yaml",
            """
            version: 1
            providers:
              openmeter: { kind: openmeter, api_key: ${OPENMETER_TOKEN}, endpoint: "http://127.0.0.1:9" }
            routes:
              - { events: [other], to: openmeter }
            """)
        let r = try await CLI.run(["worker", "-c", b, "--spool", spool, "--until-empty"])
        #expect(r.status == 2)
        for lane in ["openmeter/api", "orb/api", "openmeter/storage"] {
            #expect(r.output.contains("\(lane): "), "\(lane) named: \(r.output)")
        }
        #expect(
            r.output.contains("lanes drop orb/api"), "no Orb lane in the config: drop, not a move to another provider")
    }

    // MARK: 5. Permissions

    /// Runs the binary as `nobody` when the tests run as root (root passes every permission
    /// check), else as the current user.
    static func runAsOtherUser(_ args: [String]) async throws -> CLI.Result {
        let env = ProcessInfo.processInfo.environment.merging(CLI.env) { $1 }
        if getuid() == 0 {
            let (status, output) = try await ChildProcess.run(
                "/usr/sbin/runuser", ["-u", "nobody", "--", CLI.binary.path] + args, environment: env, directory: "/tmp"
            )
            return CLI.Result(status: status, output: output)
        }
        let (status, output) = try await ChildProcess.run(CLI.binary.path, args, environment: env, directory: "/tmp")
        return CLI.Result(status: status, output: output)
    }

    @Test func permissionProblemsNameTheirCauseAndReadingCommandsWorkOnAReadOnlySpool() async throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "ub-ro-\(UUID().uuidString.prefix(8))")
            .path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let spool = directory + "/usage.spool"
        let config = try Self.config()
        let events = try CLI.temp(
            "ro.ndjson", #"{"id":"p-1","name":"api","customer":"acme","timestamp":"\#(Self.yesterday)"}"#)
        #expect(try await CLI.run(["import", events, "-c", config, "--spool", spool]).status == 0)
        let before = try Self.listing(directory)
        try FileManager.default.setAttributes([.posixPermissions: 0o555], ofItemAtPath: directory)
        try FileManager.default.setAttributes([.posixPermissions: 0o444], ofItemAtPath: spool)
        for file in [config, events] {
            try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: file)
        }
        defer { try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: directory) }

        let create = try await Self.runAsOtherUser([
            "import", events, "-c", config, "--spool", directory + "/new.spool",
        ])
        #expect(create.status == 2)
        #expect(
            create.output.contains("permission denied creating the spool") && create.output.contains("not writable"),
            "\(create.output)")
        #expect(!create.output.contains(".recover"))
        let write = try await Self.runAsOtherUser(["import", events, "-c", config, "--spool", spool])
        #expect(write.status == 2)
        #expect(
            write.output.contains("permission denied writing the spool") && !write.output.contains(".recover"),
            "\(write.output)")

        let status = try await Self.runAsOtherUser(["status", "--spool", spool])
        #expect(status.status == 0, "\(status.output)")
        #expect(status.output.contains("openmeter/api"), "\(status.output)")
        let letters = try await Self.runAsOtherUser(["dlq", "list", "--spool", spool])
        #expect(letters.status == 0, "\(letters.output)")
        #expect(try Self.listing(directory) == before, "reading changed nothing in the spool's directory")
    }

    /// Each file of `directory` with its size and modification time.
    static func listing(_ directory: String) throws -> [String: String] {
        var out: [String: String] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
            let attributes = try FileManager.default.attributesOfItem(atPath: directory + "/" + name)
            out[name] = "\(attributes[.size] ?? 0) \(attributes[.modificationDate] ?? 0)"
        }
        return out
    }

    // MARK: 7. Secrets only where a provider is called

    @Test func recordingAndStatusRunWithoutTheProvidersSecrets() async throws {
        let (config, spool) = (try Self.config(), Self.spool())
        let events = try CLI.temp(
            "nokey.ndjson", #"{"id":"k-1","name":"api","customer":"acme","timestamp":"\#(Self.yesterday)"}"#)
        let without = CLI.env.merging(["ORB_API_KEY": "", "OPENMETER_TOKEN": ""]) { $1 }
        let record = try await CLI.run(["import", events, "-c", config, "--spool", spool], env: without)
        #expect(record.status == 0, "\(record.output)")
        let status = try await CLI.run(["status", "-c", config, "--spool", spool], env: without)
        #expect(status.status == 0, "\(status.output)")
        let send = try await CLI.run(["worker", "-c", config, "--spool", spool, "--until-empty"], env: without)
        #expect(
            send.status == 2 && send.output.contains("ORB_API_KEY is not set"),
            "a command that sends still needs it: \(send.output)")
    }

    // MARK: 15. A newcomer's walkthrough

    /// The README's "try it yourself" config, run as its steps say: `emulate -c` as a process,
    /// import, worker, status, reconcile; then the same import again records nothing new.
    @Test func theReadmeWalkthroughRunsAsWritten() async throws {
        let readme = try String(contentsOf: CLI.root.appending(path: "README.md"), encoding: .utf8)
        let start = try #require(readme.range(of: "<!-- walkthrough-config -->\n```yaml\n"))
        let end = try #require(readme.range(of: "```\n<!-- end-walkthrough-config -->"))
        let written = String(readme[start.upperBound..<end.lowerBound])
        let first = try CLI.temp("my-routing.yaml", written)
        let log = FileManager.default.temporaryDirectory.appending(path: "ub-walk-\(UUID().uuidString.prefix(8)).log")
            .path
        let emulator = try ChildProcess.spawn(
            CLI.binary.path, ["emulate", "-c", first, "--port", "0"],
            environment: ProcessInfo.processInfo.environment.merging(CLI.env) { $1 }, directory: CLI.root.path,
            outputFile: log)
        defer { emulator.kill(SIGTERM) }
        let base = try await LiveServe.baseURL(printedIn: log, by: emulator)
        let printed = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(
            printed.contains("stripe: { endpoint: \(base)/stripe")
                && printed.contains("orb: { endpoint: \(base)/orb/v1 }"), "the endpoints to paste: \(printed)")
        let config = try CLI.temp(
            "my-routing.yaml", written.replacingOccurrences(of: "http://127.0.0.1:12111", with: base))
        let timestamp = RFC3339.format(Date().addingTimeInterval(-3_600))
        let events = try CLI.temp(
            "events.ndjson",
            #"{"name":"api_request","customer":"acme","timestamp":"\#(timestamp)","quantity":150}"# + "\n")
        let spool = Self.spool()
        let steps: [[String]] = [
            ["import", events, "-c", config, "--spool", spool],
            ["worker", "-c", config, "--spool", spool, "--until-empty"],
            ["status", "--spool", spool],
            [
                "reconcile", "-c", config, "--spool", spool, "--from",
                RFC3339.format(Date().addingTimeInterval(-86_400 * 2)), "--to",
                RFC3339.format(Date().addingTimeInterval(86_400)),
            ],
        ]
        var outputs: [String] = []
        for step in steps {
            let r = try await CLI.run(step)
            #expect(r.status == 0, "\(step[0]): \(r.output)")
            outputs.append(r.output)
        }
        #expect(
            outputs[2].contains("stripe/api_request: queued 0, retrying 0, delivered 1")
                && outputs[2].contains("orb/api_request: queued 0, retrying 0, delivered 1"), "\(outputs[2])")
        #expect(outputs[3].contains("OK: 0 mismatch") && outputs[3].contains("match   stripe"), "\(outputs[3])")
        let again = try await CLI.run(steps[0])
        #expect(again.output.contains("0 new, 1 already recorded"), "\(again.output)")
    }

    @Test func theDemoOutsideTheRepositorySaysWhereItLookedAndAMistypedSettingGetsADidYouMean() async throws {
        let (status, output) = try await ChildProcess.run(
            CLI.binary.path, ["demo"], environment: ProcessInfo.processInfo.environment, directory: "/tmp")
        #expect(status == 2)
        #expect(
            output.contains("(looked for in /tmp)") && output.contains("run the demo from the repository root")
                && output.contains("--events"), "\(output)")

        let typo = try CLI.temp(
            "typo.yaml",
            """
            version: 1
            providers:
              orb: { kind: orb, api_key: ${ORB_API_KEY}, max_inflight: 4, time_out: 10s }
            routes:
              - { events: [api], to: orb }
            """)
        let r = try await CLI.run(["config", "check", typo])
        #expect(r.status == 2)
        #expect(r.output.contains("orb has no setting 'max_inflight'; did you mean 'max_in_flight'?"), "\(r.output)")
        #expect(r.output.contains("orb has no setting 'time_out'; did you mean 'timeout'?"), "\(r.output)")
    }
}
