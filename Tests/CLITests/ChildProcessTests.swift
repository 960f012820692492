import Foundation
import Testing
import UsageBillingTesting
import UsageTestSupport

/// The spawner the CLI and crash tests use instead of Foundation's `Process`.
@Suite("ChildProcess")
struct ChildProcessTests {
    @Test func capturesOutputExitCodeDirectoryAndEnvironment() async throws {
        let r = try await ChildProcess.run(
            "/bin/sh", ["-c", "pwd; echo \"$UB_CHILD_TEST\"; echo oops >&2; exit 3"],
            environment: ["UB_CHILD_TEST": "hello", "PATH": "/usr/bin:/bin"], directory: "/tmp")
        #expect(r.status == 3)
        #expect(r.output == "/tmp\nhello\noops\n", "\(r.output)")
    }

    @Test func aKilledChildReportsItsSignalAndStopsRunning() async throws {
        let child = try ChildProcess.spawn("/bin/sh", ["-c", "sleep 300"])
        #expect(child.isRunning)
        child.kill(SIGKILL)
        #expect(await child.exitStatus() == 128 + SIGKILL)
    }

    /// Short children captured while long-lived siblings are spawned on other threads: each
    /// output pipe must reach only its own child, or a sibling would hold it open for 30 s.
    @Test func onlyItsChildHoldsItsPipe() async throws {
        let started = ContinuousClock.now
        let (outputs, sleepers) = try await withThrowingTaskGroup(of: (String?, ChildProcess?).self) { group in
            for i in 0..<16 {
                group.addTask { () async throws -> (String?, ChildProcess?) in
                    if i % 2 == 0 {
                        let r = try await ChildProcess.run("/bin/sh", ["-c", "echo \(i)"])
                        return (r.output, nil)
                    }
                    return (nil, try ChildProcess.spawn("/bin/sh", ["-c", "sleep 300"]))
                }
            }
            var outputs: [String] = [], sleepers: [ChildProcess] = []
            for try await (output, sleeper) in group {
                if let output { outputs.append(output) }
                if let sleeper { sleepers.append(sleeper) }
            }
            return (outputs, sleepers)
        }
        let elapsed = ContinuousClock.now - started
        for sleeper in sleepers { sleeper.kill(SIGKILL); _ = await sleeper.exitStatus() }
        #expect(outputs.sorted() == (0..<8).map { "\($0 * 2)\n" }.sorted())
        // only separates 8 short runs from the sleepers' 300 s
        #expect(elapsed < .seconds(120), "a sibling held a pipe open: \(elapsed)")
    }

    @Test func aMissingExecutableIsAClearError() async throws {
        await #expect(throws: (any Error).self) { try await ChildProcess.run("/nonexistent/usage-billing", []) }
    }
}

@Suite("CLI emulate")
struct EmulateCLITests {
    /// `emulate` writes its settings at once even when its output is a file (a server run in the
    /// background with `> emulator.log`), not when the buffer fills.
    @Test func settingsReachALogFileAtOnce() async throws {
        let log = FileManager.default.temporaryDirectory.appending(path: "ub-emulate-\(UUID().uuidString).log").path
        let child = try ChildProcess.spawn(
            CLI.binary.path,
            ["emulate", "--port", "0", "--set", "orb.grace_hours=12", "--set", "stripe.meters=api_requests,storage"],
            outputFile: log)
        var text = ""
        _ = try await eventually(every: .milliseconds(100)) {
            text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            return text.contains("Ctrl-C stops")
        }
        // the text is out before the server installs its SIGTERM handling, so no clean stop is expected here
        child.kill(SIGKILL)
        _ = await child.exitStatus()
        #expect(
            text.contains("Emulating stripe, orb") && text.contains("orb: { endpoint: http://127.0.0.1:")
                && text.contains("Ctrl-C stops"), "\(text)")
    }
}

extension EmulateCLITests {
    @Test(arguments: [
        ["--set", "stripe.meters= , "], ["--set", "orb.grace_hours=0"], ["--set", "stripe.color=red"],
        ["--faults", "stripe:500=2"],
    ])
    func badFlagsExit2NamingTheFlag(_ flags: [String]) async throws {
        let r = try await CLI.run(["emulate", "--port", "0"] + flags)
        #expect(
            r.status == 2 && r.output.contains(flags[0].hasPrefix("--faults") ? "500=2" : flags[0])
                && r.output.contains("Fix"), "\(r.output)")
    }
}
