import Foundation
import UsageBilling
import UsageBillingCurl
import UsageEmulator
import Testing
import UsageBillingTesting
import UsageRouting
import UsageSpool
import UsageTestSupport

/// The built `usage-billing` binary (this target depends on it).
enum Binary {
    static var url: URL {
        let here = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [here, here.deletingLastPathComponent()] {
            let url = candidate.appending(path: "usage-billing")
            if FileManager.default.isExecutableFile(atPath: url.path) { return url }
        }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
            .appending(path: ".build/debug/usage-billing")
    }

    /// Starts the binary; output goes to a file (never a pipe that could fill up).
    static func start(_ args: [String], log: String) throws -> ChildProcess {
        try ChildProcess.spawn(url.path, args, outputFile: log)
    }

    /// Waits for a process off Swift's cooperative pool.
    static func wait(_ process: ChildProcess) async -> Int32 { await process.exitStatus() }
}

@Suite("Crash test", .timeLimit(.minutes(3)))
struct CrashTests {
    /// A child process records N numbered events; workers deliver them to a loopback Stripe fake
    /// that answers with scripted 429s, 503s, resets (some after applying the event) and delays,
    /// and are killed with SIGKILL at random points and restarted. At the end the fake holds every
    /// id, counted once, and nothing is left queued.
    @Test func killedWorkersLoseNothingAndBillNothingTwice() async throws {
        let n = 300
        // The emulator is the provider; this server stands in front of it to script the faults.
        let emulator = try await UsageEmulator.start()
        let upstream = try CurlHTTPClient()
        defer { upstream.shutdown() }
        let stripe = emulator.endpoints["stripe"]?["endpoint"] ?? ""
        @Sendable func forward(_ request: LoopbackHTTPServer.Request) async -> HTTPResponse {
            (try? await upstream.send(
                HTTPRequest(
                    method: HTTPMethod(rawValue: request.method), url: stripe + request.target,
                    headers: request.headers, body: request.body)))
                ?? HTTPResponse(status: 502)
        }
        let counter = Locked(0)
        let server = try await LoopbackHTTPServer.start(threads: 2) { request in
            let k = counter.with {
                $0 += 1; return $0
            }
            switch k {
            case _ where k % 13 == 0:
                return .respond(
                    .json(
                        429,
                        .object([
                            "error": .object([
                                "type": .string("invalid_request_error"), "code": .string("rate_limit"),
                                "message": .string("Request rate limit exceeded"),
                            ])
                        ]), headers: ["Retry-After": "0"]))
            case _ where k % 11 == 0:
                return .respond(
                    .json(
                        503,
                        .object(["error": .object(["type": .string("api_error"), "message": .string("unavailable")])])))
            case _ where k % 19 == 0:
                return .reset  // before applying
            case _ where k % 7 == 0:
                _ = await forward(request)
                return .reset  // applied, but the answer never arrives
            case _ where k % 17 == 0:
                try? await Task.sleep(for: .milliseconds(150))
            default:
                break
            }
            return .respond(await forward(request))
        }
        let dir = FileManager.default.temporaryDirectory.appending(path: "ub-crash-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let config = dir + "/routing.yaml", spool = dir + "/usage.spool", log = dir + "/log.txt",
            input = dir + "/events.ndjson"
        try Data(
            """
            version: 1
            providers:
              stripe: { kind: stripe, secret_key: sk_live_REDACTED, endpoint: "\(server.baseURL)" }
            routes:
              - { events: [api_request], to: stripe }
            """.utf8
        ).write(to: URL(fileURLWithPath: config))
        let now = Date()
        let lines = (0..<n).map { i in
            #"{"id":"crash-\#(i)","name":"api_request","customer":"acme","timestamp":"\#(RFC3339.format(now.addingTimeInterval(-Double(n - i) - 60)))","quantity":"\#(i % 9 + 1)"}"#
        }
        try Data(lines.joined(separator: "\n").utf8).write(to: URL(fileURLWithPath: input))

        // The recording child process.
        let recorder = try Binary.start(["import", input, "-c", config, "--spool", spool], log: log)
        #expect(await Binary.wait(recorder) == 0, "\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")

        // Workers, killed at random points.
        var kills = 0
        var rng = SeededGenerator(seed: UInt64(Date().timeIntervalSince1970))
        for _ in 0..<6 {
            let worker = try Binary.start(["worker", "-c", config, "--spool", spool, "--until-empty"], log: log)
            try await Task.sleep(for: .milliseconds(Int.random(in: 150...700, using: &rng)))
            if worker.isRunning {
                worker.kill(SIGKILL)
                kills += 1
            }
            _ = await Binary.wait(worker)
        }
        // The last worker runs to the end.
        let last = try Binary.start(["worker", "-c", config, "--spool", spool, "--until-empty"], log: log)
        #expect(await Binary.wait(last) == 0, "\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")

        let billed = await emulator.accepted("stripe")
        let recorded = (identifiers: Set(billed.compactMap(\.key)), events: billed.count)
        let expected = Set((0..<n).map { "crash-\($0)" })
        let requests = counter.with { $0 }
        let status = try Spool(path: spool).status()
        let lane = try #require(status.first)
        print(
            "crash test: N=\(n), SIGKILLs=\(kills), requests=\(requests), ids at the server=\(recorded.identifiers.count), events counted=\(recorded.events), delivered=\(lane.delivered), duplicates=\(lane.duplicates), queued=\(lane.queued)"
        )
        #expect(recorded.identifiers == expected, "every id reached the server")
        #expect(recorded.events == n, "each id was counted once")
        #expect(lane.queued == 0 && lane.dead.isEmpty)
        #expect(lane.delivered + lane.duplicates == n)
        await server.shutdown()
    }
}
