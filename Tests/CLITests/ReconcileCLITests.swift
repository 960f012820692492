import Foundation
import Testing
import UsageBilling
import UsageEmulator

@Suite("CLI reconcile against the emulator", .timeLimit(.minutes(2)))
struct ReconcileCLITests {
    @Test func importWorkerThenReconcileAgreesAndCatchesAMappingBug() async throws {
        let emulator = try await UsageEmulator.start()
        let e = emulator.endpoints
        func yaml(orbGlobex: String) throws -> String {
            try CLI.temp(
                "reconcile-\(orbGlobex).yaml",
                """
                version: 1
                providers:
                  stripe: { kind: stripe, secret_key: ${STRIPE_SECRET_KEY}, endpoint: "\(e["stripe"]?["endpoint"] ?? "")" }
                  orb: { kind: orb, api_key: ${ORB_API_KEY}, endpoint: "\(e["orb"]?["endpoint"] ?? "")" }
                routes:
                  - { events: [api_request], to: stripe, shadow: orb }
                customers: { acme: { stripe: cus_acme, orb: orb-acme }, globex: { stripe: cus_globex, orb: \(orbGlobex) } }
                """)
        }
        let good = try yaml(orbGlobex: "orb-globex"), bad = try yaml(orbGlobex: "orb-acme")
        let now = Date()
        let lines = (0..<12).map { i in
            #"{"id":"cli-rec-\#(i)","name":"api_request","customer":"\#(i % 2 == 0 ? "acme" : "globex")","timestamp":"\#(RFC3339.format(now.addingTimeInterval(-Double(i) - 60)))","quantity":\#(i + 1)}"#
        }
        let events = try CLI.temp("reconcile.ndjson", lines.joined(separator: "\n"))
        let from = RFC3339.format(now.addingTimeInterval(-3600)), to = RFC3339.format(now)
        for (config, tag) in [(good, "good"), (bad, "bad")] {
            let spool = FileManager.default.temporaryDirectory.appending(
                path: "ub-cli-reconcile-\(tag)-\(UUID().uuidString).spool"
            ).path
            let recorded = try await CLI.run(["import", events, "-c", config, "--spool", spool])
            #expect(recorded.status == 0, "\(recorded.output)")
            let worker = try await CLI.run(["worker", "-c", config, "--spool", spool, "--until-empty"])
            #expect(worker.status == 0, "\(worker.output)")
            let json = try await CLI.run([
                "reconcile", "-c", config, "--spool", spool, "--from", from, "--to", to, "--json",
            ])
            let report = JSONValue.parse(Data(json.output.utf8))
            if tag == "good" {
                #expect(json.status == 0, "\(json.output)")
                #expect(report?["clean"] == .bool(true))
                #expect(report?["rows"]?.arrayValue?.count == 4, "two customers on two providers")
                let csv = try await CLI.run([
                    "reconcile", "-c", config, "--spool", spool, "--from", from, "--to", to, "--csv", "--providers",
                    "orb",
                ])
                #expect(
                    csv.status == 0 && csv.output.hasPrefix("status,provider,customers,provider_customer"),
                    "\(csv.output)")
                #expect(csv.output.split(separator: "\n").count == 3)
            } else {
                #expect(json.status == 1, "\(json.output)")
                let problem = report?["mapping_problems"]?.arrayValue?.first?.stringValue ?? ""
                #expect(problem.contains("acme and globex") && problem.contains("orb-acme"), "\(json.output)")
                let table = try await CLI.run(["reconcile", "-c", config, "--spool", spool, "--from", from, "--to", to])
                #expect(
                    table.status == 1 && table.output.contains("mapping: orb: your customers acme and globex"),
                    "\(table.output)")
            }
            #expect(!json.output.contains(CLI.stripeKey) && !json.output.contains(CLI.orbKey))
        }
        let badWindow = try await CLI.run([
            "reconcile", "-c", good, "--spool", "/nonexistent.spool", "--from", from, "--to", to, "--window", "week",
        ])
        #expect(badWindow.status == 2 && badWindow.output.contains("--window 'week'"), "\(badWindow.output)")
        let noSpool = try await CLI.run([
            "reconcile", "-c", good, "--spool", "/nonexistent.spool", "--from", from, "--to", to,
        ])
        #expect(noSpool.status == 2 && noSpool.output.contains("no spool at"), "\(noSpool.output)")
        let badRange = try await CLI.run([
            "reconcile", "-c", good, "--spool", "/nonexistent.spool", "--from", "yesterday", "--to", to,
        ])
        #expect(badRange.status == 2 && badRange.output.contains("--from 'yesterday'"), "\(badRange.output)")
        await emulator.shutdown()
    }
}
