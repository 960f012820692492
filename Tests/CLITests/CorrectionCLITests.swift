import Foundation
import Testing
import UsageBilling
import UsageEmulator
import UsageEmulatorCore
import UsageTestSupport

@Suite("CLI void")
struct CorrectionCLITests {
    /// Three events recorded for a primary and a shadow, one voided before the worker runs: the
    /// providers never see it, the others arrive once. Voiding a delivered event says the
    /// correction is pending there, and the next worker applies it; voiding again changes
    /// nothing; an unknown id is refused naming it, and nothing is voided. An amend replaces an
    /// event's quantity at both providers.
    @Test func aVoidBeforeDeliveryIsNeverSentAndAfterItIsPending() async throws {
        let emulator = try await UsageEmulator.start()
        let config = try LaneEditCLITests.config(
            """
              openmeter: { kind: openmeter, api_key: om_REDACTED, endpoint: "{openmeter}" }
              orb: { kind: orb, api_key: orb_REDACTED, endpoint: "{orb}" }
            """, "  - { events: [api_request], to: openmeter, shadow: orb }", emulator, tag: "void")
        let spool = FileManager.default.temporaryDirectory.appending(path: "ub-cli-void-\(UUID().uuidString).spool")
            .path
        let now = Date()
        let lines = (0..<3).map { i in
            #"{"id":"void-\#(i)","name":"api_request","customer":"acme","timestamp":"\#(RFC3339.format(now.addingTimeInterval(-Double(i) - 60)))","quantity":\#(i + 1)}"#
        }
        let recorded = try await CLI.run([
            "import", try CLI.temp("void.ndjson", lines.joined(separator: "\n")), "-c", config, "--spool", spool,
        ])
        #expect(recorded.status == 0, "\(recorded.output)")

        let voided = try await CLI.run(["void", "void-1", "--reason", "duplicate from a retry loop", "--spool", spool])
        #expect(voided.status == 0, "\(voided.output)")
        #expect(
            voided.output.contains("Voided void-1 (correction 1")
                && voided.output.contains("openmeter/api_request: withheld (never sent)")
                && voided.output.contains("orb/api_request: withheld"), "\(voided.output)")
        let worker = try await CLI.run(["worker", "-c", config, "--spool", spool, "--until-empty"])
        #expect(worker.status == 0, "\(worker.output)")
        for provider in ["openmeter", "orb"] {
            let keys = await emulator.accepted(provider).compactMap(\.key)
            #expect(keys.sorted() == ["void-0", "void-2"], "\(provider): \(keys)")
        }

        let late = try await CLI.run(["void", "void-2", "--reason", "test customer", "--spool", spool, "--json"])
        #expect(late.status == 0, "\(late.output)")
        let parsed = JSONValue.parse(Data(late.output.utf8))
        guard case .array(let results)? = parsed, case .object(let first)? = results.first,
            case .object(let lanes)? = first["lanes"]
        else {
            Issue.record("not a JSON list of corrections: \(late.output)")
            return
        }
        #expect(lanes == ["openmeter/api_request": .string("pending"), "orb/api_request": .string("pending")])
        #expect(first["already_void"] == .bool(false) && first["reason"] == .string("test customer"))

        let again = try await CLI.run(["void", "void-1", "--reason", "again", "--spool", spool])
        #expect(again.status == 0 && again.output.contains("void-1 was voided already"), "\(again.output)")

        let unknown = try await CLI.run(["void", "void-0", "evt_nope", "--reason", "typo", "--spool", spool])
        #expect(
            unknown.status == 2 && unknown.output.contains("'evt_nope'") && unknown.output.contains("Fix:"),
            "\(unknown.output)")
        let noReason = try await CLI.run(["void", "void-0", "--spool", spool])
        #expect(noReason.status == 2 && noReason.output.contains("--reason"), "\(noReason.output)")

        // The next worker applies the late void at both providers, and an amend's replacement.
        let amend = try await CLI.run([
            "amend", "void-0", "--quantity", "10", "--reason", "metered in the wrong unit", "-c", config, "--spool",
            spool,
        ])
        #expect(amend.status == 0 && amend.output.contains("Amended void-0 to 10"), "\(amend.output)")
        let badQuantity = try await CLI.run([
            "amend", "void-0", "--quantity", "ten", "--reason", "x", "-c", config, "--spool", spool,
        ])
        #expect(badQuantity.status == 2 && badQuantity.output.contains("--quantity"), "\(badQuantity.output)")
        let drained = try await CLI.run(["worker", "-c", config, "--spool", spool, "--until-empty"])
        #expect(drained.status == 0, "\(drained.output)")
        for provider in ["openmeter", "orb"] {
            let net = await emulator.accepted(provider).reduce(Decimal(0)) { $0 + $1.quantity }
            #expect(net == 10, "\(provider): void-2 taken back, void-0 billed as 10, got \(net)")
        }

        let listed = try await CLI.run(["corrections", "--spool", spool])
        #expect(listed.status == 0, "\(listed.output)")
        #expect(listed.output.contains("void-0 amend to 10"), "\(listed.output)")
        #expect(
            listed.output.contains("void-1 void #1") && listed.output.contains("duplicate from a retry loop")
                && listed.output.contains("void-2 void #1"), "\(listed.output)")
        let status = try await CLI.run(["status", "--spool", spool])
        #expect(status.output.contains("voided 1 before sending"), "\(status.output)")

        // Voiding the amended event voids its replacement, which carries its usage now.
        let voidAmended = try await CLI.run(["void", "void-0", "--reason", "no usage after all", "--spool", spool])
        #expect(
            voidAmended.status == 0 && voidAmended.output.contains("replacement that carries amended void-0"),
            "\(voidAmended.output)")
        #expect(try await CLI.run(["worker", "-c", config, "--spool", spool, "--until-empty"]).status == 0)
        for provider in ["openmeter", "orb"] {
            let net = await emulator.accepted(provider).reduce(Decimal(0)) { $0 + $1.quantity }
            #expect(net == 0, "\(provider): nothing is billed any more, got \(net)")
        }
        await emulator.shutdown()
    }

    /// `POST /v1/events/{id}/void` on serve: authenticated, a reason required, the correction
    /// answered (pending where the event was delivered), twice is once, an unknown id is 404.
    @Test func serveVoidsAnEventThroughItsAPI() async throws {
        let live = try await ServeCLITests.startOnEmulator()
        defer { live.client.shutdown() }
        let posted = try await live.serve.post(live.client, ServeCLITests.event("sv-1"))
        #expect(posted.status == 202)
        #expect(try await eventually { await live.emulator.accepted("openmeter").compactMap(\.key) == ["sv-1"] })

        let path = "/v1/events/sv-1/void"
        let unauthorised = try await live.serve.post(live.client, #"{"reason":"x"}"#, token: nil, path: path)
        #expect(unauthorised.status == 401)
        let noReason = try await live.serve.post(live.client, "{}", path: path)
        #expect(noReason.status == 400 && noReason.json?["error"]?["fix"]?.stringValue?.contains("reason") == true)
        let voided = try await live.serve.post(live.client, #"{"reason":"test customer"}"#, path: path)
        #expect(voided.status == 200, "\(String(describing: voided.json))")
        #expect(voided.json?["lanes"] == .object(["openmeter/api_request+tokens": .string("pending")]))
        #expect(voided.json?["already_void"] == .bool(false) && voided.json?["number"] == .number(1))
        let again = try await live.serve.post(live.client, #"{"reason":"again"}"#, path: path)
        #expect(again.status == 200 && again.json?["already_void"] == .bool(true))
        #expect(again.json?["reason"] == .string("test customer"))
        let unknown = try await live.serve.post(live.client, #"{"reason":"typo"}"#, path: "/v1/events/nope/void")
        #expect(unknown.status == 404 && unknown.json?["error"]?["code"] == .string("event_not_found"))
        // The answers are the ones docs/ingest.openapi.json documents, the correction in its shape.
        let spec = try #require(
            JSONValue.parse(try Data(contentsOf: CLI.root.appending(path: "docs/ingest.openapi.json"))))
        guard case .object(let documented)? = spec["paths"]?["/v1/events/{id}/void"]?["post"]?["responses"],
            case .array(let required)? = spec["components"]?["schemas"]?["Correction"]?["required"],
            case .object(let answered)? = voided.json
        else {
            Issue.record("docs/ingest.openapi.json does not document the void endpoint")
            return
        }
        #expect(Set(["200", "400", "401", "404"]).isSubset(of: Set(documented.keys)))
        #expect(Set(required.compactMap(\.stringValue)).isSubset(of: Set(answered.keys)), "\(answered.keys)")
        // serve's worker applies the void: OpenMeter gets the compensating event, and bills nothing.
        func net() async -> Decimal { await live.emulator.accepted("openmeter").reduce(0) { $0 + $1.quantity } }
        #expect(try await eventually { await net() == 0 }, "the void was applied at OpenMeter")

        // Amend: another event, then its quantity changed through serve.
        #expect(try await live.serve.post(live.client, ServeCLITests.event("sv-2")).status == 202)
        #expect(try await eventually { await live.emulator.accepted("openmeter").contains { $0.key == "sv-2" } })
        let amendPath = "/v1/events/sv-2/amend"
        let noQuantity = try await live.serve.post(live.client, #"{"reason":"x"}"#, path: amendPath)
        #expect(
            noQuantity.status == 400 && noQuantity.json?["error"]?["fix"]?.stringValue?.contains("quantity") == true)
        let amended = try await live.serve.post(
            live.client, #"{"quantity": 9, "reason": "metered twice"}"#, path: amendPath)
        #expect(
            amended.status == 200 && amended.json?["kind"] == .string("amend"), "\(String(describing: amended.json))")
        #expect(amended.json?["quantity"] == .string("9") && amended.json?["replacement_id"]?.stringValue != nil)
        let amendedNet = try await eventually { await net() == 9 }
        #expect(amendedNet, "OpenMeter bills the amended quantity")
        let unknownAmend = try await live.serve.post(
            live.client, #"{"quantity": 1, "reason": "typo"}"#, path: "/v1/events/nope/amend")
        #expect(unknownAmend.status == 404)
        guard case .object(let amendDoc)? = spec["paths"]?["/v1/events/{id}/amend"]?["post"]?["responses"] else {
            Issue.record("docs/ingest.openapi.json does not document the amend endpoint")
            return
        }
        #expect(Set(["200", "400", "401", "404"]).isSubset(of: Set(amendDoc.keys)))
        live.serve.process.kill(SIGTERM)
        #expect(await live.serve.process.exitStatus() == 0)
        let listed = try await CLI.run(["corrections", "--spool", live.spool])
        #expect(listed.output.contains("sv-1 void #1") && listed.output.contains("test customer"), "\(listed.output)")
        #expect(listed.output.contains("sv-2 amend to 9"), "\(listed.output)")
        await live.emulator.shutdown()
    }
}
