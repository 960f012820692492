import Foundation
import Testing
import UsageBilling
import UsageBillingTesting
import UsageEmulator
import UsageTestSupport

/// The cockpit's pages in a real browser (headless Chromium): the reconciliation report and the
/// status page as files, and the live status page of `serve`. Each is checked for its rows and
/// verdict, for user data shown as text (a customer id that is a `<script>` stays text), and for
/// loading nothing from the network (every off-machine request goes to a recording proxy).
@Suite("Cockpit pages in a browser", .timeLimit(.minutes(3)))
struct CockpitBrowserTests {
    static let hostile = #"<script>alert("x")</script>"#
    static let escaped = "&lt;script&gt;alert(\"x\")&lt;/script&gt;"

    /// The detector works: a page that reaches out is seen doing so.
    @Test func theProxySeesAPageThatReachesOut() async throws {
        let browser = try await HeadlessBrowser.start()
        let page = try CLI.temp(
            "reaches-out.html",
            #"<html><body><p id="here">x</p><img src="http://cdn.example.invalid/pixel.png"></body></html>"#)
        let dom = try await browser.dumpDOM("file://" + page)
        #expect(dom.contains("id=\"here\""))
        #expect(
            try await eventually { browser.networkRequests.contains { $0.contains("cdn.example.invalid") } },
            "\(browser.networkRequests)")
        await browser.shutdown()
    }

    /// Stripe and Orb take the same events (a dual write); Orb's customer table bills globex on
    /// acme's id. `reconcile --html` shows the mismatch and the mapping problem, side by side;
    /// `status --html` shows the lane rows and that saved reconciliation.
    @Test func reconcileAndStatusPagesAsFiles() async throws {
        let emulator = try await UsageEmulator.start()
        let e = emulator.endpoints
        let config = try CLI.temp(
            "cockpit.yaml",
            """
            version: 1
            providers:
              stripe: { kind: stripe, secret_key: ${STRIPE_SECRET_KEY}, endpoint: "\(e["stripe"]?["endpoint"] ?? "")" }
              orb: { kind: orb, api_key: ${ORB_API_KEY}, endpoint: "\(e["orb"]?["endpoint"] ?? "")" }
            routes:
              - { events: [api_request], to: stripe, shadow: orb }
            customers: { acme: { stripe: cus_acme, orb: orb-acme }, globex: { stripe: cus_globex, orb: orb-acme } }
            """)
        let now = Date()
        let customers = ["acme", "globex", Self.hostile]
        let lines = (0..<9).map { i in
            JSONValue.object([
                "id": .string("cockpit-\(i)"), "name": .string("api_request"), "customer": .string(customers[i % 3]),
                "timestamp": .string(RFC3339.format(now.addingTimeInterval(-Double(i) - 60))),
                "quantity": .number(Double(i + 1)),
            ]).description
        }
        let events = try CLI.temp("cockpit.ndjson", lines.joined(separator: "\n"))
        let spool = FileManager.default.temporaryDirectory.appending(path: "ub-cockpit-\(UUID().uuidString).spool").path
        #expect(try await CLI.run(["import", events, "-c", config, "--spool", spool]).status == 0)
        #expect(try await CLI.run(["worker", "-c", config, "--spool", spool, "--until-empty"]).status == 0)
        // One delivered event voided and taken back at both: the report lists it per provider.
        #expect(try await CLI.run(["void", "cockpit-1", "--reason", "test customer", "--spool", spool]).status == 0)
        #expect(try await CLI.run(["worker", "-c", config, "--spool", spool, "--until-empty"]).status == 0)
        // Three more recorded and not yet delivered: their windows disagree, the lanes behind.
        let late = try CLI.temp(
            "late.ndjson",
            (0..<3).map { i in
                JSONValue.object([
                    "id": .string("cockpit-late-\(i)"), "name": .string("api_request"),
                    "customer": .string(["acme", Self.hostile, "acme"][i]),
                    "timestamp": .string(RFC3339.format(now.addingTimeInterval(-30))), "quantity": .number(5),
                ]).description
            }.joined(separator: "\n"))
        #expect(try await CLI.run(["import", late, "-c", config, "--spool", spool]).status == 0)
        let from = RFC3339.format(now.addingTimeInterval(-86_400)), to = RFC3339.format(now.addingTimeInterval(3600))
        let report = FileManager.default.temporaryDirectory.appending(path: "ub-cockpit-\(UUID().uuidString).html").path
        let reconcile = try await CLI.run([
            "reconcile", "-c", config, "--spool", spool, "--from", from, "--to", to, "--json", "--html", report,
        ])
        #expect(reconcile.status == 1, "a mismatch exits 1 and still writes the page: \(reconcile.output)")
        let saved = try CLI.temp(
            "reconcile.json", String(reconcile.output.split(separator: "\n").first { $0.hasPrefix("{") } ?? ""))
        let status = FileManager.default.temporaryDirectory.appending(
            path: "ub-cockpit-status-\(UUID().uuidString).html"
        ).path
        let written = try await CLI.run(["status", "--spool", spool, "--html", status, "--reconcile", saved])
        #expect(written.status == 0, "\(written.output)")

        let browser = try await HeadlessBrowser.start()
        let page = try await browser.dumpDOM("file://" + report)
        #expect(page.contains("id=\"verdict\">MISMATCH:"), "the verdict heads the page")
        #expect(
            page.contains("<h2>Side by side</h2>") && page.contains("id=\"provider-stripe\"")
                && page.contains("id=\"provider-orb\""))
        #expect(
            page.components(separatedBy: "<tr class=\"mismatch\">").count - 1 == 4,
            "acme and the hostile id on each provider are behind")
        #expect(page.contains("lane behind"))
        #expect(page.contains("your customers acme and globex are all billed on orb customer"))
        #expect(page.contains(Self.escaped) && !page.contains("<script"), "a customer id is text, never markup")
        for provider in ["stripe", "orb"] {
            #expect(page.contains("id=\"corrections-\(provider)\">1 applied"), "\(provider)'s void is listed")
        }
        #expect(page.contains("<td>cockpit-1</td>") && page.contains("test customer"))
        let statusDOM = try await browser.dumpDOM("file://" + status)
        #expect(
            statusDOM.contains("<td>stripe/api_request</td>") && statusDOM.contains("<td>orb/api_request</td>"),
            "\(statusDOM)")
        #expect(statusDOM.contains("id=\"reconcile-verdict\">MISMATCH") && statusDOM.contains("<polyline"))
        #expect(statusDOM.contains(Self.escaped) && !statusDOM.contains("<script"))
        #expect(browser.networkRequests.isEmpty, "the pages loaded \(browser.networkRequests)")
        await browser.shutdown()
        await emulator.shutdown()

        let alone = try await CLI.run(["status", "--spool", spool, "--reconcile", saved])
        #expect(alone.status == 2 && alone.output.contains("--html"), "\(alone.output)")
        let unwritable = try await CLI.run(["status", "--spool", spool, "--html", "/nonexistent/dir/status.html"])
        #expect(
            unwritable.status == 2
                && unwritable.output.contains("--html /nonexistent/dir/status.html cannot be written"),
            "\(unwritable.output)")
    }

    /// `GET /` of a live `serve`: a page that reloads itself, with the lane's counts after events
    /// came in over HTTP, and the saved reconciliation it was pointed at (hostile text included).
    @Test func serveStatusPageIsLive() async throws {
        let saved = try CLI.temp(
            "saved.json",
            #"""
            {"clean":false,"mapping_problems":[],"rows":[{"status":"mismatch","provider":"openmeter","customers":["\u003cscript\u003ealert(\"x\")\u003c/script\u003e"],
             "provider_customer":"c","meter":"api_request","window_start":"2026-12-01T00:00:00Z","window_end":"2026-12-02T00:00:00Z",
             "recorded":"5","queued":0,"reported":"4","difference":"-1","note":"provider reports 1 less"}]}
            """#)
        let live = try await ServeCLITests.startOnEmulator(arguments: ["--reconcile", saved])
        let (emulator, serve, client) = (live.emulator, live.serve, live.client)
        defer { client.shutdown() }
        for i in 0..<3 { #expect(try await serve.post(client, ServeCLITests.event("page-\(i)")).status == 202) }
        #expect(try await eventually { await emulator.accepted("openmeter").count == 3 })

        let browser = try await HeadlessBrowser.start()
        var dom = ""
        #expect(
            try await eventually(every: .milliseconds(200)) {
                dom = try await browser.dumpDOM(serve.base + "/")
                return dom.contains("<td class=\"num\">3</td>")
            }, "three delivered: \(dom)")
        #expect(dom.contains("<meta http-equiv=\"refresh\" content=\"10\">"))
        #expect(dom.contains("<td>openmeter/"))
        #expect(
            dom.contains("id=\"reconcile-verdict\">MISMATCH") && dom.contains(Self.escaped) && !dom.contains("<script"))
        #expect(browser.networkRequests.isEmpty, "the page loaded \(browser.networkRequests)")
        await browser.shutdown()
        serve.process.kill(SIGTERM)
        _ = await serve.process.exitStatus()
        await emulator.shutdown()
    }
}
