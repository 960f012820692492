import Foundation
import Testing
import UsageBilling
import UsageBillingCurl
import UsageBillingTesting
import UsageEmulator
import UsageServe
import UsageSpool
import UsageTestSupport

/// A live `usage-billing serve` process over loopback.
struct LiveServe {
    static let token = "tok_" + String(repeating: "a1", count: 16)
    let process: ChildProcess
    let base: String
    let log: String

    /// Starts `serve` with `config` on a free port and waits until it listens.
    static func start(config: String, spool: String, arguments: [String] = []) async throws -> LiveServe {
        let log = FileManager.default.temporaryDirectory.appending(path: "ub-serve-\(UUID().uuidString.prefix(8)).log")
            .path
        let process = try ChildProcess.spawn(
            CLI.binary.path, ["serve", "-c", config, "--spool", spool, "--port", "0"] + arguments,
            environment: ProcessInfo.processInfo.environment.merging(CLI.env.merging(["INGEST_TOKEN": token]) { $1 }) {
                $1
            },
            directory: CLI.root.path, outputFile: log)
        return LiveServe(process: process, base: try await baseURL(printedIn: log, by: process), log: log)
    }

    /// The `http://127.0.0.1:PORT` a process prints in `log` once it listens.
    static func baseURL(printedIn log: String, by process: ChildProcess) async throws -> String {
        var base: String?
        _ = try await eventually {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if let range = text.range(of: #"http://127\.0\.0\.1:\d+"#, options: .regularExpression) {
                base = String(text[range])
            }
            return base != nil || !process.isRunning
        }
        guard let base else {
            throw UsageBillingError(
                .unexpectedResponse,
                "the process did not start listening: " + ((try? String(contentsOfFile: log, encoding: .utf8)) ?? ""))
        }
        return base
    }

    func post(
        _ client: CurlHTTPClient, _ body: String, type: String = "application/json", token: String? = LiveServe.token,
        query: String = "", path: String = "/v1/events"
    ) async throws -> (status: Int, json: JSONValue?) {
        var headers: HeaderFields = ["Content-Type": type]
        if let token { headers.add(name: "Authorization", value: "Bearer \(token)") }
        let response = try await client.send(
            HTTPRequest(method: .post, url: base + path + query, headers: headers, body: Data(body.utf8)))
        return (response.status, JSONValue.parse(response.body))
    }

    func get(_ client: CurlHTTPClient, _ path: String) async throws -> HTTPResponse {
        try await client.send(HTTPRequest(method: .get, url: base + path))
    }

    var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
}

@Suite("serve (live process)", .timeLimit(.minutes(3)))
struct ServeCLITests {
    static func config(endpoint: String, serve: String = "") throws -> String {
        try CLI.temp(
            "serve.yaml",
            """
            version: 1
            providers:
              openmeter: { kind: openmeter, api_key: ${OPENMETER_TOKEN}, endpoint: "\(endpoint)" }
            routes:
              - { events: [api_request, tokens], to: openmeter }
            serve:
              tokens: [${INGEST_TOKEN}]
            \(serve)
            """)
    }

    /// A live `serve` on a fresh spool, its provider the emulator, and a client for it.
    struct OnEmulator {
        let emulator: UsageEmulator
        let config: String
        let spool: String
        let serve: LiveServe
        let client: CurlHTTPClient
    }

    static func startOnEmulator(serve section: String = "", arguments: [String] = []) async throws -> OnEmulator {
        let emulator = try await UsageEmulator.start()
        let config = try Self.config(endpoint: emulator.endpoints["openmeter"]?["endpoint"] ?? "", serve: section)
        let spool = FileManager.default.temporaryDirectory.appending(
            path: "ub-serve-\(UUID().uuidString.prefix(8)).spool"
        ).path
        let serve = try await LiveServe.start(config: config, spool: spool, arguments: arguments)
        return OnEmulator(emulator: emulator, config: config, spool: spool, serve: serve, client: try CurlHTTPClient())
    }

    static func event(_ id: String, _ name: String = "api_request", quantity: Int = 1) -> String {
        #"{"id":"\#(id)","name":"\#(name)","customer":"acme","timestamp":"\#(RFC3339.format(Date().addingTimeInterval(-60)))","quantity":\#(quantity)}"#
    }

    /// Every body format, refusals that leave their neighbours alone, an id sent twice, auth,
    /// limits, malformed bodies, health, metrics that move; then SIGTERM, exit 0, and every
    /// accepted event delivered exactly once.
    @Test func ingestFormatsRefusalsAuthLimitsAndMetrics() async throws {
        let live = try await Self.startOnEmulator(serve: "  max_body_bytes: 4096\n  max_events_per_request: 5")
        let (emulator, serve, client) = (live.emulator, live.serve, live.client)
        defer { client.shutdown() }

        let firstBody = Self.event("s-1")
        let one = try await serve.post(client, firstBody)
        #expect(one.status == 202 && one.json?["accepted"]?.numberValue == 1, "\(String(describing: one.json))")
        let array = try await serve.post(
            client,
            "[\(Self.event("s-2")), {\"id\":\"s-bad\",\"name\":\"api_request\",\"customer\":\"acme\",\"timestamp\":\"yesterday\"}, \(Self.event("s-3"))]"
        )
        #expect(array.status == 202 && array.json?["accepted"]?.numberValue == 2)
        let refused = array.json?["refused"]?.arrayValue?.first
        #expect(
            refused?["index"]?.numberValue == 1 && refused?["field"]?.stringValue == "timestamp"
                && refused?["id"]?.stringValue == "s-bad")
        #expect(
            refused?["fix"]?.stringValue?.contains("RFC 3339") == true
                || refused?["fix"]?.stringValue?.contains("2026") == true)
        let ndjson = try await serve.post(
            client, Self.event("s-4") + "\n{not json\n" + Self.event("s-5") + "\n", type: "application/x-ndjson")
        #expect(ndjson.status == 202 && ndjson.json?["accepted"]?.numberValue == 2)
        #expect(ndjson.json?["refused"]?.arrayValue?.first?["line"]?.numberValue == 2)
        let cloud = try await serve.post(
            client,
            #"{"specversion":"1.0","id":"s-6","source":"app","type":"tokens","subject":"acme","data":{"tokens":7,"model":"m1"}}"#,
            type: "application/cloudevents+json", query: "?quantity_property=tokens")
        #expect(cloud.status == 202 && cloud.json?["accepted"]?.numberValue == 1)
        let batch = try await serve.post(
            client,
            #"[{"specversion":"1.0","id":"s-7","source":"app","type":"api_request","subject":"acme","data":{"value":2}}]"#,
            type: "application/cloudevents-batch+json")
        #expect(batch.status == 202 && batch.json?["accepted"]?.numberValue == 1)
        let resent = try await serve.post(client, firstBody)
        #expect(
            resent.status == 202 && resent.json?["accepted"]?.numberValue == 0
                && resent.json?["duplicates"]?.numberValue == 1,
            "an id sent twice is a duplicate, answered as success and recorded once: \(String(describing: resent.json))"
        )
        let reused = try await serve.post(
            client, firstBody.replacingOccurrences(of: #""quantity":1"#, with: #""quantity":99"#))
        let reuse = reused.json?["refused"]?.arrayValue?.first
        #expect(
            reused.status == 400 && reuse?["field"]?.stringValue == "quantity"
                && reuse?["reason"]?.stringValue?.hasPrefix("id_reused_with_different_payload") == true,
            "an id reused for another payload is refused; the recorded event stands: \(String(describing: reused.json))"
        )

        #expect(try await serve.post(client, Self.event("x-1"), token: nil).status == 401)
        #expect(try await serve.post(client, Self.event("x-2"), token: "tok_wrong_wrong_wrong_wrong").status == 401)
        #expect(
            try await serve.post(client, "[" + (0..<40).map { Self.event("big-\($0)") }.joined(separator: ",") + "]")
                .status == 413, "over max_body_bytes")
        #expect(
            try await serve.post(client, "[" + (0..<6).map { Self.event("many-\($0)") }.joined(separator: ",") + "]")
                .status == 413, "over max_events_per_request")
        let malformed = try await serve.post(client, "{\"id\": ")
        #expect(malformed.status == 400 && malformed.json?["error"]?["code"]?.stringValue == "malformed_body")
        #expect(try await serve.post(client, Self.event("x-3"), type: "text/plain").status == 415)
        #expect(try await serve.get(client, "/healthz").status == 200)
        #expect(try await serve.get(client, "/readyz").status == 200)

        // /metrics, parsed: the ingest counters match what was answered.
        let metrics = String(decoding: try await serve.get(client, "/metrics").body, as: UTF8.self)
        func sample(_ name: String, _ labels: String) -> Double? {
            metrics.split(separator: "\n").first { $0.hasPrefix("\(name){\(labels)}") }.flatMap {
                Double($0.split(separator: " ").last ?? "")
            }
        }
        #expect(sample("usage_billing_ingest_events_total", #"result="accepted""#) == 7, "\(metrics.prefix(2000))")
        #expect(sample("usage_billing_ingest_events_total", #"result="refused""#) == 2)
        #expect(sample("usage_billing_ingest_events_total", #"result="duplicate""#) == 1)
        #expect(sample("usage_billing_ingest_events_total", #"result="id_reused""#) == 1)
        #expect(sample("usage_billing_ingest_requests_total", #"status="401""#) == 2)
        #expect(sample("usage_billing_ingest_requests_total", #"status="202""#) == 6)
        #expect((sample("usage_billing_ingest_requests_total", #"status="413""#) ?? 0) == 2)

        // Delivered while serving, then a graceful stop.
        let accepted = Set(["s-1", "s-2", "s-3", "s-4", "s-5", "s-6", "s-7"])
        #expect(try await eventually { Set(await emulator.accepted("openmeter").compactMap(\.key)) == accepted })
        serve.process.kill(SIGTERM)
        #expect(await serve.process.exitStatus() == 0, "\(serve.output)")
        let billed = await emulator.accepted("openmeter")
        #expect(billed.count == accepted.count, "every accepted event delivered once")
        #expect(billed.first { $0.key == "s-1" }?.quantity == 1, "the first of an id was kept")
        #expect(billed.first { $0.key == "s-6" }?.quantity == 7, "the CloudEvent's quantity came from data.tokens")
        #expect(!serve.output.contains(LiveServe.token), "the token is never printed")
        await emulator.shutdown()
    }

    /// Past `max_backlog` queued rows, requests get 503 with Retry-After and nothing of them is
    /// recorded; /readyz says why.
    @Test func aFullBacklogAnswers503AndRecordsNothing() async throws {
        let closed = try ClosedPort()
        let config = try Self.config(endpoint: "http://127.0.0.1:\(closed.port)", serve: "  max_backlog: 3")
        let spool = FileManager.default.temporaryDirectory.appending(
            path: "ub-serve-\(UUID().uuidString.prefix(8)).spool"
        ).path
        let serve = try await LiveServe.start(config: config, spool: spool)
        let client = try CurlHTTPClient()
        defer { client.shutdown() }
        let first = try await serve.post(
            client, "[" + (0..<5).map { Self.event("b-\($0)") }.joined(separator: ",") + "]")
        #expect(first.status == 202)
        #expect(
            try await eventually { try await serve.get(client, "/readyz").status == 503 },
            "/readyz reports the full backlog")
        let refused = try await client.send(
            HTTPRequest(
                method: .post, url: serve.base + "/v1/events",
                headers: ["Content-Type": "application/json", "Authorization": "Bearer \(LiveServe.token)"],
                body: Data(Self.event("b-late").utf8)))
        #expect(refused.status == 503 && refused.headers["Retry-After"] != nil)
        serve.process.kill(SIGTERM)
        #expect(await serve.process.exitStatus() == 0)
        let ledger = try Spool(path: spool)
        #expect(try await ledger.queuedCount(lane: nil) == 5, "the refused request recorded nothing")
    }

    /// SIGTERM while requests are in flight, and SIGKILL: every event answered 202 is in the
    /// spool, and a worker run afterwards delivers each once.
    @Test(arguments: [SIGTERM, SIGKILL])
    func everyEventAnswered202SurvivesTheStop(_ signal: Int32) async throws {
        let live = try await Self.startOnEmulator()
        let (emulator, config, spool, serve, client) = (live.emulator, live.config, live.spool, live.serve, live.client)
        defer { client.shutdown() }
        let answered = LockedIDs()
        let senders = (0..<8).map { sender in
            Task {
                for request in 0..<200 {
                    let ids = (0..<10).map { "k\(signal)-\(sender)-\(request)-\($0)" }
                    guard
                        let reply = try? await serve.post(
                            client, "[" + ids.map { Self.event($0) }.joined(separator: ",") + "]")
                    else { return }
                    if reply.status == 202 { answered.add(ids) } else { return }
                }
            }
        }
        _ = try await eventually { answered.count >= 200 }
        serve.process.kill(signal)
        let status = await serve.process.exitStatus()
        for sender in senders { await sender.value }
        if signal == SIGTERM { #expect(status == 0, "\(serve.output.suffix(500))") }
        // The worker runs on the same config without the ingest token in its environment.
        let worker = try await CLI.run(["worker", "-c", config, "--spool", spool, "--until-empty"], env: CLI.env)
        #expect(worker.status == 0, "\(worker.output)")
        let billed = Set(await emulator.accepted("openmeter").compactMap(\.key))
        let ids = answered.all
        let missing = ids.subtracting(billed).count
        #expect(missing == 0, "\(missing) of \(ids.count) events answered 202 were not delivered")
        #expect(await emulator.accepted("openmeter").count == billed.count, "nothing billed twice")
        print(
            "serve \(signal == SIGKILL ? "SIGKILL" : "SIGTERM"): \(ids.count) events answered 202, all delivered once (\(billed.count) billed)"
        )
        await emulator.shutdown()
    }
}

extension ServeCLITests {
    /// `serve` refuses to start, naming the key and the fix, without a token or with a bad limit.
    @Test(arguments: [
        (
            "serve:\n  tokens: [${INGEST_TOKEN}]\n", [String: String](),
            "serve.tokens[0]: environment variable INGEST_TOKEN is not set"
        ),
        ("", ["INGEST_TOKEN": LiveServe.token], "no serve section"),
        ("serve:\n  tokens: [short]\n", [:], "at least 16 characters"),
        (
            "serve:\n  tokens: [${INGEST_TOKEN}]\n  max_events_per_request: 0\n", ["INGEST_TOKEN": LiveServe.token],
            "serve.max_events_per_request"
        ),
        (
            "serve:\n  tokens: [${INGEST_TOKEN}]\n  max_body: 10\n", ["INGEST_TOKEN": LiveServe.token],
            "unknown key 'max_body'"
        ),
    ])
    func aBadServeSectionIsRefusedWithTheFix(_ section: String, _ env: [String: String], _ says: String) async throws {
        let config = try CLI.temp(
            "serve-bad.yaml",
            """
            version: 1
            providers:
              openmeter: { kind: openmeter, api_key: ${OPENMETER_TOKEN} }
            routes:
              - { events: [api_request], to: openmeter }
            \(section)
            """)
        let spool = FileManager.default.temporaryDirectory.appending(
            path: "ub-serve-bad-\(UUID().uuidString.prefix(8)).spool"
        ).path
        let run = try await CLI.run(
            ["serve", "-c", config, "--spool", spool, "--port", "0"], env: CLI.env.merging(env) { $1 })
        #expect(run.status == 2, "\(run.output)")
        #expect(run.output.contains(says) && run.output.contains("Fix:"), "\(run.output)")
    }

    /// Every problem of a serve section is reported at once, each at its line, by `serve` and by
    /// `config check` (which needs no ingest token set, and says when one is not).
    @Test func everyServeProblemIsListedAtItsLineByServeAndConfigCheck() async throws {
        let config = try CLI.temp(
            "serve-many.yaml",
            """
            version: 1
            providers:
              openmeter: { kind: openmeter, api_key: ${OPENMETER_TOKEN} }
            routes:
              - { events: [api_request], to: openmeter }
            serve:
              tokens: [${INGEST_TOKEN}]
              max_backlog: 0
              compat:
                orb: { quantity_property: "" }
                chargebee: { event_nam: metric }
                lagoo: {}
            """)
        let expected = [
            ":8: serve.max_backlog", ":10: serve.compat.orb.quantity_property", ":11: serve.compat.chargebee.event_nam",
            ":12: serve.compat.lagoo",
        ]
        let spool = FileManager.default.temporaryDirectory.appending(
            path: "ub-serve-many-\(UUID().uuidString.prefix(8)).spool"
        ).path
        let serve = try await CLI.run(
            ["serve", "-c", config, "--spool", spool, "--port", "0"],
            env: CLI.env.merging(["INGEST_TOKEN": LiveServe.token]) { $1 })
        let check = try await CLI.run(["config", "check", config], env: CLI.env)
        for run in [serve, check] {
            #expect(run.status == 2, "\(run.output)")
            for line in expected { #expect(run.output.contains(line), "\(line) in \(run.output)") }
            #expect(run.output.contains("4 problem(s) in the serve section"), "\(run.output)")
        }
        #expect(!FileManager.default.fileExists(atPath: spool), "nothing created")

        let good = try CLI.temp(
            "serve-good.yaml",
            """
            version: 1
            providers:
              openmeter: { kind: openmeter, api_key: ${OPENMETER_TOKEN} }
            routes:
              - { events: [api_request], to: openmeter }
            serve:
              tokens: [${INGEST_TOKEN}]
              compat: { stripe: {}, segment: { quantity_property: calls } }
            """)
        let ok = try await CLI.run(["config", "check", good], env: CLI.env.filter { $0.key != "INGEST_TOKEN" })
        #expect(
            ok.status == 0 && ok.output.contains("provider APIs /segment, /stripe")
                && ok.output.contains("INGEST_TOKEN, which is not set"), "\(ok.output)")
    }
}

extension ServeCLITests {
    /// docs/ingest.openapi.json describes the live server: the request media types are the ones
    /// it takes, each one's example is answered 202 in the documented shape, and the README's
    /// Python snippet, run as it is, records its event.
    @Test func theOpenAPIDocumentAndThePythonSnippetWorkAgainstALiveServer() async throws {
        let spec = try #require(
            JSONValue.parse(try Data(contentsOf: CLI.root.appending(path: "docs/ingest.openapi.json"))))
        let post = try #require(spec["paths"]?["/v1/events"]?["post"])
        guard case .object(let content)? = post["requestBody"]?["content"] else {
            Issue.record("no request media types"); return
        }
        #expect(Set(content.keys) == Set(IngestFormat.allCases.map(\.mediaType)))
        guard case .object(let responses)? = post["responses"] else { Issue.record("no responses"); return }
        #expect(Set(["202", "400", "401", "413", "415", "503"]).isSubset(of: Set(responses.keys)))
        for path in ["/healthz", "/readyz", "/metrics"] {
            #expect(spec["paths"]?[path]?["get"] != nil, "\(path) is documented")
        }

        let live = try await Self.startOnEmulator()
        let (emulator, serve, client) = (live.emulator, live.serve, live.client)
        defer { client.shutdown() }
        for (type, media) in content.sorted(by: { $0.key < $1.key }) {
            let example = try #require(media["example"])
            let body = example.stringValue ?? String(decoding: example.encoded(), as: UTF8.self)
            let reply = try await serve.post(client, body, type: type)
            #expect(
                reply.status == 202 && reply.json?["accepted"]?.numberValue == 1
                    && reply.json?["refused"]?.arrayValue?.isEmpty == true,
                "\(type): \(reply.status) \(String(describing: reply.json))")
        }

        let readme = try String(contentsOf: CLI.root.appending(path: "README.md"), encoding: .utf8)
        let start = try #require(readme.range(of: "<!-- python-ingest-snippet -->\n```python\n"))
        let end = try #require(readme.range(of: "```\n<!-- end-python-ingest-snippet -->"))
        let snippet = String(readme[start.upperBound..<end.lowerBound])
        let (status, output) = try await ChildProcess.run(
            "/usr/bin/env", ["python3", "-c", snippet],
            environment: ProcessInfo.processInfo.environment.merging([
                "USAGE_BILLING_URL": serve.base, "INGEST_TOKEN": LiveServe.token,
            ]) { $1 })
        #expect(status == 0 && output.contains("'accepted': 1"), "\(output)")
        #expect(
            try await eventually { await emulator.accepted("openmeter").count == content.count + 1 },
            "the examples and the snippet's event were delivered")
        serve.process.kill(SIGTERM)
        #expect(await serve.process.exitStatus() == 0)
        await emulator.shutdown()
    }
}

extension ServeCLITests {
    /// `worker --metrics-port` serves the worker's metrics; a scrape shows the deliveries move.
    @Test func theWorkersMetricsPortShowsDeliveries() async throws {
        let emulator = try await UsageEmulator.start()
        let config = try Self.config(endpoint: emulator.endpoints["openmeter"]?["endpoint"] ?? "")
        let spool = FileManager.default.temporaryDirectory.appending(
            path: "ub-metrics-\(UUID().uuidString.prefix(8)).spool"
        ).path
        let file = try CLI.temp("metrics.ndjson", (0..<25).map { Self.event("m-\($0)") }.joined(separator: "\n"))
        #expect(try await CLI.run(["import", file, "-c", config, "--spool", spool]).status == 0)
        let log = FileManager.default.temporaryDirectory.appending(
            path: "ub-metrics-\(UUID().uuidString.prefix(8)).log"
        ).path
        let worker = try ChildProcess.spawn(
            CLI.binary.path, ["worker", "-c", config, "--spool", spool, "--metrics-port", "0"],
            environment: ProcessInfo.processInfo.environment.merging(CLI.env) { $1 }, directory: CLI.root.path,
            outputFile: log)
        let url = try await LiveServe.baseURL(printedIn: log, by: worker)
        let client = try CurlHTTPClient()
        defer { client.shutdown() }
        let line = #"usage_billing_deliveries_total{lane="openmeter/api_request+tokens",outcome="accepted"}"#
        var delivered: Double?
        _ = try await eventually {
            let text = String(
                decoding: try await client.send(HTTPRequest(method: .get, url: url + "/metrics")).body, as: UTF8.self)
            delivered = text.split(separator: "\n").first { $0.hasPrefix(line) }.flatMap {
                Double($0.split(separator: " ").last ?? "")
            }
            return delivered == 25
        }
        #expect(delivered == 25, "the scrape counts the 25 deliveries")
        worker.kill(SIGTERM)
        #expect(await worker.exitStatus() == 0)
        await emulator.shutdown()
    }
}

extension ServeCLITests {
    /// /readyz's checks, on a spool: a lane whose oldest undelivered event is older than
    /// `max_lag` makes it not ready, naming the lane; a lane that caught up does not; a refused
    /// write does until the next write succeeds.
    @Test func aLaneBehindItsBoundIsNamedByReadiness() async throws {
        let spool = try Spool(
            path: FileManager.default.temporaryDirectory.appending(path: "ub-lag-\(UUID().uuidString.prefix(8)).spool")
                .path)
        let event = UsageEvent(id: "lag-1", name: "api_request", customer: "acme", quantity: 1)
        try await spool.record(
            [RecordEntry(event: event, lanes: ["openmeter/api_request"])], now: Date().addingTimeInterval(-7200))
        let monitor = BacklogMonitor(
            spool: spool, lanes: ["openmeter/api_request", "stripe/api_request"], maxLag: .seconds(3600))
        await monitor.refresh()
        #expect(monitor.queued == 1)
        #expect(
            monitor.problem?.contains("openmeter/api_request") == true && monitor.problem?.contains("stripe") == false,
            "\(monitor.problem ?? "ready")")
        let rows = try await spool.due(lane: "openmeter/api_request", limit: 10, now: Date())
        try await spool.mark(rows.map { ($0.seq, .delivered) })
        await monitor.refresh()
        #expect(monitor.problem == nil, "\(monitor.problem ?? "")")
        // A refused write makes it not ready until a later write succeeds.
        monitor.wrote(UsageBillingError(.unexpectedResponse, "disk full"))
        #expect(monitor.problem?.contains("refused the last write") == true)
        monitor.wrote(nil)
        #expect(monitor.problem == nil)
    }
}

/// Ids collected from many tasks.
final class LockedIDs: @unchecked Sendable {
    private let lock = NSLock()
    private var ids: Set<String> = []
    func add(_ more: [String]) { lock.withLock { ids.formUnion(more) } }
    var count: Int { lock.withLock { ids.count } }
    var all: Set<String> { lock.withLock { ids } }
}
