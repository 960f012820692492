import Foundation
import Testing
import UsageBilling
import UsageBillingCurl
import UsageBillingTesting
import UsageEmulator
import UsageSpool
import UsageTestSupport

/// `serve`'s doors as clients meet them: start-up failures, auth schemes, CloudEvents binary
/// mode from the `cloudevents` Python SDK, quantities, refusals, `/metrics` and stray requests.
@Suite("serve doors (live process)", .timeLimit(.minutes(3)))
struct ServeDoorsTests {
    static func config(endpoint: String) throws -> String {
        try CLI.temp(
            "doors-serve.yaml",
            """
            version: 1
            providers:
              openmeter: { kind: openmeter, api_key: ${OPENMETER_TOKEN}, endpoint: "\(endpoint)" }
              logins: { kind: openmeter, api_key: ${OPENMETER_TOKEN}, endpoint: "\(endpoint)", aggregate: { window: 1h, formula: count } }
            routes:
              - { events: [api_request], to: openmeter }
              - { events: [login], to: logins }
            unrouted: dead-letter
            serve:
              tokens: [${INGEST_TOKEN}]
            """)
    }

    static func spool() -> String {
        FileManager.default.temporaryDirectory.appending(path: "ub-sdoors-\(UUID().uuidString.prefix(8)).spool").path
    }

    static func python(_ script: String, base: String) async throws -> (status: Int32, output: String) {
        try await ChildProcess.run(
            "/usr/bin/env", ["python3", "-c", script],
            environment: ProcessInfo.processInfo.environment.merging(["BASE": base, "TOKEN": LiveServe.token]) { $1 })
    }

    /// A port in use and a spool another worker delivers from stop the start with one line
    /// each and exit 2, before anything is announced or created.
    @Test func startUpFailuresAreCheckedBeforeAnythingIsCreated() async throws {
        let emulator = try await UsageEmulator.start()
        let config = try Self.config(endpoint: emulator.endpoints["openmeter"]?["endpoint"] ?? "")
        let first = try await LiveServe.start(config: config, spool: Self.spool())
        let port = try #require(first.base.split(separator: ":").last.map(String.init))

        let spool = Self.spool()
        let taken = try await CLI.run(
            ["serve", "-c", config, "--spool", spool, "--port", port],
            env: CLI.env.merging(["INGEST_TOKEN": LiveServe.token]) { $1 })
        #expect(taken.status == 2, "\(taken.output)")
        #expect(
            taken.output.contains("port \(port) on 127.0.0.1 is already in use") && !taken.output.contains("listening"),
            "\(taken.output)")
        #expect(
            !FileManager.default.fileExists(atPath: spool)
                && !FileManager.default.fileExists(atPath: spool + ".worker-lock"), "nothing created")

        let held = Self.spool()
        let log = FileManager.default.temporaryDirectory.appending(
            path: "ub-sdoors-worker-\(UUID().uuidString.prefix(8)).log"
        ).path
        let worker = try ChildProcess.spawn(
            CLI.binary.path, ["worker", "-c", config, "--spool", held],
            environment: ProcessInfo.processInfo.environment.merging(CLI.env) { $1 }, directory: CLI.root.path,
            outputFile: log)
        #expect(try await eventually { Spool.workerHolder(path: held) != nil }, "the worker holds the spool")
        let refused: CLI.Result? = try await CLI.run(
            ["serve", "-c", config, "--spool", held, "--port", "0"],
            env: CLI.env.merging(["INGEST_TOKEN": LiveServe.token]) { $1 })
        #expect(refused?.status == 2)
        #expect(
            refused?.output.contains("another worker, in pid \(worker.pid)") == true
                && refused?.output.contains("listening") == false, "\(refused?.output ?? "")")
        worker.kill(SIGTERM)
        _ = await worker.exitStatus()
        first.process.kill(SIGTERM)
        _ = await first.process.exitStatus()
        await emulator.shutdown()
    }

    /// Lowercase `bearer`; a binary-mode CloudEvent from the SDK; a CloudEvent without a
    /// quantity (refused, unless its route counts events); a batch sent as one event; a body
    /// with nothing taken (400); stray paths and methods; HEAD; `/metrics` with HELP and zero
    /// counters. Then every accepted event is at the emulator once.
    @Test func clientsMeetTheirOwnFormatsAndHonestAnswers() async throws {
        let emulator = try await UsageEmulator.start()
        let config = try Self.config(endpoint: emulator.endpoints["openmeter"]?["endpoint"] ?? "")
        let serve = try await LiveServe.start(config: config, spool: Self.spool())
        let client = try CurlHTTPClient()
        defer { client.shutdown() }

        // Before any event: the counters that can stay at zero exist, and every metric has HELP.
        let metrics = String(decoding: try await serve.get(client, "/metrics").body, as: UTF8.self)
        #expect(metrics.contains(#"usage_billing_ingest_events_total{result="refused"} 0"#), "\(metrics.prefix(3000))")
        #expect(
            metrics.contains(#"usage_billing_dead_letters_total{lane="unrouted",reason="unrouted"} 0"#)
                || metrics.contains(#"usage_billing_dead_letters_total{reason="unrouted",lane="unrouted"} 0"#))
        let types = metrics.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }
        #expect(!types.isEmpty)
        for type in types {
            let name = type.split(separator: " ")[2]
            #expect(metrics.contains("# HELP \(name) "), "\(name) has no HELP")
        }

        let yesterday = RFC3339.format(Date().addingTimeInterval(-3_600))
        let script = """
            import json, os, requests
            try:
                from cloudevents.http import CloudEvent, to_binary
            except ImportError:
                from cloudevents.v1.http import CloudEvent, to_binary
            base, token = os.environ["BASE"], os.environ["TOKEN"]
            auth = {"Authorization": "bearer " + token}
            out = {}
            event = CloudEvent({"type": "api_request", "source": "app", "subject": "acme", "id": "bin-1", "time": "\(yesterday)"}, {"value": 5, "region": "eu"})
            headers, body = to_binary(event)
            r = requests.post(base + "/v1/events", headers={**headers, **auth}, data=body)
            out["binary"] = {"status": r.status_code, "body": r.json()}
            nodata = CloudEvent({"type": "api_request", "source": "app", "subject": "acme", "id": "bin-2", "time": "\(yesterday)"}, {"region": "eu"})
            headers, body = to_binary(nodata)
            r = requests.post(base + "/v1/events", headers={**headers, **auth}, data=body)
            out["no_quantity"] = {"status": r.status_code, "body": r.json()}
            login = CloudEvent({"type": "login", "source": "app", "subject": "acme", "id": "bin-3", "time": "\(yesterday)"}, {"browser": "x"})
            headers, body = to_binary(login)
            r = requests.post(base + "/v1/events", headers={**headers, **auth}, data=body)
            out["counted"] = {"status": r.status_code, "body": r.json()}
            batch = [{"specversion": "1.0", "id": "b-9", "source": "app", "type": "api_request", "subject": "acme", "data": {"value": 1}}]
            r = requests.post(base + "/v1/events", headers={**auth, "Content-Type": "application/cloudevents+json"}, data=json.dumps(batch))
            out["batch_as_one"] = {"status": r.status_code, "body": r.json()}
            r = requests.post(base + "/v1/events", headers=auth, json={"id": "u-1", "name": "nobody_routes_this", "customer": "acme", "timestamp": "\(yesterday)"})
            out["dead_lettered"] = {"status": r.status_code, "body": r.json()}
            r = requests.post(base + "/v1/events", headers=auth, json=[{"id": "bad-1", "name": "api_request", "customer": "acme", "timestamp": "soon"}])
            out["all_refused"] = {"status": r.status_code, "body": r.json()}
            r = requests.get(base + "/v1/events", headers=auth)
            out["get_events"] = {"status": r.status_code, "allow": r.headers.get("Allow"), "body": r.json()}
            r = requests.get(base + "/nowhere")
            out["unknown"] = {"status": r.status_code, "body": r.json()}
            r = requests.head(base + "/healthz")
            out["head"] = {"status": r.status_code}
            r = requests.get(base + "/metrics")
            out["metrics"] = r.text
            print(json.dumps(out))
            """
        let (status, output) = try await Self.python(script, base: serve.base)
        #expect(status == 0, "\(output)")
        let json = try #require(JSONValue.parse(Data((output.split(separator: "\n").last ?? "").utf8)), "\(output)")

        #expect(
            json["binary"]?["status"]?.numberValue == 202 && json["binary"]?["body"]?["accepted"]?.numberValue == 1,
            "binary mode, lowercase bearer: \(output)")
        let noQuantity = json["no_quantity"]?["body"]?["refused"]?.arrayValue?.first
        #expect(
            json["no_quantity"]?["status"]?.numberValue == 400 && noQuantity?["field"]?.stringValue == "data.value",
            "\(output)")
        #expect(noQuantity?["fix"]?.stringValue?.contains("quantity_property") == true)
        #expect(
            json["counted"]?["status"]?.numberValue == 202 && json["counted"]?["body"]?["accepted"]?.numberValue == 1,
            "a counting route needs no quantity: \(output)")
        #expect(
            json["batch_as_one"]?["status"]?.numberValue == 400
                && json["batch_as_one"]?["body"]?["error"]?["fix"]?.stringValue?.contains(
                    "application/cloudevents-batch+json") == true,
            "\(output)")
        #expect(
            json["dead_lettered"]?["status"]?.numberValue == 202,
            "kept as a dead letter under unrouted: dead-letter: \(output)")
        #expect(
            json["all_refused"]?["status"]?.numberValue == 400
                && json["all_refused"]?["body"]?["refused"]?.arrayValue?.first?["field"]?.stringValue == "timestamp",
            "\(output)")
        #expect(
            json["get_events"]?["status"]?.numberValue == 405 && json["get_events"]?["allow"]?.stringValue == "POST",
            "\(output)")
        #expect(
            json["unknown"]?["status"]?.numberValue == 404
                && json["unknown"]?["body"]?["error"]?["code"]?.stringValue == "not_found", "\(output)")
        #expect(json["head"]?["status"]?.numberValue == 200)
        let after = json["metrics"]?.stringValue ?? ""
        #expect(after.contains(#"usage_billing_ingest_duration_seconds_bucket"#), "durations are _seconds histograms")
        #expect(
            after.contains(#"usage_billing_dead_letters_total{lane="unrouted",reason="unrouted"} 1"#)
                || after.contains(#"usage_billing_dead_letters_total{reason="unrouted",lane="unrouted"} 1"#),
            "an unrouted event kept at ingest is counted: \(after.prefix(4000))")

        #expect(
            try await eventually {
                Set(await emulator.accepted("openmeter").compactMap(\.key)).isSuperset(of: ["bin-1"])
            })
        let billed = await emulator.accepted("openmeter").filter { $0.key == "bin-1" }
        #expect(billed.count == 1 && billed.first?.quantity == 5)
        serve.process.kill(SIGTERM)
        #expect(await serve.process.exitStatus() == 0)
        await emulator.shutdown()
    }
}
