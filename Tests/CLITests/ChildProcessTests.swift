import Foundation
import Testing
import UsageBillingTesting

/// The spawner the CLI and crash tests use instead of Foundation's `Process`.
@Suite("ChildProcess")
struct ChildProcessTests {
    @Test func capturesOutputExitCodeDirectoryAndEnvironment() async throws {
        let r = try await ChildProcess.run("/bin/sh", ["-c", "pwd; echo \"$UB_CHILD_TEST\"; echo oops >&2; exit 3"],
                                           environment: ["UB_CHILD_TEST": "hello", "PATH": "/usr/bin:/bin"], directory: "/tmp")
        #expect(r.status == 3)
        #expect(r.output == "/tmp\nhello\noops\n", "\(r.output)")
    }

    @Test func aKilledChildReportsItsSignalAndStopsRunning() async throws {
        let child = try ChildProcess.spawn("/bin/sh", ["-c", "sleep 30"])
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
                    return (nil, try ChildProcess.spawn("/bin/sh", ["-c", "sleep 30"]))
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
        #expect(elapsed < .seconds(20), "a sibling held a pipe open: \(elapsed)")
    }

    @Test func aMissingExecutableIsAClearError() async throws {
        await #expect(throws: (any Error).self) { try await ChildProcess.run("/nonexistent/usage-billing", []) }
    }
}
