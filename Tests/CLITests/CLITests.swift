import Foundation
import Testing
import UsageBilling
import UsageBillingTesting
import UsageEmulator
import UsageTestSupport

/// Runs the built `usage-billing` binary (built with the tests: this target depends on it).
struct CLI {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static var binary: URL {
        let here = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [here, here.deletingLastPathComponent()] {
            let url = candidate.appending(path: "usage-billing")
            if FileManager.default.isExecutableFile(atPath: url.path) { return url }
        }
        return root.appending(path: ".build/debug/usage-billing")
    }

    /// A real-looking key built at run time (never committed), to prove it is never printed.
    static let stripeKey = "sk_" + "test_" + String(repeating: "Vx4", count: 10)
    static let orbKey = "orb_" + String(repeating: "k9Q", count: 10)
    static let env = [
        "STRIPE_SECRET_KEY": stripeKey, "ORB_API_KEY": orbKey,
        "OPENMETER_TOKEN": "om_" + String(repeating: "t7", count: 12),
        "METRONOME_BEARER_TOKEN": "mt_" + String(repeating: "p3", count: 12),
        "CHARGEBEE_API_KEY": "test_" + String(repeating: "cB", count: 12),
        "RECURLY_API_KEY": String(repeating: "r5", count: 16),
        "PADDLE_API_KEY": "pdl_sdbx_apikey_" + String(repeating: "z8", count: 12),
    ]

    struct Result { var status: Int32; var output: String }

    /// Runs the binary (spawned directly, not through Foundation's `Process`, which crashed
    /// here with many descriptors changing on other threads) and waits for it on a GCD thread,
    /// so waiting never blocks Swift's cooperative pool, which other tests running in parallel need.
    static func run(_ args: [String], env extra: [String: String] = env) async throws -> Result {
        let (status, output) = try await ChildProcess.run(
            binary.path, args, environment: ProcessInfo.processInfo.environment.merging(extra) { $1 },
            directory: root.path)
        return Result(status: status, output: output)
    }

    static func temp(_ name: String, _ text: String) throws -> String {
        let url = FileManager.default.temporaryDirectory.appending(path: "ub-cli-\(UUID().uuidString)-\(name)")
        try Data(text.utf8).write(to: url)
        return url.path
    }
}

@Suite("CLI (built binary)", .timeLimit(.minutes(2)))
struct CLITests {
    @Test func configCheckPrintsTheRoutingTableWithSecretsMasked() async throws {
        let r = try await CLI.run(["config", "check", "examples/routing.yaml"])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("api_request → stripe + shadow orb"))
        #expect(r.output.contains("storage_* → openmeter"))
        #expect(!r.output.contains(CLI.stripeKey) && !r.output.contains(CLI.orbKey))
        #expect(r.output.contains("sk_test_REDACTED"))
    }

    @Test func configCheckOnABadFileExits2NamingLineKeyAndFix() async throws {
        let path = try CLI.temp(
            "bad.yaml",
            """
            version: 1
            providers:
              stripe: { kind: stripe, secret_key: ${STRIPE_SECRET_KEY} }
            routes:
              - { events: [api_request], to: orb }
            """)
        let r = try await CLI.run(["config", "check", path])
        #expect(r.status == 2)
        #expect(r.output.contains("\(path):5: routes[0].to: 'orb' is not a defined provider. Fix:"), "\(r.output)")
    }

    @Test func configCheckNamesAMissingEnvironmentVariable() async throws {
        let r = try await CLI.run(
            ["config", "check", "examples/routing.yaml"], env: CLI.env.merging(["STRIPE_SECRET_KEY": ""]) { $1 })
        #expect(r.status == 2)
        #expect(r.output.contains("environment variable STRIPE_SECRET_KEY is not set"))
    }

    /// The example events (all on 2026-11-20) moved to yesterday, UTC: Stripe takes events up to
    /// 35 days old and Metronome 34, so the file as committed would be rejected from late
    /// December on. Yesterday is after the example config's cutover (2026-12-01), so
    /// `api_request` goes to Orb with a Stripe shadow.
    @Test func importDryRunShowsRequestsAndAGoodSummary() async throws {
        let example = try String(contentsOfFile: "examples/events.ndjson", encoding: .utf8)
        #expect(
            example.components(separatedBy: "\"timestamp\": \"2026-11-20T").count == 94,
            "every example event is on 2026-11-20")
        let yesterday = String(RFC3339.format(Date().addingTimeInterval(-86_400)).prefix(10))
        let events = try CLI.temp(
            "examples-yesterday.ndjson",
            example.replacingOccurrences(of: "\"timestamp\": \"2026-11-20T", with: "\"timestamp\": \"\(yesterday)T"))
        let r = try await CLI.run([
            "import", events, "-c", "examples/routing.yaml", "--dry-run", "--show-requests", "50",
        ])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("Read 93 events."))
        #expect(r.output.contains("orb/api_request (primary): accepted 30"), "\(r.output)")
        #expect(r.output.contains("stripe/api_request (shadow): accepted 30"), "\(r.output)")
        #expect(r.output.contains("openmeter/storage_* (primary): accepted 15"))
        #expect(r.output.contains("chargebee/seats (primary): aggregated 17"), "\(r.output)")
        #expect(r.output.contains("chargebee/seats (primary) window records: accepted"))
        #expect(r.output.contains("POST https://api.stripe.com/v1/billing/meter_events"))
        #expect(r.output.contains("Authorization: Bearer sk_test_REDACTED"))
        #expect(!r.output.contains(CLI.stripeKey) && !r.output.contains(CLI.orbKey))
    }

    @Test func badEventLinesExit2WithTheLineAndNothingSent() async throws {
        let path = try CLI.temp(
            "events.ndjson",
            """
            {"id":"a","name":"api_request","customer":"acme","timestamp":"2026-11-20T10:00:00Z","quantity":"1"}
            {"id":"b","name":"api_request","customer":"acme","timestamp":"yesterday"}
            {"id":"c","name":"api_request","timestamp":"2026-11-20T10:00:00Z"}
            """)
        let r = try await CLI.run(["import", path, "-c", "examples/routing.yaml", "--dry-run"])
        #expect(r.status == 2)
        #expect(r.output.contains("line 2: field 'timestamp'"))
        #expect(r.output.contains("line 3: missing field 'customer'"))
    }

    @Test func unroutedEventsExit1() async throws {
        let path = try CLI.temp(
            "events.ndjson", #"{"id":"u1","name":"fax_pages","customer":"acme","timestamp":"2026-11-20T10:00:00Z"}"#)
        let r = try await CLI.run(["import", path, "-c", "examples/routing.yaml", "--dry-run"])
        #expect(r.status == 1)
        #expect(r.output.contains("unrouted: rejected: unrouted 1"))
    }

    @Test func sendOneEventDryRun() async throws {
        let r = try await CLI.run([
            "send", "-c", "examples/routing.yaml", "--name", "api_request", "--customer", "acme",
            "--quantity", "150", "--id", "evt-cli-1", "--property", "region=eu-west", "--dry-run",
        ])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("identifier=evt-cli-1"))
        #expect(r.output.contains("payload[value]=150"))
        #expect(r.output.contains("payload[stripe_customer_id]=cus_QrAcme0001"))
        #expect(!r.output.contains(CLI.stripeKey))
    }

    @Test func badFlagsExit2() async throws {
        let r = try await CLI.run([
            "send", "-c", "examples/routing.yaml", "--name", "api_request", "--customer", "acme", "--quantity", "lots",
        ])
        #expect(r.status == 2)
        #expect(r.output.contains("--quantity 'lots' is not a decimal number"))
    }

    @Test func unreachableProviderExits3() async throws {
        let config = try CLI.temp(
            "unreachable.yaml",
            """
            version: 1
            providers:
              orb: { kind: orb, api_key: orb_REDACTED, endpoint: "http://127.0.0.1:9/v1" }
            routes:
              - { events: [api_request], to: orb }
            """)
        let r = try await CLI.run([
            "send", "-c", config, "--name", "api_request", "--customer", "acme", "--max-attempts", "2", "--id",
            "evt-unreachable-1",
        ])
        #expect(r.status == 3, "\(r.output)")
        #expect(r.output.contains("orb/api_request (primary): retryable 1"))
        // Why, how often, how long, and how to resend: the id and a command line carrying it.
        #expect(
            r.output.contains("evt-unreachable-1 → orb/api_request (primary): still failing (transport"), "\(r.output)")
        #expect(
            r.output.contains("2 attempt(s) over") && r.output.contains("resending it with the same id is safe"),
            "\(r.output)")
        #expect(
            r.output.contains(
                "To send it again: usage-billing send -c \(config) --name api_request --customer acme --quantity 1 --timestamp "
            )
                && r.output.contains("--id evt-unreachable-1"), "\(r.output)")
    }

    /// A provider that answers 503 until the attempts run out, and one that takes the request and
    /// never answers (the emulator's faults): `send` names the reason, the attempts and the id.
    @Test(arguments: [
        ("503=1", "still failing (server_error"), ("timeout=1", "possibly delivered: the provider may already have it"),
    ])
    func sendSaysWhyAProviderFailed(_ faults: String, _ says: String) async throws {
        let emulator = try await UsageEmulator.start(faults: ["orb": try FaultPlan.parse(faults)])
        let config = try CLI.temp(
            "failing.yaml",
            """
            version: 1
            providers:
              orb: { kind: orb, api_key: orb_REDACTED, endpoint: "\(emulator.endpoints["orb"]?["endpoint"] ?? "")", timeout: 1s }
            routes:
              - { events: [api_request], to: orb }
            """)
        let r = try await CLI.run([
            "send", "-c", config, "--name", "api_request", "--customer", "acme", "--max-attempts", "2", "--id",
            "evt-failing-1",
        ])
        #expect(r.status == 3, "\(r.output)")
        #expect(
            r.output.contains("evt-failing-1 → orb/api_request (primary): \(says)")
                && r.output.contains("2 attempt(s)"), "\(r.output)")
        #expect(r.output.contains("--id evt-failing-1"), "\(r.output)")
        await emulator.shutdown()
    }

    /// A provider without idempotency (Paddle) says a resend may bill twice, instead of calling it safe.
    @Test func anUnreachableProviderWithoutIdempotencySaysToLookFirst() async throws {
        let config = try CLI.temp(
            "unreachable-paddle.yaml",
            """
            version: 1
            providers:
              paddle: { kind: paddle, api_key: pdl_sdbx_apikey_REDACTED, price_id: pri_01x, endpoint: "http://127.0.0.1:9" }
            routes:
              - { events: [seats], to: paddle }
            """)
        let r = try await CLI.run([
            "send", "-c", config, "--name", "seats", "--customer", "sub_01x", "--max-attempts", "2",
        ])
        #expect(r.status == 3, "\(r.output)")
        #expect(r.output.contains("keeps no idempotency") && !r.output.contains("is safe"), "\(r.output)")
    }

    @Test func everyCommandHasHelpWithExamples() async throws {
        for command in [
            ["config", "check"], ["send"], ["import"], ["demo"], ["meters", "list"], ["meters", "create"], ["summary"],
            ["reconcile"],
        ] {
            let r = try await CLI.run(command + ["--help"])
            #expect(r.status == 0)
            #expect(r.output.contains("Examples:"), "\(command)")
        }
    }
}
