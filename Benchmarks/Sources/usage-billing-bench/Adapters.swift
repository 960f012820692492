import CCurl
import Foundation
import UsageBilling
import UsageBillingCurl
import UsageBillingProviders
import UsageEmulator
import UsageRouting
import UsageSpool
import UsageTestSupport

/// One adapter's end-to-end run: spool → worker → curl → emulator.
struct AdapterRun {
    var kind: String
    var events: Int
    var requests: Int
    var recordSeconds: Double
    var deliverSeconds: Double
    var sdkEventsPerSecond: Double?
    var totalsAgree: Bool
    /// Delivered events/s of every trial (the figures above are the median trial's).
    var trials: [Double] = []
    /// The SDK's events/s measured right after each trial, and each trial's rate over it.
    var sdkTrials: [Double] = []
    var sdkRatios: [Double] = []
    /// The median of the per-trial ratios: each trial against the SDK run that followed it, so
    /// the machine's speed (it drifts by a third within a minute here) is the same on both sides.
    var sdkRatio: Double? { sdkRatios.isEmpty ? nil : sdkRatios.sorted()[sdkRatios.count / 2] }
    var eventsPerSecond: Double { Double(events) / deliverSeconds }
    var requestsPerSecond: Double { Double(requests) / deliverSeconds }
}

/// `curl_easy_perform` in a loop on one reused handle, POSTing Stripe v1 meter events (a new
/// identifier each) to the emulator: the raw libcurl ceiling for one request at a time.
func plainCurlStripe(base: String, count: Int) -> Double {
    let stamp = Int(Date().timeIntervalSince1970) - 60
    return plainCurl(
        url: base + "/stripe/v1/billing/meter_events", count: count, headers: ["Authorization: Bearer sk_test_REDACTED"]
    ) { i in
        "event_name=bench_raw&payload%5Bstripe_customer_id%5D=cus_raw&payload%5Bvalue%5D=\(i % 9 + 1)&identifier=raw-\(i)&timestamp=\(stamp)"
    }
}

/// The official Python SDK of `kind` sending `count` events, one call each, to the emulator.
func pythonSDK(kind: String, base: String, count: Int) -> Double? {
    let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appending(
        path: "python/sdk_bench.py"
    ).path
    // Spawned as the tests spawn programs (posix_spawn, descriptors closed in the child), not
    // with Foundation's Process, which crashed once among many sockets opening and closing.
    guard let child = try? ChildProcess.spawn("/usr/bin/env", ["python3", script, kind, base, String(count)]) else {
        return nil
    }
    let output = String(decoding: child.readOutput(), as: UTF8.self)  // stdout and stderr together
    guard child.waitForExit() == 0 else {
        print(
            "  (\(kind): the Python SDK run failed; install the SDKs: pip install stripe orb-billing metronome-sdk openmeter==1.0.0b236 chargebee recurly paddle-python-sdk)"
        )
        return nil
    }
    // The result is the script's last JSON line; a warning the SDK prints goes before it.
    if let reason = output.split(separator: "\n").reversed().lazy.compactMap({
        JSONValue.parse(Data($0.utf8))?["no_sdk"]?.stringValue
    }).first {
        print("  (\(kind): no Python SDK row: \(reason))")
        return nil
    }
    return output.split(separator: "\n").reversed().lazy.compactMap {
        JSONValue.parse(Data($0.utf8))?["events_per_second"]?.numberValue
    }.first
}

/// For each adapter: N events recorded into a fresh spool and delivered by the worker through
/// curl to the in-process emulator; the raw libcurl rate against the same emulator as ceiling;
/// optionally the official Python SDK sending `pythonEvents` events one call at a time.
func adaptersBenchmark(count: Int, stripeCount: Int, pythonEvents: Int, only: [String], repeats: Int, jsonPath: String?)
    async throws
{
    let dir = FileManager.default.temporaryDirectory.appending(path: "ub-adapters-bench-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let emulator = try await UsageEmulator.start()
    let base = emulator.baseURL
    _ = plainCurlStripe(base: base, count: 200)  // warm-up
    let rawCount = max(2_000, stripeCount)
    let raw = Double(rawCount) / plainCurlStripe(base: base, count: rawCount)

    let client = try CurlHTTPClient()
    defer { client.shutdown() }
    var runs: [AdapterRun] = []
    // Each adapter with its emulation's test settings (placeholder keys, rate limits raised for
    // loopback), so a provider added to the registry is benchmarked with no line here.
    let settings = Dictionary(UsageEmulator.standard.map { ($0.kind, $0.adapterSettings) }) { first, _ in first }
    // 64 customers: Stripe v1 takes one call at a time per customer and meter, so the number of
    // customers bounds its requests in flight (8 here, the sink's limit). Each trial has its own
    // (its windows would otherwise be the same records as the last trial's).
    let customers = (0..<64).map { "customer-\($0)" }
    // Each adapter, plus Stripe's v2 stream (up to 100 events per request) and OpenMeter's v3 API
    // (Kong Konnect) as rows of their own.
    let apis = ["stripe_stream": "v2_stream", "openmeter_v3": "v3"]
    let variants: [(label: String, kind: String)] = UsageEmulator.kinds.flatMap { kind in
        [(kind, kind)] + apis.keys.sorted().filter { $0.hasPrefix(kind + "_") }.map { ($0, kind) }
    }
    for (label, kind) in variants where only.isEmpty || only.contains(label) {
        let n = label == "stripe" ? stripeCount : count
        let api = apis[label].map { ", api: \($0)" } ?? ""
        var trials: [AdapterRun] = []
        for trial in 0..<max(1, repeats) {
            // Each trial has an emulator of its own, so every trial starts from the same state:
            // with one shared emulator, the ledger and idempotency keys of earlier trials (it
            // keeps every accepted event) made later trials slower (Orb: 66k events/s in the
            // first trial, 50k in the next two).
            let trialEmulator = try await UsageEmulator.start()
            let endpoint = (trialEmulator.endpoints[kind] ?? [:]).sorted { $0.key < $1.key }.map {
                "\($0.key): \"\($0.value)\""
            }.joined(separator: ", ")
            let config = try RoutingConfig.parse(
                """
                version: 1
                providers:
                  \(kind): { kind: \(kind), \(settings[kind] ?? "")\(api), \(endpoint) }
                routes:
                  - { events: [bench_\(kind)], to: \(kind) }
                """, file: "bench.yaml", directory: dir, registry: .standard, environment: [:])
            let pipeline = try UsagePipeline(
                config: config, spoolPath: "\(dir)/\(label)-\(trial).spool", client: client)
            let now = Date()
            var events: [UsageEvent] = []
            events.reserveCapacity(n)
            for i in 0..<n {
                let at: Date = now.addingTimeInterval(-60 - Double(i % 3_000))
                let quantity = Decimal(i % 9 + 1)
                events.append(
                    UsageEvent(
                        id: "bench-\(label)-\(trial)-\(i)", name: "bench_\(kind)",
                        customer: "\(customers[i % customers.count])-t\(trial)", timestamp: at, quantity: quantity))
            }
            let recordStart = ContinuousClock.now
            for chunk in stride(from: 0, to: n, by: 1_000) {
                try await pipeline.record(Array(events[chunk..<min(n, chunk + 1_000)]))
            }
            let recordSeconds = (ContinuousClock.now - recordStart).seconds
            let cpuBefore = threadCPU(), machineBefore = machineCPU()
            let commitsBefore = (pipeline.spool as? Spool)?.commitStatistics ?? (transactions: 0, calls: 0)
            let connectionsBefore = client.diagnostics.connectionsOpened
            let deliverStart = ContinuousClock.now
            try await pipeline.flush()
            let deliverSeconds = (ContinuousClock.now - deliverStart).seconds
            let commits = (pipeline.spool as? Spool)?.commitStatistics ?? (transactions: 0, calls: 0)
            let transactions = commits.transactions - commitsBefore.transactions,
                calls = commits.calls - commitsBefore.calls
            do {
                print(
                    "  \(label) trial \(trial): delivery \(cpuSummary(cpuBefore, threadCPU(), seconds: deliverSeconds)); \(transactions) commits of \(calls) calls; \(client.diagnostics.connectionsOpened - connectionsBefore) connections opened; \(stealSummary(machineBefore, machineCPU()))"
                )
            }
            let requests = trialEmulator.requests(kind)
            let accepted = await trialEmulator.accepted(kind).reduce(Decimal(0)) { $0 + $1.quantity }
            await trialEmulator.shutdown()
            let recorded = events.reduce(Decimal(0)) { $0 + $1.quantity }
            var run = AdapterRun(
                kind: label, events: n, requests: requests, recordSeconds: recordSeconds,
                deliverSeconds: deliverSeconds,
                sdkEventsPerSecond: nil, totalsAgree: accepted == recorded)
            // The SDK right after the trial, against the shared emulator: a ratio of two rates
            // measured a minute apart moved with the machine's speed (14× and 25× in two runs).
            if pythonEvents > 0, let sdk = pythonSDK(kind: label, base: base, count: pythonEvents) {
                print(
                    "  \(label) trial \(trial): Python SDK \(String(format: "%.0f", sdk)) events/s right after (\(String(format: "%.1f", run.eventsPerSecond / sdk))×)"
                )
                run.sdkEventsPerSecond = sdk
            }
            trials.append(run)
        }
        // The median trial: one noisy moment on a shared machine moves a single trial by ±20%.
        var run = trials.sorted { $0.eventsPerSecond < $1.eventsPerSecond }[trials.count / 2]
        run.trials = trials.map(\.eventsPerSecond)
        run.totalsAgree = trials.allSatisfy(\.totalsAgree)
        run.sdkTrials = trials.compactMap(\.sdkEventsPerSecond)
        run.sdkRatios = trials.compactMap { t in t.sdkEventsPerSecond.map { t.eventsPerSecond / $0 } }
        run.sdkEventsPerSecond = run.sdkTrials.isEmpty ? nil : run.sdkTrials.sorted()[run.sdkTrials.count / 2]
        runs.append(run)
    }
    let mem = memory()
    await emulator.shutdown()

    func f(_ v: Double) -> String { String(format: "%.0f", v) }
    print(
        "Adapters end to end (spool → worker → CurlHTTPClient → emulator, in one process; \(ProcessInfo.processInfo.activeProcessorCount) cores; median of \(max(1, repeats)) trial(s), range in brackets)"
    )
    print(
        "raw libcurl ceiling: \(f(raw)) requests/s (curl_easy_perform loop, Stripe v1 meter events to the same emulator)"
    )
    print(
        "| adapter | events | requests | delivered events/s | requests/s | requests/s ÷ raw libcurl | record events/s | Python SDK events/s | × SDK | totals |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in runs {
        let sdk = r.sdkEventsPerSecond.map(f) ?? "–"
        let times = r.sdkRatio.map { String(format: "%.1f×", $0) } ?? "–"
        let spread = r.trials.count > 1 ? " (\(f(r.trials.min() ?? 0))–\(f(r.trials.max() ?? 0)))" : ""
        print(
            "| \(r.kind) | \(r.events) | \(r.requests) | \(f(r.eventsPerSecond))\(spread) | \(f(r.requestsPerSecond)) | \(String(format: "%.2f", r.requestsPerSecond / raw)) | \(f(Double(r.events) / r.recordSeconds)) | \(sdk) | \(times) | \(r.totalsAgree ? "agree" : "DISAGREE") |"
        )
    }
    if runs.contains(where: { $0.sdkRatio != nil }) {
        print(
            "× SDK: each trial's events/s over the SDK's in the run right after that trial; the median of the trials' ratios"
        )
    }
    print("peak RSS: \(mem.peak / 1024) MiB")
    if let jsonPath {
        try JSONValue.object([
            "raw_libcurl_requests_per_second": .number(raw.rounded()), "peak_rss_kib": .number(Double(mem.peak)),
            "adapters": .array(
                runs.map { r in
                    .object([
                        "adapter": .string(r.kind), "events": .number(Double(r.events)),
                        "requests": .number(Double(r.requests)),
                        "events_per_second": .number(r.eventsPerSecond.rounded()),
                        "requests_per_second": .number(r.requestsPerSecond.rounded()),
                        "ratio_to_raw_libcurl": .number((r.requestsPerSecond / raw * 100).rounded() / 100),
                        "record_events_per_second": .number((Double(r.events) / r.recordSeconds).rounded()),
                        "python_sdk_events_per_second": r.sdkEventsPerSecond.map { .number($0) } ?? .null,
                        "python_sdk_trials_events_per_second": .array(r.sdkTrials.map { .number($0) }),
                        "times_python_sdk": r.sdkRatio.map { .number(($0 * 10).rounded() / 10) } ?? .null,
                        "trials_times_python_sdk": .array(r.sdkRatios.map { .number(($0 * 10).rounded() / 10) }),
                        "totals_agree": .bool(r.totalsAgree),
                        "trials_events_per_second": .array(r.trials.map { .number($0.rounded()) }),
                    ])
                }),
        ]).encoded().write(to: URL(fileURLWithPath: jsonPath))
        print("wrote \(jsonPath)")
    }
    if runs.contains(where: { !$0.totalsAgree }) {
        throw UsageBillingError(.unexpectedResponse, "an adapter's totals disagree with what was recorded")
    }
}
