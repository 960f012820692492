import ArgumentParser
import Foundation
import UsageBilling
import UsageCockpit
import UsageBillingCurl
import UsageEmulator
import UsageReconciliation
import UsageRouting
import UsageSpool

/// `usage-billing demo`: the whole pipeline — routing config, spool, worker, libcurl — against
/// the built-in emulator of all seven providers, then each provider's totals read back through
/// its own API and compared with what was recorded.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run examples/routing.yaml against the built-in provider emulator and check every provider's totals.",
        usage: "usage-billing demo [<options>]",
        discussion: """
            Starts the emulator of Stripe, Orb, Metronome, OpenMeter, Chargebee, Recurly and Paddle on 127.0.0.1 (no \
            account, no network), loads the routing config with placeholder keys and the emulator's endpoints, records the \
            example events into a spool, records them all again (as a retrying client would: nothing may be billed twice), \
            and drains the spool with the delivery worker while the emulator injects 429s, 5xx, resets and lost responses. \
            Then it reads each provider's totals back through that provider's own read-back API and prints them beside \
            what was recorded, per provider, customer and meter. Exits 0 only if they all agree.

            Examples:
              usage-billing demo
              usage-billing demo --faults 0 --seed 7
              usage-billing demo -c my-routing.yaml --events my-events.ndjson
            """)

    @Option(name: .shortAndLong, help: "The routing config.") var config: String = "examples/routing.yaml"
    @Option(help: "NDJSON file of events ({id, name, customer, timestamp, quantity, properties}).") var events: String =
        "examples/events.ndjson"
    @Option(help: "Share of write requests that fail (0…0.5), spread over 429, 5xx, resets and lost responses.")
    var faults: Double = 0.15
    @Option(help: "Seed for the injected faults (the same seed fails the same requests).") var seed: UInt64 = 42
    @Option(help: "Where to write the reconciliation as an HTML page.") var report: String = "demo-report.html"

    func run() async throws {
        guard (0...0.5).contains(faults) else {
            throw CLIFailure.badInput("--faults \(faults) is out of range. Fix: use 0 to 0.5")
        }
        let loaded = try loadEvents()
        guard let latest = loaded.map(\.timestamp).max() else {
            throw CLIFailure.badInput("\(events) holds no events; add one JSON event per line")
        }
        // Providers take recent events (Stripe: 35 days): move the example day to today, by whole days.
        let shiftDays = (Date().addingTimeInterval(-3 * 3600).timeIntervalSince(latest) / 86_400).rounded(.down)
        let recorded = loaded.map { event -> UsageEvent in
            var e = event
            e.timestamp = event.timestamp.addingTimeInterval(shiftDays * 86_400)
            return e
        }

        var routing = try Self.configWithPlaceholderKeys(config)

        let client = try CurlHTTPClient(configuration: .init(timeout: .seconds(1)))
        defer { client.shutdown() }
        // The emulator's meters read events as the config's routes send them.
        let meters = try EmulatedMeters(config: routing)
        let plans = Dictionary(
            uniqueKeysWithValues: UsageEmulator.kinds.map {
                ($0, FaultPlan.mixed(faults, timeouts: faults > 0 ? 0.02 : 0))
            })
        let emulator = try await UsageEmulator.start(faults: plans, seed: seed, options: meters.options)
        for (name, provider) in routing.providers {
            for (key, value) in emulator.endpoints[provider.kind.name] ?? [:] {
                routing.providers[name]?.settings[key] = .string(value)
            }
        }

        print("UsageBilling demo: \(config) → the built-in emulator at \(emulator.baseURL)")
        print(
            "Providers: "
                + routing.providers.keys.sorted().map { "\($0) (\(routing.providers[$0]?.kind.name ?? "?"))" }.joined(
                    separator: ", "))
        print(
            "Loaded \(recorded.count) events from \(events), moved \(Int(shiftDays)) day(s) later so every provider takes them."
        )
        if faults > 0 {
            print(
                "The emulator fails \(Int(faults * 100))% of write requests (429, 500/503, resets, lost responses; seed \(seed))."
            )
        }

        let directory = FileManager.default.temporaryDirectory.appending(
            path: "usage-billing-demo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let pipeline = try UsagePipeline(
            config: routing, spoolPath: directory.appending(path: "demo.spool").path, client: client,
            policy: RetryPolicy(baseDelay: .milliseconds(20), maxDelay: .milliseconds(500), maxAttempts: 30))
        let started = ContinuousClock.now
        try await pipeline.record(recorded)
        try await pipeline.record(recorded)  // again, as a client retrying its record call would: a no-op
        try await pipeline.flush()
        let elapsed = ContinuousClock.now - started
        print("\nSpool drained in \(String(format: "%.2f", elapsed.seconds)) s:")
        print(
            describe(try await pipeline.spool.status()).split(separator: "\n").map { "  " + $0 }.joined(separator: "\n")
        )
        let stats = emulator.statistics
        let injected = stats.injected.values.flatMap(\.values).reduce(0, +)
        print(
            "The emulator answered \(stats.requests.values.reduce(0, +)) requests ("
                + stats.requests.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
                + ") and injected \(injected) failures.")

        // What each provider should bill, from the events and the routing decisions: the spool's
        // ledger must hold exactly this.
        var expected: [String: Decimal] = [:]
        for event in recorded {
            guard let d = routing.decide(event) else { continue }
            for provider in [d.primary] + d.shadows { expected[provider, default: 0] += event.quantity }
        }
        // The spool's ledger against what each provider reports through its own read-back API.
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? calendar.timeZone
        let earliest = recorded.map(\.timestamp).min() ?? Date()
        let last = recorded.map(\.timestamp).max() ?? Date()
        let from = calendar.dateInterval(of: .month, for: earliest)?.start ?? earliest
        let to = calendar.dateInterval(of: .day, for: last)?.end ?? last
        let report = try await Reconciler(router: pipeline.router, spool: pipeline.spool, client: client)
            .run(ReconcileOptions(from: from, to: to, granularity: .day))
        await emulator.shutdown()

        print(
            "\nRecorded (spool ledger) against reported (each provider's read-back API), per provider customer, meter and UTC day:"
        )
        print(report.table().split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        var inLedger: [String: Decimal] = [:]
        for row in report.rows { inLedger[row.provider, default: 0] += row.recorded }
        let lost = expected.filter { inLedger[$0.key, default: 0] != $0.value }
        for (provider, total) in lost.sorted(by: { $0.key < $1.key }) {
            print(
                "  \(provider): the events route \(DecimalFormat.plain(total)) to it, the spool's ledger holds \(DecimalFormat.plain(inLedger[provider, default: 0]))"
            )
        }
        try writePage(
            report.html(from: from, to: to, title: "UsageBilling demo: reconciliation"), to: self.report,
            flag: "--report")
        print(
            "\nThe report as a page: \(URL(fileURLWithPath: self.report).standardizedFileURL.path) (open it in a browser)."
        )
        let lanes = try await pipeline.spool.status()
        let dead = lanes.map { $0.dead.values.reduce(0, +) }.reduce(0, +)
        let queued = lanes.map(\.queued).reduce(0, +)
        if !report.isClean || !lost.isEmpty || dead > 0 || queued > 0 {
            print(
                "\nFAILED: \(report.mismatches.count) total(s) disagree, \(lost.count) provider ledger(s) differ from the events, \(dead) dead letter(s), \(queued) still queued."
            )
            throw ExitCode(ExitCodes.someRejected)
        }
        print(
            "\nOK: every provider reports exactly what was recorded (\(report.rows.count) totals), through \(injected) injected failures, and nothing was billed twice."
        )
    }

    private func loadEvents() throws -> [UsageEvent] {
        var loaded: [UsageEvent] = []
        if !FileManager.default.fileExists(atPath: events) {
            throw CLIFailure.badInput(
                "no events file at \(events)\(Self.whereItLooks(events)). Fix: run the demo from the repository root (where examples/ is), or pass --events FILE (one JSON event per line) and -c CONFIG"
            )
        }
        do {
            let reader = try EventReader(path: events, format: .ndjson)
            while case let batch = reader.next(max: 1_000), !batch.isEmpty {
                for item in batch {
                    switch item {
                    case .success(let event): loaded.append(event)
                    case .failure(let bad):
                        throw CLIFailure.badInput("\(events) \(bad)")
                    }
                }
            }
        } catch let error as UsageBillingError {
            throw CLIFailure.badInput("\(error)")
        }
        return loaded
    }

    /// The routing config at `path`, with a placeholder for every `${VAR}` it names: for runs
    /// against the emulator, which takes any key. Prints each problem and exits 2 on a bad config.
    /// ` (looked for in DIR)` for a relative path: the directory it was looked up in.
    static func whereItLooks(_ path: String) -> String {
        path.hasPrefix("/") ? "" : " (looked for in \(FileManager.default.currentDirectoryPath))"
    }

    static func configWithPlaceholderKeys(_ path: String) throws -> RoutingConfig {
        guard let text = FileManager.default.contents(atPath: path).map({ String(decoding: $0, as: UTF8.self) }) else {
            throw CLIFailure.badInput(
                "cannot read the config \(path)\(whereItLooks(path)). Fix: run from the repository root (where examples/ is), or pass -c CONFIG (and --events FILE for the demo)"
            )
        }
        var environment: [String: String] = [:]
        for match in text.matches(of: /\$\{([A-Z0-9_]+)\}/) {
            environment[String(match.1)] = Self.placeholder(for: String(match.1))
        }
        do {
            let config = try RoutingConfig.parse(
                text, file: path, directory: URL(fileURLWithPath: path).deletingLastPathComponent().path,
                registry: .standard, environment: environment)
            for warning in config.warnings { printError("warning: \(warning)") }
            return config
        } catch let issues as ConfigIssues {
            for issue in issues.issues { printError("error: \(issue)") }
            throw ExitCode(ExitCodes.badInput)
        }
    }

    /// A placeholder key (never a real one) for `variable`: the placeholder of the provider kind
    /// the variable is named after (`STRIPE_SECRET_KEY`), which its adapter accepts in form.
    static func placeholder(for variable: String) -> String {
        let registry = ProviderRegistry.standard
        let kind = registry.names.sorted { $0.count > $1.count }.first {
            variable.uppercased().contains($0.uppercased())
        }
        return kind.flatMap(registry.kind)?.tools.placeholderSecret ?? ProviderTools().placeholderSecret
    }
}
