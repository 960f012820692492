import Foundation
import UsageBilling
import UsageBillingProviders
import UsageRouting
import UsageSpool
import UsageTestSupport

/// Tail tolerance as a user's worker sees it: for a Stripe v1 lane (live key, its default pace,
/// 50 customers) and an Orb lane (10 events per request), `count` events are recorded in a
/// spool, then drained by a fresh `usage-billing worker --until-empty` process against a
/// `usage-billing emulate` process with each fault plan: none, `429=0.05`, `timeout=0.002` (one
/// request in 500 applied and never answered), and a mix of them. Every plan runs `runs` times
/// (a fresh emulator, spool and worker each time); goodput is the fault-free median drain time
/// over the run's, reported as the median with the range. Each run checks at the emulator that
/// every event was billed once with the right total, and throws if one was not.
func tailBenchmark(count: Int, options: Options) async throws {
    let binary = try cliBinary()
    let dir = FileManager.default.temporaryDirectory.appending(path: "ub-tails-\(UUID().uuidString.prefix(8))").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }  // `main` returns normally (no exit()), so this runs
    let runs = max(1, options.repeats == 1 ? 3 : options.repeats)
    // The last row turns hedging off: what the hung requests cost without it (each holds its
    // slot, and on Stripe its customer, for the whole request timeout).
    let plans: [(name: String, spec: String, extra: String)] = [
        ("none", "", ""), ("429=0.05", "429=0.05", ""), ("timeout=0.002", "timeout=0.002", ""),
        ("mixed", "429=0.05,500=0.05,reset=0.02,timeout=0.002", ""),
        ("timeout=0.002, hedge: false", "timeout=0.002", ", hedge: false"),
    ]
    let lanes: [(kind: String, settings: String, key: (String, String))] = [
        (
            "stripe", "secret_key: ${STRIPE_SECRET_KEY}",
            ("STRIPE_SECRET_KEY", "sk_live_" + String(repeating: "b3", count: 12))
        ),
        (
            "orb", "api_key: ${ORB_API_KEY}, max_batch_size: 10, events_per_minute: 100000000",
            ("ORB_API_KEY", "orb_" + String(repeating: "b3", count: 12))
        ),
    ]
    struct Row { var lane: String; var plan: String; var seconds: [Double]; var requests: Int; var injected: Int }
    var rows: [Row] = []
    for lane in lanes where options.only.isEmpty || options.only.contains(lane.kind) {
        for (name, spec, extra) in plans {
            var row = Row(lane: lane.kind, plan: name, seconds: [], requests: 0, injected: 0)
            for run in 1...runs {
                let result = try await tailRun(
                    binary: binary, dir: dir, tag: "\(lane.kind)-\(rows.count)-\(run)", kind: lane.kind,
                    settings: lane.settings + extra, key: lane.key, spec: spec, seed: UInt64(6 + run), count: count)
                row.seconds.append(result.seconds)
                row.requests += result.requests
                row.injected += result.injected
                print(
                    "  \(lane.kind) \(name) run \(run): \(count) events in \(String(format: "%.2f", result.seconds)) s, \(result.requests) requests, \(result.injected) faults injected"
                )
            }
            rows.append(row)
        }
    }
    func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.count % 2 == 1
            ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }
    func percent(_ value: Double) -> String { String(format: "%.0f%%", value * 100) }
    print(
        "Tail tolerance: \(count) events per run, drained by a fresh `usage-billing worker --until-empty` process against a `usage-billing emulate` process; \(runs) runs per plan (\(ProcessInfo.processInfo.activeProcessorCount) cores)"
    )
    print(
        "| lane | faults | drained in (median, range) | goodput vs no faults (median, range) | requests per run | faults injected per run | billed once, totals agree |"
    )
    print("|---|---|---:|---:|---:|---:|---|")
    var json: [JSONValue] = []
    for row in rows {
        let base = median(rows.first { $0.lane == row.lane && $0.plan == "none" }?.seconds ?? row.seconds)
        let goodputs = row.seconds.map { base / $0 }
        let seconds =
            "\(String(format: "%.2f", median(row.seconds))) s (\(String(format: "%.2f", row.seconds.min() ?? 0))–\(String(format: "%.2f", row.seconds.max() ?? 0)))"
        let goodput = "\(percent(median(goodputs))) (\(percent(goodputs.min() ?? 0))–\(percent(goodputs.max() ?? 0)))"
        print(
            "| \(row.lane) | \(row.plan) | \(seconds) | \(goodput) | \(row.requests / runs) | \(row.injected / runs) | yes |"
        )
        json.append(
            .object([
                "lane": .string(row.lane), "faults": .string(row.plan),
                "seconds": .array(row.seconds.map { .number(($0 * 100).rounded() / 100) }),
                "goodput_median": .number((median(goodputs) * 100).rounded() / 100),
                "goodput_min": .number(((goodputs.min() ?? 0) * 100).rounded() / 100),
                "goodput_max": .number(((goodputs.max() ?? 0) * 100).rounded() / 100),
                "requests_per_run": .number(Double(row.requests / runs)),
                "injected_per_run": .number(Double(row.injected / runs)),
            ]))
    }
    if let path = options.jsonPath {
        try JSONValue.object([
            "events": .number(Double(count)), "runs_per_plan": .number(Double(runs)), "rows": .array(json),
        ]).encoded().write(to: URL(fileURLWithPath: path))
        print("wrote \(path)")
    }
}

/// One run: an emulator process with `spec`, `count` events recorded, one worker process timed
/// from its start to its exit, then the emulator's ledger checked.
private func tailRun(
    binary: String, dir: String, tag: String, kind: String, settings: String, key: (String, String), spec: String,
    seed: UInt64,
    count: Int
) async throws -> (seconds: Double, requests: Int, injected: Int) {
    let environment = ProcessInfo.processInfo.environment.merging([key.0: key.1]) { $1 }
    let emulatorLog = "\(dir)/\(tag)-emulator.log"
    var emulatorArguments = ["emulate", "--port", "0", "--seed", "\(seed)"]
    if !spec.isEmpty { emulatorArguments += ["--faults", "\(kind):\(spec)"] }
    let emulator = try ChildProcess.spawn(
        binary, emulatorArguments, environment: environment, directory: dir, outputFile: emulatorLog)
    defer { emulator.kill(SIGKILL) }
    var endpoints: String?
    var base: String?
    _ = try await eventually(within: .seconds(30)) {
        let text = (try? String(contentsOfFile: emulatorLog, encoding: .utf8)) ?? ""
        for line in text.split(separator: "\n") where line.hasPrefix("  \(kind): { ") {
            let rest = line.dropFirst("  \(kind): { ".count)
            endpoints = rest.range(of: " }").map { String(rest[..<$0.lowerBound]) }
        }
        if let range = text.range(of: #"http://127\.0\.0\.1:\d+"#, options: .regularExpression) {
            base = String(text[range])
        }
        return (endpoints != nil && base != nil) || !emulator.isRunning
    }
    guard let endpoints, let base else {
        throw UsageBillingError(
            .unexpectedResponse,
            "the emulator did not start: " + ((try? String(contentsOfFile: emulatorLog, encoding: .utf8)) ?? ""))
    }
    let configPath = "\(dir)/\(tag).yaml"
    let configText = """
        version: 1
        providers:
          \(kind): { kind: \(kind), \(settings), \(endpoints) }
        routes:
          - { events: [api_request], to: \(kind) }
        """
    try Data(configText.utf8).write(to: URL(fileURLWithPath: configPath))
    let config = try RoutingConfig.parse(
        configText, file: configPath, directory: dir, registry: .standard, environment: environment)
    let router = try Router(config: config, client: DryRunHTTPClient(keep: 0, secrets: []))
    let spoolPath = "\(dir)/\(tag).spool"
    let now = Date()
    var total = Decimal(0)
    do {
        let spool = try Spool(path: spoolPath)
        for start in stride(from: 0, to: count, by: 1_000) {
            let events = (start..<min(count, start + 1_000)).map { i in
                UsageEvent(
                    id: "tail-\(tag)-\(i)", name: "api_request", customer: "cus_\(i % 50)",
                    timestamp: now.addingTimeInterval(-60), quantity: Decimal(i % 9 + 1))
            }
            total += events.reduce(Decimal(0)) { $0 + $1.quantity }
            try await spool.record(try UsagePipeline.entries(events, router: router))
        }
    }
    let workerLog = "\(dir)/\(tag)-worker.log"
    let started = ContinuousClock.now
    let worker = try ChildProcess.spawn(
        binary, ["worker", "-c", configPath, "--spool", spoolPath, "--until-empty"], environment: environment,
        directory: dir, outputFile: workerLog)
    let status = await worker.exitStatus()
    let seconds = (ContinuousClock.now - started).seconds
    guard status == 0 else {
        throw UsageBillingError(
            .unexpectedResponse,
            "the worker exited \(status): " + ((try? String(contentsOfFile: workerLog, encoding: .utf8)) ?? ""))
    }
    let (_, body) = try await ChildProcess.run(
        "/usr/bin/env", ["curl", "-s", base + "/_emulator/stats"], environment: environment, directory: dir)
    let stats = JSONValue.parse(Data(body.utf8))?["providers"]?[kind]
    let accepted = Int(stats?["accepted"]?.numberValue ?? -1), keys = Int(stats?["distinct_keys"]?.numberValue ?? -1)
    let billed = stats?["quantity"]?.stringValue.flatMap(DecimalFormat.parse)
    guard accepted == count, keys == count, billed == total else {
        throw UsageBillingError(
            .unexpectedResponse,
            "\(tag): billed \(accepted) usages with \(keys) distinct ids and total \(billed.map(DecimalFormat.plain) ?? "?") for \(count) events totalling \(DecimalFormat.plain(total)): an event was billed twice or lost"
        )
    }
    var injected = 0
    if case .object(let counts)? = stats?["injected"] {
        injected = counts.values.reduce(0) { $0 + Int($1.numberValue ?? 0) }
    }
    return (seconds, Int(stats?["requests"]?.numberValue ?? 0), injected)
}

/// The `usage-billing` binary built beside this benchmark (`swift build -c release` builds both).
func cliBinary() throws -> String {
    let here = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    let path = here.appending(path: "usage-billing").path
    guard FileManager.default.isExecutableFile(atPath: path) else {
        throw UsageBillingError(
            .configuration, "--tails runs the worker and the emulator as processes, and there is no \(path)",
            fix:
                "build it beside the benchmark first: swift build --package-path Benchmarks -c release --product usage-billing"
        )
    }
    return path
}
