import ArgumentParser
import Foundation
import UsageBilling
import Logging
import ServiceLifecycle
import UsageEmulator

/// `usage-billing emulate`: the provider emulator as a long-running local server.
struct Emulate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the emulator of all seven providers on 127.0.0.1, with optional fault injection.",
        usage: "usage-billing emulate [<options>]",
        discussion: """
            Each provider lives under its own prefix; point a provider's `endpoint` setting at it (the command prints \
            the settings to use). Faults apply to write requests (and to read-back queries with reads=1) and are seeded, \
            so a failing run can be replayed. \
            Stop with Ctrl-C.

            --faults takes PROVIDER:SPEC, repeatable, or all:SPEC; SPEC is kind=rate,... \
            with kind one of 429, 429-bare, 500, 503, reset, timeout (applied, then no \
            answer), delay=50ms@0.2, and reads=1 (read-back queries fail too).

            While it runs, a control API on the same port changes faults and state (no \
            key; loopback only; E is http://127.0.0.1:12111). Set, clear, read, forget \
            what it accepted, and move its clock past the providers' correction limits:
              curl -X PUT --data '429=0.2' $E/_emulator/faults/orb   # or faults/all
              curl -X DELETE $E/_emulator/faults/orb
              curl $E/_emulator/stats        # requests, accepted, injected
              curl -X POST "$E/_emulator/reset?provider=stripe"
              curl -X POST "$E/_emulator/clock?advance=25h"  # past Stripe's 24 h

            Examples:
              usage-billing emulate --port 12111
              usage-billing emulate --faults all:429=0.05,500=0.05 --seed 7
              usage-billing emulate --faults recurly:timeout=0.1
              usage-billing emulate --set orb.grace_hours=12   # old events need a backfill
              usage-billing emulate --rate-limits     # documented limits answer 429
              usage-billing emulate -c routing.yaml   # meters read events as routed
            """)

    @Option(
        name: .shortAndLong,
        help:
            "A routing config: the emulator's meters read events as its routes send them (OpenMeter and Metronome quantity_property, Stripe event_name)."
    )
    var config: String?

    @Option(help: "Port on 127.0.0.1 (0: any free port).") var port: Int = 12111
    @Option(help: "PROVIDER:SPEC fault plan; repeatable (see above).") var faults: [String] = []
    @Option(help: "Seed for the fault dice.") var seed: UInt64 = 1
    @Option(
        name: .customLong("set"),
        help: ArgumentHelp(
            "KIND.NAME=VALUE: an emulation's setting; repeatable. "
                + UsageEmulator.standard.flatMap { kind in kind.settings.map { "\(kind.kind).\($0.name): \($0.help)." }
                }.joined(separator: " ")))
    var settings: [String] = []
    @Flag(
        help:
            "Enforce the providers' documented rate limits (Stripe: 1,000 meter-event calls/s live, 25/s with a test key; Orb: 100 ingest requests/s and 10,000 events/min): writes past them are answered 429."
    )
    var rateLimits = false

    func run() async throws {
        var plans: [String: FaultPlan] = [:]
        for entry in faults {
            let parts = entry.split(separator: ":", maxSplits: 1).map(String.init)
            guard parts.count == 2, parts[0] == "all" || UsageEmulator.kinds.contains(parts[0]) else {
                throw CLIFailure.badInput(
                    "--faults '\(entry)' must be PROVIDER:SPEC with PROVIDER one of all, \(UsageEmulator.kinds.joined(separator: ", "))"
                )
            }
            do {
                let plan = try FaultPlan.parse(parts[1])
                for kind in parts[0] == "all" ? UsageEmulator.kinds : [parts[0]] { plans[kind] = plan }
            } catch {
                throw CLIFailure.badInput("\(error)")
            }
        }
        let declared =
            try config.map { try EmulatedMeters(config: Demo.configWithPlaceholderKeys($0)) } ?? EmulatedMeters()
        var options = declared.options
        for setting in settings {
            do {
                try UsageEmulator.standard.apply(setting: setting, to: &options)
            } catch {
                throw CLIFailure.badInput("--set \(setting): \(error)")
            }
        }
        let emulator: UsageEmulator
        do {
            emulator = try await UsageEmulator.start(
                port: port, faults: plans, seed: seed, options: options, rateLimits: rateLimits)
        } catch {
            throw CLIFailure.unreachable(
                "cannot listen on 127.0.0.1:\(port): \(error). Fix: pick another --port (0 picks a free one)")
        }
        print(
            "Emulating \(UsageEmulator.kinds.joined(separator: ", ")) at \(emulator.baseURL). Settings for your routing config:"
        )
        for kind in UsageEmulator.kinds {
            let settings = (emulator.endpoints[kind] ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }
                .joined(separator: ", ")
            // Two significant digits: a plan of one hung request in 500 is 0.2 %, not "0 %".
            let plan =
                plans[kind].map {
                    $0.failureRate > 0 || $0.delayRate > 0
                        ? "  (faults: \(String(format: "%.2g", $0.failureRate * 100))% of writes)" : ""
                } ?? ""
            print("  \(kind): { \(settings) }\(plan)")
        }
        if let config { print("Meters from \(config): \(declared.description)") }
        print(
            "Any API key is accepted (Stripe's must start with sk_ or rk_). Control API: \(emulator.baseURL)/_emulator/ (see --help). Ctrl-C stops."
        )
        // every output stream: shown at once when the output goes to a file or a pipe, not when the buffer fills
        fflush(nil)
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: EmulatorService(emulator: emulator))],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: Logger(label: "usage-billing.emulate")))
        try await group.run()
    }
}

/// Keeps the emulator up until SIGINT/SIGTERM.
struct EmulatorService: Service {
    let emulator: UsageEmulator
    func run() async throws {
        try? await gracefulShutdown()
        await emulator.shutdown()
    }
}
