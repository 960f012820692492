import Foundation
import UsageBilling
import UsageBillingCurl
import UsageBillingProviders
import UsageEmulator
import UsageReconciliation
import UsageRouting
import UsageSpool

/// The demo, as a library: a routing config and its events against the built-in emulator of
/// every provider, through a spool, the worker and libcurl, with injected faults; then each
/// provider's totals read back through its own API and compared with what was recorded.
/// `usage-billing demo` prints what this returns.
public enum DemoRun {
    /// What a demo run found.
    public struct Outcome: Sendable {
        /// Every provider's totals against the ledger's, per customer, meter and UTC day.
        public var report: ReconcileReport
        /// The range the report covers.
        public var from: Date
        public var to: Date
        /// The ledger's lanes after the run.
        public var lanes: [LaneStatus]
        /// Providers whose ledger total differs from what the events route to them:
        /// (expected, in the ledger).
        public var lost: [String: (expected: Decimal, inLedger: Decimal)]
        /// Requests the emulator answered, per provider, and the failures it injected.
        public var requests: [String: Int]
        public var injected: Int
        /// How long recording and draining the spool took.
        public var elapsed: Duration
        /// The event the demo voided after delivery, as the ledger holds its correction then.
        public var voided: CorrectionRecord?
        /// The event the demo amended after delivery.
        public var amended: AmendResult?

        public var deadLetters: Int { lanes.map { $0.dead.values.reduce(0, +) }.reduce(0, +) }
        public var queued: Int { lanes.map(\.queued).reduce(0, +) }
        /// Every provider reports exactly what was recorded, nothing is dead or queued.
        public var passed: Bool {
            report.isClean && lost.isEmpty && deadLetters == 0 && queued == 0
                && (voided?.lanes.values.allSatisfy { $0 == .applied } ?? true)
                && (amended?.correction.lanes.values.allSatisfy { $0 == .applied } ?? true)
        }
    }

    /// Runs the demo. `events` are moved later by whole days so the newest is a few hours old
    /// (providers take recent events only); `say` hears each step as it happens.
    /// - Parameters:
    ///   - faults: the share of write requests the emulator fails (0…0.5), spread over 429,
    ///     5xx, resets and requests applied but never answered.
    ///   - seed: the faults' seed: the same seed fails the same requests.
    public static func run(
        config original: RoutingConfig, events loaded: [UsageEvent], faults: Double, seed: UInt64,
        say: @Sendable (String) -> Void = { _ in }
    ) async throws -> Outcome {
        guard (0...0.5).contains(faults) else {
            throw UsageBillingError(.invalidInput, "the fault share \(faults) is out of range", fix: "use 0 to 0.5")
        }
        guard let latest = loaded.map(\.timestamp).max() else {
            throw UsageBillingError(.invalidInput, "there are no events", fix: "add one JSON event per line")
        }
        let shiftDays = (Date().addingTimeInterval(-3 * 3600).timeIntervalSince(latest) / 86_400).rounded(.down)
        let recorded = loaded.map { event -> UsageEvent in
            var e = event
            e.timestamp = event.timestamp.addingTimeInterval(shiftDays * 86_400)
            return e
        }
        var routing = original
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
        say("UsageBilling demo: \(routing.file) → the built-in emulator at \(emulator.baseURL)")
        say(
            "Providers: "
                + routing.providers.keys.sorted().map { "\($0) (\(routing.providers[$0]?.kind.name ?? "?"))" }
                .joined(separator: ", "))
        say("Loaded \(recorded.count) events, moved \(Int(shiftDays)) day(s) later so every provider takes them.")
        if faults > 0 {
            say(
                "The emulator fails \(Int(faults * 100))% of write requests (429, 500/503, resets, lost responses; seed \(seed))."
            )
        }
        do {
            let outcome = try await deliverAndReconcile(recorded, routing: routing, client: client, emulator: emulator)
            await emulator.shutdown()
            return outcome
        } catch {
            await emulator.shutdown()
            throw error
        }
    }

    private static func deliverAndReconcile(
        _ recorded: [UsageEvent], routing: RoutingConfig, client: CurlHTTPClient, emulator: UsageEmulator
    ) async throws -> Outcome {
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
        // One delivered event turns out wrong: voided, and the worker takes it back at every
        // provider that has it, each its own way. The first event whose lanes all take a void
        // as a request of their own (windowed lanes fold it into a revision instead).
        let takesCorrections = { (event: UsageEvent) -> Bool in
            guard let d = routing.decide(event) else { return false }
            return ([d.primary] + d.shadows).allSatisfy { provider in
                pipeline.router.lanes.filter { $0.provider == provider }.contains { lane in
                    pipeline.router.sink(for: lane).map {
                        $0 is any CorrectionSink && $0.capabilities.aggregation == nil
                    }
                        ?? false
                }
            }
        }
        let correctable = recorded.filter(takesCorrections)
        let voidable = correctable.first
        // Another turns out metered in the wrong unit: amended to twice its quantity.
        let amendable = correctable.dropFirst().first
        var voided: CorrectionRecord?, amended: AmendResult?
        if let voidable {
            _ = try await pipeline.void([voidable.id], reason: "demo: a duplicate from a retry loop")
        }
        if let amendable {
            amended = try await pipeline.amend(
                amendable.id, quantity: amendable.quantity * 2, reason: "demo: metered in the wrong unit")
        }
        if voidable != nil || amendable != nil {
            try await pipeline.flush()
            if let voidable { voided = try await pipeline.spool.corrections(of: [voidable.id]).first }
            if let amendable, let latest = try await pipeline.spool.corrections(of: [amendable.id]).last,
                var result = amended
            {
                result.correction = latest
                amended = result
            }
        }
        // What each provider should bill, from the events and the routing decisions: the
        // spool's ledger must hold exactly this.
        var expected: [String: Decimal] = [:]
        for event in recorded where event.id != voidable?.id {
            guard let d = routing.decide(event) else { continue }
            let quantity =
                event.id == amendable?.id ? (amended?.replacement.quantity ?? event.quantity) : event.quantity
            for provider in [d.primary] + d.shadows { expected[provider, default: 0] += quantity }
        }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? calendar.timeZone
        let earliest = recorded.map(\.timestamp).min() ?? Date()
        let last = recorded.map(\.timestamp).max() ?? Date()
        let from = calendar.dateInterval(of: .month, for: earliest)?.start ?? earliest
        let to = calendar.dateInterval(of: .day, for: last)?.end ?? last
        let report = try await Reconciler(router: pipeline.router, spool: pipeline.spool, client: client)
            .run(ReconcileOptions(from: from, to: to, granularity: .day))
        var inLedger: [String: Decimal] = [:]
        for row in report.rows { inLedger[row.provider, default: 0] += row.recorded }
        var lost: [String: (expected: Decimal, inLedger: Decimal)] = [:]
        for (provider, total) in expected where inLedger[provider, default: 0] != total {
            lost[provider] = (total, inLedger[provider, default: 0])
        }
        let stats = emulator.statistics
        return Outcome(
            report: report, from: from, to: to, lanes: try await pipeline.spool.status(), lost: lost,
            requests: stats.requests, injected: stats.injected.values.flatMap(\.values).reduce(0, +), elapsed: elapsed,
            voided: voided, amended: amended)
    }

    /// The events of an NDJSON file. A bad line is an error naming it.
    public static func events(at path: String) throws -> [UsageEvent] {
        guard FileManager.default.fileExists(atPath: path) else {
            throw UsageBillingError(
                .invalidInput, "no events file at \(path)\(whereItLooks(path))",
                fix:
                    "run the demo from the repository root (where examples/ is), or pass --events FILE (one JSON event per line) and -c CONFIG"
            )
        }
        var loaded: [UsageEvent] = []
        let reader = try EventReader(path: path, format: .ndjson)
        while case let batch = reader.next(max: 1_000), !batch.isEmpty {
            for item in batch {
                switch item {
                case .success(let event): loaded.append(event)
                case .failure(let bad):
                    throw UsageBillingError(.invalidInput, "\(path) \(bad)", fix: "correct that line")
                }
            }
        }
        return loaded
    }

    /// The routing config at `path`, with a placeholder for every `${VAR}` it names: for runs
    /// against the emulator, which takes any key. Throws ``ConfigIssues`` for a bad config.
    public static func configWithPlaceholderKeys(_ path: String) throws -> RoutingConfig {
        guard let text = FileManager.default.contents(atPath: path).map({ String(decoding: $0, as: UTF8.self) }) else {
            throw UsageBillingError(
                .invalidInput, "cannot read the config \(path)\(whereItLooks(path))",
                fix:
                    "run from the repository root (where examples/ is), or pass -c CONFIG (and --events FILE for the demo)"
            )
        }
        var environment: [String: String] = [:]
        for match in text.matches(of: /\$\{([A-Z0-9_]+)\}/) {
            environment[String(match.1)] = placeholder(for: String(match.1))
        }
        return try RoutingConfig.parse(
            text, file: path, directory: URL(fileURLWithPath: path).deletingLastPathComponent().path,
            registry: .standard, environment: environment)
    }

    /// ` (looked for in DIR)` for a relative path: the directory it was looked up in.
    static func whereItLooks(_ path: String) -> String {
        path.hasPrefix("/") ? "" : " (looked for in \(FileManager.default.currentDirectoryPath))"
    }

    /// A placeholder key (never a real one) for `variable`: the placeholder of the provider kind
    /// the variable is named after (`STRIPE_SECRET_KEY`), which its adapter accepts in form.
    public static func placeholder(for variable: String) -> String {
        let registry = ProviderRegistry.standard
        let kind = registry.names.sorted { $0.count > $1.count }.first {
            variable.uppercased().contains($0.uppercased())
        }
        return kind.flatMap(registry.kind)?.tools.placeholderSecret ?? ProviderTools().placeholderSecret
    }
}
