import Foundation
import Testing
import UsageBilling
import UsageBillingCurl
import UsageBillingProviders
import UsageBillingTesting
import UsageEmulator
import UsageRouting
import UsageTestSupport

/// `serve` speaking the providers' own ingest APIs, driven by their official Python SDKs with
/// only the base URL and the key changed: a Stripe-shaped event dual-written to Stripe and
/// Metronome by the config, Orb's and Metronome's own calls, and each refusal raised as the
/// SDK's own exception with our message.
@Suite("serve's provider APIs, driven by the official SDKs", .timeLimit(.minutes(3)))
struct ProviderDoorsTests {
    static func config(_ emulator: UsageEmulator) throws -> String {
        func endpoint(_ kind: String) -> String { emulator.endpoints[kind]?["endpoint"] ?? "" }
        return try CLI.temp(
            "doors-sdk.yaml",
            """
            version: 1
            providers:
              stripe: { kind: stripe, secret_key: ${STRIPE_SECRET_KEY}, endpoint: "\(endpoint("stripe"))" }
              metronome: { kind: metronome, api_key: ${METRONOME_BEARER_TOKEN}, endpoint: "\(endpoint("metronome"))" }
              orb: { kind: orb, api_key: ${ORB_API_KEY}, endpoint: "\(endpoint("orb"))" }
            routes:
              - { events: [api_requests], to: stripe, shadow: metronome }
              - { events: [tokens], to: orb }
            serve:
              tokens: [${INGEST_TOKEN}]
              compat: { stripe: {}, metronome: {}, orb: { quantity_property: count } }
            """)
    }

    @Test func everyDoorIsRegisteredOnceWithItsOwnPrefix() {
        let prefixes = IngestDoors.standard.map(\.prefix)
        #expect(Set(prefixes).count == prefixes.count && !prefixes.isEmpty)
        // A door is a provider's (its prefix is the kind) or a tool's, in its own `Doors/` folder.
        let tools = (try? FileManager.default.contentsOfDirectory(atPath: CLI.root.appending(path: "Doors").path)) ?? []
        for door in IngestDoors.standard {
            #expect(
                ProviderRegistry.standard.kind(door.prefix) != nil || tools.contains { $0.lowercased() == door.prefix },
                "\(door.prefix) names a provider kind of the registry or a folder under Doors/")
        }
        #expect(
            tools.count == IngestDoors.standard.filter { ProviderRegistry.standard.kind($0.prefix) == nil }.count,
            "every Doors/ folder is registered")
    }

    @Test func theSDKsWriteThroughServeAndRefusalsRaiseTheirOwnExceptions() async throws {
        let emulator = try await UsageEmulator.start()
        let spool = FileManager.default.temporaryDirectory.appending(
            path: "ub-doors-sdk-\(UUID().uuidString.prefix(8)).spool"
        ).path
        let serve = try await LiveServe.start(config: try Self.config(emulator), spool: spool)
        let recent = Int(Date().timeIntervalSince1970) - 120
        let script = """
            import datetime, json, os, stripe, orb, metronome
            base, token = os.environ["BASE"], os.environ["TOKEN"]
            out = {}
            when = datetime.datetime.fromtimestamp(\(recent), datetime.timezone.utc).isoformat()
            client = stripe.StripeClient(token, base_addresses={"api": base + "/stripe", "meter_events": base + "/stripe"})
            e = client.v1.billing.meter_events.create({"event_name": "api_requests", "identifier": "st-1", "timestamp": \(recent),
                                                       "payload": {"stripe_customer_id": "cus_A", "value": "5"}})
            out["v1"] = [e.object, e.identifier]
            again = client.v1.billing.meter_events.create({"event_name": "api_requests", "identifier": "st-1", "timestamp": \(recent),
                                                           "payload": {"stripe_customer_id": "cus_A", "value": "5"}})
            out["v1_again"] = again.identifier
            e = client.v2.billing.meter_events.create({"event_name": "api_requests", "identifier": "st-2", "timestamp": when,
                                                       "payload": {"stripe_customer_id": "cus_A", "value": "7"}})
            out["v2"] = [e.object, e.identifier]
            session = client.v2.billing.meter_event_session.create()
            streamer = stripe.StripeClient(session.authentication_token, base_addresses={"meter_events": base + "/stripe"})
            streamer.v2.billing.meter_event_stream.create({"events": [
                {"event_name": "api_requests", "identifier": "st-3", "timestamp": when, "payload": {"stripe_customer_id": "cus_B", "value": "2"}},
                {"event_name": "api_requests", "identifier": "st-4", "timestamp": when, "payload": {"stripe_customer_id": "cus_B", "value": "3"}}]})
            out["stream"] = "ok"
            try:
                client.v1.billing.meter_events.create({"event_name": "api_requests", "identifier": "st-5", "payload": {"value": "1"}})
            except stripe.InvalidRequestError as ex:
                out["missing_customer"] = [type(ex).__name__, ex.param, ex.user_message]
            try:
                client.v1.billing.meter_events.create({"event_name": "unknown_meter", "identifier": "st-6", "payload": {"stripe_customer_id": "cus_A", "value": "1"}})
            except stripe.InvalidRequestError as ex:
                out["unrouted"] = [type(ex).__name__, ex.user_message]
            try:
                stripe.StripeClient("sk_live_not_the_ingest_token", base_addresses={"api": base + "/stripe"}).v1.billing.meter_events.create(
                    {"event_name": "api_requests", "payload": {"stripe_customer_id": "cus_A", "value": "1"}})
            except stripe.AuthenticationError as ex:
                out["auth"] = type(ex).__name__
            try:
                client.v1.customers.list()
            except stripe.InvalidRequestError as ex:
                out["other_api"] = [ex.http_status, ex.user_message]
            try:
                client.v1.billing.meter_event_adjustments.create({"event_name": "api_requests", "type": "cancel", "cancel": {"identifier": "st-1"}})
            except stripe.InvalidRequestError as ex:
                out["adjustment"] = ex.user_message

            o = orb.Orb(api_key=token, base_url=base + "/orb/v1")
            r = o.events.ingest(events=[
                {"event_name": "tokens", "external_customer_id": "cus_A", "idempotency_key": "orb-1", "timestamp": when, "properties": {"count": 40, "model": "m1"}},
                {"event_name": "tokens", "external_customer_id": "cus_A", "idempotency_key": "orb-2", "timestamp": when, "properties": {"model": "m1"}}])
            out["orb_failed"] = [[f.idempotency_key, f.validation_errors] for f in r.validation_failed]
            try:
                orb.Orb(api_key="not_the_ingest_token_0", base_url=base + "/orb/v1", max_retries=0).events.ingest(events=[])
            except orb.AuthenticationError as ex:
                out["orb_auth"] = type(ex).__name__

            m = metronome.Metronome(bearer_token=token, base_url=base + "/metronome")
            m.v1.usage.ingest(usage=[{"transaction_id": "met-1", "customer_id": "cus_A", "event_type": "api_requests", "timestamp": when, "properties": {"value": 11}}])
            out["metronome"] = "ok"
            try:
                m.v1.usage.ingest(usage=[{"transaction_id": "met-2", "customer_id": "cus_A", "event_type": "api_requests", "timestamp": "yesterday"}])
            except metronome.BadRequestError as ex:
                out["metronome_bad"] = [type(ex).__name__, str(ex)]
            print(json.dumps(out))
            """
        let (status, output) = try await ChildProcess.run(
            "/usr/bin/env", ["python3", "-c", script],
            environment: ProcessInfo.processInfo.environment.merging(["BASE": serve.base, "TOKEN": LiveServe.token]) {
                $1
            })
        #expect(status == 0, "\(output)")
        let out = try #require(JSONValue.parse(Data((output.split(separator: "\n").last ?? "").utf8)), "\(output)")
        #expect(out["v1"]?.arrayValue?.compactMap(\.stringValue) == ["billing.meter_event", "st-1"], "\(output)")
        #expect(out["v1_again"]?.stringValue == "st-1", "a resent identifier is answered as success")
        #expect(out["v2"]?.arrayValue?.compactMap(\.stringValue) == ["v2.billing.meter_event", "st-2"])
        #expect(out["stream"]?.stringValue == "ok")
        let missing = out["missing_customer"]?.arrayValue?.compactMap(\.stringValue) ?? []
        #expect(
            missing.first == "InvalidRequestError" && missing.dropFirst().first == "payload[stripe_customer_id]",
            "\(output)")
        #expect(out["unrouted"]?.arrayValue?.last?.stringValue?.contains("unknown_meter") == true, "\(output)")
        #expect(out["auth"]?.stringValue == "AuthenticationError")
        #expect(
            out["other_api"]?.arrayValue?.first?.numberValue == 404
                && out["other_api"]?.arrayValue?.last?.stringValue?.contains("StripeClient(INGEST_TOKEN") == true,
            "\(output)")
        #expect(out["adjustment"]?.stringValue?.contains("does not cancel meter events yet") == true, "\(output)")
        let orbFailed = out["orb_failed"]?.arrayValue ?? []
        #expect(orbFailed.count == 1 && orbFailed.first?.arrayValue?.first?.stringValue == "orb-2", "\(output)")
        #expect(
            orbFailed.first?.arrayValue?.last?.arrayValue?.first?.stringValue?.contains("properties.count") == true,
            "\(output)")
        #expect(
            out["orb_auth"]?.stringValue == "OrbAuthenticationError"
                || out["orb_auth"]?.stringValue == "AuthenticationError", "\(output)")
        #expect(out["metronome"]?.stringValue == "ok")
        #expect(out["metronome_bad"]?.arrayValue?.last?.stringValue?.contains("timestamp") == true, "\(output)")

        // Delivered by serve's worker: each at every provider its route names, once, whichever
        // SDK sent it (Metronome's own call takes the api_requests route to Stripe too).
        let stripeIDs: Set<String> = ["st-1", "st-2", "st-3", "st-4", "met-1"]
        let arrived = try await eventually {
            let stripe = Set(await emulator.accepted("stripe").compactMap(\.key))
            let metronome = Set(await emulator.accepted("metronome").compactMap(\.key))
            let orb = Set(await emulator.accepted("orb").compactMap(\.key))
            return stripe == stripeIDs && metronome == stripeIDs && orb == ["orb-1"]
        }
        #expect(arrived, "the Stripe-shaped events at Stripe and Metronome, Metronome's own, Orb's")
        for kind in ["stripe", "metronome", "orb"] {
            let keys = await emulator.accepted(kind).compactMap(\.key)
            #expect(Set(keys).count == keys.count, "\(kind): each id once")
        }
        #expect(await emulator.accepted("stripe").reduce(Decimal(0)) { $0 + $1.quantity } == 28)
        #expect(await emulator.accepted("orb").first?.quantity == 40)
        serve.process.kill(SIGTERM)
        #expect(await serve.process.exitStatus() == 0)
        await emulator.shutdown()
    }

    /// OpenMeter's, Lago's and Segment's SDKs (and Chargebee's calls, whose SDK cannot be pointed at
    /// a path) through serve, each with only its base URL and key changed, to Stripe and Metronome;
    /// the Konnect v3 path; refusals as each SDK's own error.
    @Test func openMeterChargebeeLagoAndSegmentWriteThroughServe() async throws {
        let emulator = try await UsageEmulator.start()
        let spool = FileManager.default.temporaryDirectory.appending(
            path: "ub-doors-tools-\(UUID().uuidString.prefix(8)).spool"
        ).path
        func endpoint(_ kind: String) -> String { emulator.endpoints[kind]?["endpoint"] ?? "" }
        let config = try CLI.temp(
            "doors-tools.yaml",
            """
            version: 1
            providers:
              stripe: { kind: stripe, secret_key: ${STRIPE_SECRET_KEY}, endpoint: "\(endpoint("stripe"))" }
              metronome: { kind: metronome, api_key: ${METRONOME_BEARER_TOKEN}, endpoint: "\(endpoint("metronome"))" }
            routes:
              - { events: [api_requests], to: stripe, shadow: metronome }
            serve:
              tokens: [${INGEST_TOKEN}]
              compat: { openmeter: {}, chargebee: { event_name: api_requests }, lago: {}, segment: { quantity_property: calls } }
            """)
        let serve = try await LiveServe.start(config: config, spool: spool)
        let recent = Int(Date().timeIntervalSince1970) - 120
        let script = """
            import datetime, json, os, requests
            base, token = os.environ["BASE"], os.environ["TOKEN"]
            when = datetime.datetime.fromtimestamp(\(recent), datetime.timezone.utc)
            out = {}
            from openmeter import Client as OpenMeter
            from openmeter.models import Event
            from corehttp.exceptions import HttpResponseError, ClientAuthenticationError
            om = OpenMeter(endpoint=base + "/openmeter", token=token)
            om.events.ingest_event(Event(id="om-1", source="app", type="api_requests", subject="cus_A", specversion="1.0", time=when, data={"value": 2}))
            om.events.ingest_events([Event(id="om-2", source="app", type="api_requests", subject="cus_B", specversion="1.0", time=when, data={"value": 3})])
            try:
                om.events.ingest_event(Event(id="om-3", source="app", type="api_requests", specversion="1.0", time=when, data={"value": 1}))
            except HttpResponseError as ex:
                out["om_bad"] = [ex.status_code, str(ex)]
            try:
                OpenMeter(endpoint=base + "/openmeter", token="om_not_the_ingest_token").events.ingest_event(
                    Event(id="om-4", source="app", type="api_requests", subject="cus_A", specversion="1.0", data={"value": 1}))
            except ClientAuthenticationError as ex:
                out["om_auth"] = type(ex).__name__
            r = requests.post(base + "/openmeter/v3/openmeter/events", headers={"Authorization": "Bearer " + token, "Content-Type": "application/cloudevents+json; charset=utf-8"},
                              data=json.dumps({"specversion": "1.0", "id": "kong-1", "source": "app", "type": "api_requests", "subject": "cus_A", "time": when.isoformat(), "data": {"value": 5}}))
            out["v3"] = r.status_code

            auth = (token, "")
            r = requests.post(base + "/chargebee/api/v2/usage_events", auth=auth, headers={"Content-Type": "application/json;charset=UTF-8"},
                              data=json.dumps({"deduplication_id": "cb-1", "subscription_id": "cus_A", "usage_timestamp": \(recent) * 1000, "properties": {"quantity": 7}}))
            out["cb_single"] = [r.status_code, r.json()["usage_event"]["deduplication_id"]]
            r = requests.post(base + "/chargebee/api/v2/batch/usage_events", auth=auth, json={"events": [
                {"deduplication_id": "cb-2", "subscription_id": "cus_B", "usage_timestamp": \(recent) * 1000, "properties": {"quantity": 1}},
                {"deduplication_id": "cb-3", "usage_timestamp": \(recent) * 1000, "properties": {"quantity": 1}}]})
            out["cb_batch"] = [r.status_code, [e["deduplication_id"] for e in r.json()["failed_events"]], r.json()["failed_events"][0]["error_message"]]
            r = requests.post(base + "/chargebee/api/v2/usage_events", auth=("cb_not_the_ingest_token", ""), json={})
            out["cb_auth"] = [r.status_code, r.json()["api_error_code"]]

            from lago_python_client.client import Client as Lago
            from lago_python_client.models import Event as LagoEvent, BatchEvent
            from lago_python_client.exceptions import LagoApiError
            lago = Lago(api_key=token, api_url=base + "/lago/")
            created = lago.events.create(LagoEvent(transaction_id="lago-1", external_subscription_id="cus_A", code="api_requests", timestamp=\(recent), properties={"value": 4}))
            out["lago"] = created.transaction_id
            lago.events.batch_create(BatchEvent(events=[LagoEvent(transaction_id="lago-2", external_subscription_id="cus_B", code="api_requests", timestamp=str(\(recent)), properties={"value": "6"})]))
            try:
                lago.events.create(LagoEvent(transaction_id="lago-3", external_subscription_id="", code="api_requests", timestamp=\(recent), properties={"value": 1}))
            except LagoApiError as ex:
                out["lago_bad"] = [ex.status_code, json.dumps(ex.response)]

            from segment.analytics import Client as Segment
            from segment.analytics.request import APIError
            errors = []
            segment = Segment(write_key=token, host=base + "/segment", on_error=lambda e, batch: errors.append(str(e)))
            segment.identify(user_id="cus_A", traits={"plan": "pro"})
            segment.track(user_id="cus_A", event="api_requests", properties={"calls": 8, "route": "/v1/x"}, message_id="seg-1", timestamp=when)
            segment.track(user_id="cus_B", event="api_requests", properties={"calls": 9}, message_id="seg-2", timestamp=when)
            segment.flush()
            out["segment_errors"] = errors
            try:
                Segment(write_key=token, host=base + "/segment", sync_mode=True).track(anonymous_id="anon-1", event="api_requests", properties={"calls": 1}, message_id="seg-3")
            except APIError as ex:
                out["segment_bad"] = [ex.status, ex.code, ex.message]
            print(json.dumps(out))
            """
        let (status, output) = try await ChildProcess.run(
            "/usr/bin/env", ["python3", "-c", script],
            environment: ProcessInfo.processInfo.environment.merging(["BASE": serve.base, "TOKEN": LiveServe.token]) {
                $1
            })
        #expect(status == 0, "\(output)")
        let out = try #require(JSONValue.parse(Data((output.split(separator: "\n").last ?? "").utf8)), "\(output)")
        #expect(
            out["om_bad"]?.arrayValue?.first?.numberValue == 400
                && out["om_bad"]?.arrayValue?.last?.stringValue?.contains("subject") == true, "\(output)")
        #expect(out["om_auth"]?.stringValue == "ClientAuthenticationError", "\(output)")
        #expect(out["v3"]?.numberValue == 202, "\(output)")
        #expect(
            out["cb_single"]?.arrayValue?.first?.numberValue == 200
                && out["cb_single"]?.arrayValue?.last?.stringValue == "cb-1", "\(output)")
        #expect(out["cb_batch"]?.arrayValue?[1].arrayValue?.compactMap(\.stringValue) == ["cb-3"], "\(output)")
        #expect(out["cb_batch"]?.arrayValue?.last?.stringValue?.contains("subscription_id") == true, "\(output)")
        #expect(
            out["cb_auth"]?.arrayValue?.first?.numberValue == 401
                && out["cb_auth"]?.arrayValue?.last?.stringValue == "api_authentication_failed", "\(output)")
        #expect(out["lago"]?.stringValue == "lago-1", "\(output)")
        #expect(
            out["lago_bad"]?.arrayValue?.first?.numberValue == 422
                && out["lago_bad"]?.arrayValue?.last?.stringValue?.contains("external_subscription_id") == true,
            "\(output)")
        #expect(out["segment_errors"]?.arrayValue?.isEmpty == true, "\(output)")
        let segmentBad = out["segment_bad"]?.arrayValue ?? []
        #expect(
            segmentBad.first?.numberValue == 400 && segmentBad.last?.stringValue?.contains("userId") == true,
            "\(output)")

        let expected: Set<String> = ["om-1", "om-2", "kong-1", "cb-1", "cb-2", "lago-1", "lago-2", "seg-1", "seg-2"]
        let arrived = try await eventually {
            let stripe = Set(await emulator.accepted("stripe").compactMap(\.key))
            let metronome = Set(await emulator.accepted("metronome").compactMap(\.key))
            return stripe == expected && metronome == expected
        }
        let atStripe = await emulator.accepted("stripe").compactMap(\.key).sorted()
        #expect(arrived, "every SDK's events at Stripe and Metronome: \(atStripe)")
        for kind in ["stripe", "metronome"] {
            let accepted = await emulator.accepted(kind)
            #expect(Set(accepted.compactMap(\.key)).count == accepted.count, "\(kind): each id once")
            let total: Decimal = accepted.reduce(0) { $0 + $1.quantity }
            #expect(total == 45, "\(kind): the quantities as sent (2+3+5+7+1+4+6+8+9)")
        }
        serve.process.kill(SIGTERM)
        #expect(await serve.process.exitStatus() == 0)
        await emulator.shutdown()
    }

    /// The answer is lost after serve recorded the events (a proxy drops the connection once per
    /// path): stripe-python and orb-billing retry on their own, serve answers the resend as
    /// success, and each event reaches the providers once.
    @Test func anSDKRetryAfterADroppedConnectionIsBilledOnce() async throws {
        let emulator = try await UsageEmulator.start()
        let spool = FileManager.default.temporaryDirectory.appending(
            path: "ub-doors-drop-\(UUID().uuidString.prefix(8)).spool"
        ).path
        let serve = try await LiveServe.start(config: try Self.config(emulator), spool: spool)
        let recent = Int(Date().timeIntervalSince1970) - 120
        let script = """
            import datetime, http.client, json, os, socket, threading, urllib.parse, stripe, orb
            target = urllib.parse.urlparse(os.environ["BASE"])
            dropped, sent = set(), []
            def serve_one(conn):
                with conn:
                    data = b""
                    while b"\\r\\n\\r\\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk: return
                        data += chunk
                    head, _, body = data.partition(b"\\r\\n\\r\\n")
                    lines = head.decode().split("\\r\\n")
                    method, path, _ = lines[0].split(" ", 2)
                    headers = dict(l.split(": ", 1) for l in lines[1:])
                    length = int(next((v for k, v in headers.items() if k.lower() == "content-length"), "0"))
                    while len(body) < length: body += conn.recv(65536)
                    upstream = http.client.HTTPConnection(target.hostname, target.port)
                    upstream.request(method, path, body=body, headers={k: v for k, v in headers.items() if k.lower() not in ("host", "connection")})
                    answer = upstream.getresponse(); payload = answer.read()
                    sent.append([path, answer.status])
                    if path not in dropped:
                        dropped.add(path)
                        return  # recorded by serve, answer lost
                    reply = f"HTTP/1.1 {answer.status} {answer.reason}\\r\\n" + "".join(f"{k}: {v}\\r\\n" for k, v in answer.getheaders() if k.lower() not in ("connection", "transfer-encoding", "content-length"))
                    conn.sendall(reply.encode() + f"Content-Length: {len(payload)}\\r\\nConnection: close\\r\\n\\r\\n".encode() + payload)
            listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen(16)
            def accept():
                while True:
                    conn, _ = listener.accept()
                    threading.Thread(target=serve_one, args=(conn,), daemon=True).start()
            threading.Thread(target=accept, daemon=True).start()
            proxy = f"http://127.0.0.1:{listener.getsockname()[1]}"
            token = os.environ["TOKEN"]
            client = stripe.StripeClient(token, base_addresses={"api": proxy + "/stripe"}, max_network_retries=2)
            e = client.v1.billing.meter_events.create({"event_name": "api_requests", "identifier": "drop-st-1", "timestamp": \(recent),
                                                       "payload": {"stripe_customer_id": "cus_A", "value": "4"}})
            when = datetime.datetime.fromtimestamp(\(recent), datetime.timezone.utc).isoformat()
            r = orb.Orb(api_key=token, base_url=proxy + "/orb/v1").events.ingest(events=[
                {"event_name": "tokens", "external_customer_id": "cus_A", "idempotency_key": "drop-orb-1", "timestamp": when, "properties": {"count": 9}}])
            print(json.dumps({"stripe": e.identifier, "orb_failed": len(r.validation_failed), "sent": sent}))
            """
        let (status, output) = try await ChildProcess.run(
            "/usr/bin/env", ["python3", "-c", script],
            environment: ProcessInfo.processInfo.environment.merging(["BASE": serve.base, "TOKEN": LiveServe.token]) {
                $1
            })
        #expect(status == 0, "\(output)")
        let out = try #require(JSONValue.parse(Data((output.split(separator: "\n").last ?? "").utf8)), "\(output)")
        #expect(out["stripe"]?.stringValue == "drop-st-1" && out["orb_failed"]?.numberValue == 0, "\(output)")
        let sent = out["sent"]?.arrayValue ?? []
        #expect(
            sent.count == 4 && sent.allSatisfy { $0.arrayValue?.last?.numberValue == 200 },
            "each SDK sent twice and serve took both: \(output)")
        let arrived = try await eventually {
            let stripe = await emulator.accepted("stripe").compactMap(\.key)
            let orb = await emulator.accepted("orb").compactMap(\.key)
            return stripe == ["drop-st-1"] && orb == ["drop-orb-1"]
        }
        #expect(arrived, "each event at its providers once")
        try await Task.sleep(for: .milliseconds(500))
        #expect(await emulator.accepted("metronome").compactMap(\.key) == ["drop-st-1"], "the shadow once too")
        let counts = (await emulator.accepted("stripe").count, await emulator.accepted("orb").count)
        #expect(counts == (1, 1))
        serve.process.kill(SIGTERM)
        #expect(await serve.process.exitStatus() == 0)
        await emulator.shutdown()
    }

    /// Every door's documented example (docs/ingest.openapi.json) against a live serve: taken and
    /// taken again as a duplicate, refused without the token, malformed, with an event no route
    /// takes, and over `serve.max_events_per_request`; only the examples' own events are recorded
    /// and delivered, each once.
    @Test func everyDoorsExampleIsTakenOnceAndItsBadVariantsAreRefused() async throws {
        let spec = try #require(
            JSONValue.parse(try Data(contentsOf: CLI.root.appending(path: "docs/ingest.openapi.json"))))
        guard case .object(let paths)? = spec["paths"] else { Issue.record("no paths"); return }
        var examples: [(path: String, media: String, body: String)] = []
        for door in IngestDoors.standard {
            let documented = paths.keys.filter { $0.hasPrefix("/\(door.prefix)/") }.sorted()
            #expect(!documented.isEmpty, "docs/ingest.openapi.json documents /\(door.prefix)/")
            for path in documented {
                guard case .object(let content)? = paths[path]?["post"]?["requestBody"]?["content"] else { continue }
                for (media, value) in content.sorted(by: { $0.key < $1.key }) {
                    guard let example = value["example"] else { continue }
                    examples.append(
                        (path, media, example.stringValue ?? String(decoding: example.encoded(), as: UTF8.self)))
                }
            }
            #expect(
                examples.contains { $0.path.hasPrefix("/\(door.prefix)/") }, "/\(door.prefix)/ has a documented example"
            )
        }
        let emulator = try await UsageEmulator.start()
        func config(_ serve: String) throws -> String {
            try CLI.temp(
                "doors-examples.yaml",
                """
                version: 1
                providers:
                  openmeter: { kind: openmeter, api_key: ${OPENMETER_TOKEN}, endpoint: "\(emulator.endpoints["openmeter"]?["endpoint"] ?? "")" }
                routes:
                  - { events: [api_request], to: openmeter }
                unrouted: reject
                serve:
                  tokens: [${INGEST_TOKEN}]
                  compat: { stripe: {}, orb: {}, metronome: {}, openmeter: {}, chargebee: { event_name_property: metric }, lago: {}, segment: {} }
                \(serve)
                """)
        }
        let client = try CurlHTTPClient()
        defer { client.shutdown() }
        func send(
            _ base: String, _ example: (path: String, media: String, body: String), body: String? = nil,
            token: String? = LiveServe.token
        ) async throws -> (status: Int, text: String) {
            var headers: HeaderFields = ["Content-Type": example.media]
            if let token { headers.add(name: "Authorization", value: "Bearer \(token)") }
            let response = try await client.send(
                HTTPRequest(
                    method: .post, url: base + example.path, headers: headers, body: Data((body ?? example.body).utf8)))
            return (response.status, String(decoding: response.body, as: UTF8.self))
        }
        func idCount(_ body: String) -> Int { body.components(separatedBy: "\"ex-").count - 1 }

        // Over the request limit: a batch example of 3 events against a limit of 2.
        let small = try await LiveServe.start(
            config: try config("  max_events_per_request: 2"),
            spool: FileManager.default.temporaryDirectory.appending(
                path: "ub-doors-ex-small-\(UUID().uuidString.prefix(8)).spool"
            ).path)
        for example in examples where idCount(example.body) > 2 {
            let reply = try await send(small.base, example)
            #expect(
                (400..<500).contains(reply.status) && reply.text.contains("2"),
                "\(example.path) over the limit: \(reply.status) \(reply.text)")
        }
        small.process.kill(SIGTERM)
        #expect(await small.process.exitStatus() == 0)

        let serve = try await LiveServe.start(
            config: try config(""),
            spool: FileManager.default.temporaryDirectory.appending(
                path: "ub-doors-ex-\(UUID().uuidString.prefix(8)).spool"
            ).path)
        var expected: Set<String> = []
        for example in examples {
            let unauthorised = try await send(serve.base, example, token: "not_an_ingest_token")
            #expect(
                unauthorised.status == 401 && JSONValue.parse(Data(unauthorised.text.utf8)) != nil,
                "\(example.path) without the token: \(unauthorised.status) \(unauthorised.text)")
            let malformed = try await send(serve.base, example, body: "{not json")
            #expect(
                (400..<500).contains(malformed.status) && JSONValue.parse(Data(malformed.text.utf8)) != nil,
                "\(example.path) malformed: \(malformed.status) \(malformed.text)")
            let unrouted = try await send(
                serve.base, example,
                body: example.body.replacingOccurrences(of: "ex-", with: "un-").replacingOccurrences(
                    of: "api_request", with: "unrouted_meter"))
            #expect(
                unrouted.text.contains("unrouted_meter"),
                "\(example.path) with an event no route takes names it: \(unrouted.status) \(unrouted.text)")
            let taken = try await send(serve.base, example)
            #expect((200..<300).contains(taken.status), "\(example.path): \(taken.status) \(taken.text)")
            let again = try await send(serve.base, example)
            #expect(
                again.status == taken.status,
                "\(example.path) resent: a duplicate is success: \(again.status) \(again.text)")
            for match in example.body.split(separator: "\"").filter({ $0.hasPrefix("ex-") && !$0.contains("identify") })
            { expected.insert(String(match)) }
            if example.media.hasPrefix("application/x-www-form") {
                for pair in example.body.split(separator: "&") where pair.hasPrefix("identifier=") {
                    expected.insert(String(pair.dropFirst("identifier=".count)))
                }
            }
        }
        #expect(
            expected.count > examples.count, "the examples carry \(expected.count) events in \(examples.count) requests"
        )
        let delivered = try await eventually { Set(await emulator.accepted("openmeter").compactMap(\.key)) == expected }
        let keys = await emulator.accepted("openmeter").compactMap(\.key)
        #expect(
            delivered && keys.count == expected.count,
            "only the examples' events, each once: \(keys.sorted()) vs \(expected.sorted())")
        serve.process.kill(SIGTERM)
        #expect(await serve.process.exitStatus() == 0)
        await emulator.shutdown()
    }

    /// `examples/stripe-to-metronome.yaml`, as the README runs it: the unchanged stripe-python
    /// code writes through serve, every event reaches Stripe and Metronome once, and
    /// `reconcile` shows both providers side by side with matching totals.
    @Test func theStripeToMetronomeExampleDualWritesAndReconciles() async throws {
        let example = CLI.root.appending(path: "examples/stripe-to-metronome.yaml").path
        let environment = CLI.env.merging(["INGEST_TOKEN": LiveServe.token]) { $1 }
        let parsed = try RoutingConfig.load(path: example, registry: .standard, environment: environment)
        let emulator = try await UsageEmulator.start(options: EmulatedMeters(config: parsed).options)
        var text = try String(contentsOfFile: example, encoding: .utf8)
        for kind in ["stripe", "metronome"] {
            text = text.replacingOccurrences(
                of: "    kind: \(kind)\n",
                with: "    kind: \(kind)\n    endpoint: \"\(emulator.endpoints[kind]?["endpoint"] ?? "")\"\n")
        }
        let config = try CLI.temp("stripe-to-metronome.yaml", text)
        let spool = FileManager.default.temporaryDirectory.appending(
            path: "ub-s2m-\(UUID().uuidString.prefix(8)).spool"
        ).path
        let serve = try await LiveServe.start(config: config, spool: spool)
        let recent = Int(Date().timeIntervalSince1970) - 300
        // The app's code as it is, with only the client's key and base addresses changed.
        let script = """
            import os, stripe
            client = stripe.StripeClient(os.environ["TOKEN"], base_addresses={"api": os.environ["BASE"] + "/stripe", "meter_events": os.environ["BASE"] + "/stripe"})
            for i, (customer, value) in enumerate([("cus_A", 5), ("cus_A", 7), ("cus_B", 3)]):
                client.v1.billing.meter_events.create({"event_name": "api_requests", "identifier": f"mig-{i}", "timestamp": \(recent),
                                                       "payload": {"stripe_customer_id": customer, "value": str(value)}})
            print("sent")
            """
        let (status, output) = try await ChildProcess.run(
            "/usr/bin/env", ["python3", "-c", script],
            environment: ProcessInfo.processInfo.environment.merging(["BASE": serve.base, "TOKEN": LiveServe.token]) {
                $1
            })
        #expect(status == 0 && output.contains("sent"), "\(output)")
        let delivered = try await eventually {
            let stripe = await emulator.accepted("stripe").compactMap(\.key)
            let metronome = await emulator.accepted("metronome").compactMap(\.key)
            return Set(stripe) == ["mig-0", "mig-1", "mig-2"] && Set(metronome) == ["mig-0", "mig-1", "mig-2"]
                && stripe.count == 3 && metronome.count == 3
        }
        #expect(delivered, "every event at Stripe and at Metronome, once")
        serve.process.kill(SIGTERM)
        #expect(await serve.process.exitStatus() == 0)
        let day = 86_400.0
        let reconcile = try await CLI.run(
            [
                "reconcile", "-c", config, "--spool", spool,
                "--from", RFC3339.format(Date(timeIntervalSince1970: (Double(recent) / day).rounded(.down) * day)),
                "--to", RFC3339.format(Date(timeIntervalSince1970: ((Double(recent) / day).rounded(.down) + 1) * day)),
            ],
            env: environment)
        #expect(reconcile.status == 0, "\(reconcile.output)")
        #expect(
            reconcile.output.contains("match   stripe") && reconcile.output.contains("match   metronome")
                && reconcile.output.contains("OK: 0 mismatch"), "\(reconcile.output)")
        await emulator.shutdown()
    }
}
