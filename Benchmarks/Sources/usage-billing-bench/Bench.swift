// usage-billing-bench: HTTP client throughput against a loopback server, and import throughput
// and memory, as tables and JSON.
//
//   swift run --package-path Benchmarks -c release usage-billing-bench [--requests N] [--concurrency C] [--leak-check N] [--json PATH]
//   swift run --package-path Benchmarks -c release usage-billing-bench --import N [--json PATH]
//   swift run --package-path Benchmarks -c release usage-billing-bench --spool N [--json PATH]
//   swift run --package-path Benchmarks -c release usage-billing-bench --adapters N [--stripe-events N] [--python M] [--json PATH]
//   swift build --package-path Benchmarks -c release --product usage-billing --product usage-billing-bench \
//     && Benchmarks/.build/release/usage-billing-bench --tails N [--only stripe,orb] [--repeat R] [--json PATH]
//   swift run --package-path Benchmarks -c release usage-billing-bench --aggregate-seconds 60 [--json PATH]
//
// --import N writes N NDJSON events to a temporary file and imports them through the example
// routing config (examples/routing.yaml: Stripe primary + Orb shadow for api_request, OpenMeter
// for storage_*) with a dry-run client, as `usage-billing import --dry-run` does, printing
// events/s and peak RSS.
//
// Measures, in one run and against the same loopback server:
//   1. CurlHTTPClient, sequential POSTs (one in flight)
//   2. CurlHTTPClient, C concurrent POSTs (default 32 in flight)
//   3. plain libcurl: curl_easy_perform in a loop on one reused easy handle (the ceiling for 1)
// and prints requests/s for each, the ratios 1/3 and 2/3, and peak RSS. With --leak-check N it
// also sends N more requests and reports RSS growth (flat RSS = no per-request leak).
import ArgumentParser
import CCurl
import Foundation
import UsageBilling
import UsageBillingCurl
import UsageBillingProviders
import UsageRouting
import UsageSpool
import UsageTestSupport

/// What one run measures and how; filled from the command line by ``Bench``.
struct Options {
    var requests = 5_000
    var concurrency = 32
    var leakCheck = 0
    var jsonPath: String?
    var importEvents = 0
    var spoolEvents = 0
    var ledgerEvents = 0
    var tailEvents = 0
    var aggregateSeconds = 0
    var adapterEvents = 0
    var stripeEvents = 10_000
    var pythonEvents = 0
    var only: [String] = []
    var deliverOnly = false
    var repeats = 1
    var recordOnly = false
    var durabilities: [SpoolDurability] = SpoolDurability.allCases.reversed()
    var recordCases: [(Int, Int)] = [(1, 1), (16, 1), (16, 100)]
    /// Event ids in the record rows: `sequences` (each writer numbers its own, so 16 writers
    /// insert into 16 places of the id index) and/or `uuidv7` (the default id, `EventID.generate()`
    /// when the event is made: time-ordered, so every writer appends near one place).
    var idKinds: [String] = ["sequences", "uuidv7"]
}

/// Peak and current resident set size from /proc/self/status, in KiB.
func memory() -> (peak: Int, current: Int) {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return (0, 0) }
    func field(_ name: String) -> Int {
        text.split(separator: "\n").first { $0.hasPrefix(name) }?
            .split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) } ?? 0
    }
    return (field("VmHWM:"), field("VmRSS:"))
}

let body = Data(
    #"event_name=api_requests&payload[stripe_customer_id]=cus_123&payload[value]=5&identifier=bench&timestamp=1795176000"#
        .utf8)
let responseBody = Data(#"{"object":"billing.meter_event","livemode":false}"#.utf8)

func request(_ base: String, _ i: Int) -> HTTPRequest {
    HTTPRequest(
        method: .post, url: base + "/v1/billing/meter_events",
        headers: ["Content-Type": "application/x-www-form-urlencoded", "Idempotency-Key": "bench-\(i)"], body: body)
}

func timed(_ work: () async throws -> Void) async rethrows -> Double {
    let start = ContinuousClock.now
    try await work()
    return (ContinuousClock.now - start).seconds
}

/// curl_easy_perform in a loop on one easy handle: the raw libcurl ceiling. `body(i)` is the
/// i-th request's form body (nil: the same `body` every time). Returns the seconds taken, 0 on a failure.
func plainCurl(url: String, count: Int, headers: [String] = [], body form: ((Int) -> String)? = nil) -> Double {
    curl_global_init(Int(CURL_GLOBAL_DEFAULT))
    guard let easy = curl_easy_init() else { return 0 }
    defer { curl_easy_cleanup(easy) }
    let discard: ub_curl_data_callback = { _, size, count, _ in size * count }
    var list: UnsafeMutablePointer<curl_slist>?
    for header in ["Content-Type: application/x-www-form-urlencoded", "Expect:"] + headers {
        list = curl_slist_append(list, header)
    }
    defer { curl_slist_free_all(list) }
    _ = ub_easy_setopt_string(easy, CURLOPT_URL, url)
    _ = ub_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1)
    _ = ub_easy_setopt_callback(easy, CURLOPT_WRITEFUNCTION, discard)
    _ = ub_easy_setopt_slist(easy, CURLOPT_HTTPHEADER, list)
    if form == nil {
        _ = ub_easy_setopt_off(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.count))
        body.withUnsafeBytes { raw in
            if let base = raw.baseAddress {
                _ = ub_easy_setopt_pointer(easy, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: base))
            }
        }
    }
    let start = ContinuousClock.now
    for i in 0..<count {
        if let form { _ = ub_easy_setopt_string(easy, CURLOPT_COPYPOSTFIELDS, form(i)) }
        if curl_easy_perform(easy) != CURLE_OK { return 0 }
    }
    return (ContinuousClock.now - start).seconds
}

/// Imports `count` generated events through the example routing config with a dry-run client.
func importBenchmark(count: Int, jsonPath: String?) async throws {
    let path = FileManager.default.temporaryDirectory.appending(path: "ub-bench-\(UUID().uuidString).ndjson").path
    _ = FileManager.default.createFile(atPath: path, contents: nil)
    guard let out = FileHandle(forWritingAtPath: path) else {
        throw UsageBillingError(.invalidInput, "cannot write \(path)")
    }
    defer { try? FileManager.default.removeItem(atPath: path) }
    let now = Date().timeIntervalSince1970
    var chunk = ""
    for i in 0..<count {
        let name = i % 4 == 3 ? "storage_gb_hours" : "api_request"
        let customer = ["acme", "globex", "initech"][i % 3]
        let stamp = RFC3339.format(Date(timeIntervalSince1970: now - Double(count - i) * 0.5 - 60))
        chunk +=
            #"{"id":"bench-\#(i)","name":"\#(name)","customer":"\#(customer)","timestamp":"\#(stamp)","quantity":"\#(i % 50 + 1)","properties":{"region":"eu-west"}}"#
            + "\n"
        if chunk.utf8.count > 1 << 20 { out.write(Data(chunk.utf8)); chunk = "" }
    }
    out.write(Data(chunk.utf8))
    try out.close()
    let fileMiB = ((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0) / (1 << 20)

    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    let config = try RoutingConfig.load(
        path: root.appending(path: "examples/routing.yaml").path, registry: .standard,
        environment: [
            "STRIPE_SECRET_KEY": "sk_test_REDACTED", "ORB_API_KEY": "orb_REDACTED", "OPENMETER_TOKEN": "om_REDACTED",
        ])
    let dry = DryRunHTTPClient(keep: 0, secrets: config.secretValues)
    let router = try Router(config: config, client: dry)
    let before = memory()
    let started = ContinuousClock.now
    let summary = await Importer(router: router, policy: .none, pace: false).run(
        try EventReader(path: path, format: .ndjson))
    let seconds = (ContinuousClock.now - started).seconds
    let after = memory()
    print(
        "Import of \(summary.events) NDJSON events (\(fileMiB) MiB file), dry run through examples/routing.yaml, \(ProcessInfo.processInfo.activeProcessorCount) cores"
    )
    print("| measurement | value |")
    print("|---|---:|")
    print("| events/s | \(String(format: "%.0f", Double(summary.events) / seconds)) |")
    print("| requests that would be sent | \(dry.requestCount) |")
    print("| wall time | \(String(format: "%.1f", seconds)) s |")
    print("| RSS before import | \(before.current / 1024) MiB |")
    print("| peak RSS | \(after.peak / 1024) MiB |")
    print(summary.describe())
    if let jsonPath {
        try JSONValue.object([
            "events": .number(Double(summary.events)),
            "events_per_second": .number((Double(summary.events) / seconds).rounded()),
            "requests": .number(Double(dry.requestCount)), "peak_rss_kib": .number(Double(after.peak)),
            "bad_lines": .number(Double(summary.badLines)),
        ]).encoded().write(to: URL(fileURLWithPath: jsonPath))
        print("wrote \(jsonPath)")
    }
}

/// `record` throughput (1 writer, 16 writers; normal and full durability) and end-to-end
/// spool → worker → libcurl → loopback delivery through a batching sink (OpenMeter, 100 per request).
func spoolBenchmark(count: Int, options: Options) async throws {
    let jsonPath = options.jsonPath
    let dir = FileManager.default.temporaryDirectory.appending(path: "ub-spool-bench-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let now = Date()
    func event(_ tag: String, _ i: Int) -> UsageEvent {
        UsageEvent(
            id: "\(tag)-\(i)", name: "api_request", customer: "acme", timestamp: now.addingTimeInterval(-60),
            quantity: Decimal(i % 9 + 1))
    }
    var rows: [(String, Double)] = []
    var spreads: [[Double]] = []  // every trial's figure, per row (the row shows the median)
    for durability in options.durabilities where !options.deliverOnly {
        for (writers, perCall) in options.recordCases {
            for ids in options.idKinds {
                var rates: [Double] = []
                for trial in 0..<options.repeats {
                    let spool = try Spool(
                        path: "\(dir)/\(durability.rawValue)-\(writers)-\(perCall)-\(ids)-\(trial).spool",
                        durability: durability)
                    let total = writers == 1 ? min(count, 20_000) : count
                    let perWriter = total / writers
                    let tag = "\(durability)-\(writers)-\(perCall)-\(ids)-\(trial)"
                    let uuids = ids == "uuidv7"
                    let cpuBefore = threadCPU(), machineBefore = machineCPU()
                    let started = ContinuousClock.now
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for w in 0..<writers {
                            group.addTask {
                                var i = 0
                                while i < perWriter {
                                    let n = min(perCall, perWriter - i)
                                    try await spool.record(
                                        (0..<n).map { k in
                                            var e = event(tag, w * perWriter + i + k)
                                            if uuids { e.id = EventID.generate() }
                                            return RecordEntry(event: e, lanes: ["openmeter/api_request"])
                                        })
                                    i += n
                                }
                            }
                        }
                        try await group.waitForAll()
                    }
                    let seconds = (ContinuousClock.now - started).seconds
                    rates.append(Double(perWriter * writers) / seconds)
                    let commits = spool.commitStatistics
                    print(
                        "  record \(tag): \(commits.calls) calls in \(commits.transactions) commits (\(String(format: "%.1f", Double(commits.calls) / Double(max(1, commits.transactions)))) per commit); \(cpuSummary(cpuBefore, threadCPU(), seconds: seconds)); \(stealSummary(machineBefore, machineCPU()))"
                    )
                }
                rows.append(
                    (
                        "record, \(durability.rawValue), \(writers) writer(s), \(perCall) event(s) per call, \(ids == "uuidv7" ? "UUIDv7 ids" : "ids in \(writers) sequence(s)")",
                        rates.sorted()[rates.count / 2]
                    ))
                spreads.append(rates)
            }
        }
    }

    if options.recordOnly {
        for ((name, rate), trials) in zip(rows, spreads) {
            print(
                "| \(name) | \(String(format: "%.0f", rate)) | \(trials.map { String(format: "%.0f", $0) }.joined(separator: ", ")) |"
            )
        }
        return
    }
    // End to end: spool → worker → curl → loopback server answering 204 (an OpenMeter stand-in).
    let server = try await LoopbackHTTPServer.start(threads: 1) { _ in .respond(HTTPResponse(status: 204)) }
    let config = try RoutingConfig.parse(
        """
        version: 1
        providers:
          openmeter: { kind: openmeter, api_key: om_REDACTED, endpoint: "\(server.baseURL)", max_batch_size: 100 }
        routes:
          - { events: [api_request], to: openmeter }
        """, file: "bench.yaml", directory: dir, registry: .standard, environment: [:])
    let client = try CurlHTTPClient()
    let e2e = count
    var deliveries: [(seconds: Double, requests: Int)] = []
    for trial in 0..<options.repeats {
        let pipeline = try UsagePipeline(config: config, spoolPath: "\(dir)/e2e-\(trial).spool", client: client)
        let recordStarted = ContinuousClock.now
        try await pipeline.record((0..<e2e).map { event("e2e-\(trial)", $0) })
        print(
            "recorded \(e2e) events for delivery in \(String(format: "%.2f", (ContinuousClock.now - recordStarted).seconds)) s"
        )
        let before = server.requestsReceived
        let cpuBefore = threadCPU(), machineBefore = machineCPU()
        let started = ContinuousClock.now
        try await pipeline.flush()
        deliveries.append(((ContinuousClock.now - started).seconds, server.requestsReceived - before))
        print(
            "  delivery trial \(trial): \(cpuSummary(cpuBefore, threadCPU(), seconds: deliveries[deliveries.count - 1].seconds)); \(stealSummary(machineBefore, machineCPU()))"
        )
    }
    let (seconds, requests) = deliveries.sorted { $0.seconds < $1.seconds }[deliveries.count / 2]
    spreads.append(deliveries.map { Double(e2e) / $0.seconds })
    client.shutdown()
    await server.shutdown()
    rows.append(("deliver spool → worker → curl → loopback (100 per request)", Double(e2e) / seconds))

    let mem = memory()
    print(
        "Spool benchmark, \(count) events per concurrent case (\(ProcessInfo.processInfo.activeProcessorCount) cores; median of \(options.repeats) trial(s), range in brackets)"
    )
    print("| measurement | events/s |")
    print("|---|---:|")
    for ((name, rate), trials) in zip(rows, spreads) {
        let range =
            trials.count > 1
            ? " (\(String(format: "%.0f", trials.min() ?? 0))–\(String(format: "%.0f", trials.max() ?? 0)))" : ""
        print("| \(name) | \(String(format: "%.0f", rate))\(range) |")
    }
    print(
        "end to end: \(e2e) events in \(requests) requests, \(String(format: "%.0f", Double(requests) / seconds)) requests/s"
    )
    print("peak RSS: \(mem.peak / 1024) MiB")
    if let jsonPath {
        try JSONValue.object([
            "events": .number(Double(count)), "peak_rss_kib": .number(Double(mem.peak)),
            "repeats": .number(Double(options.repeats)),
            "results": .array(
                zip(rows, spreads).map { row, trials in
                    .object([
                        "name": .string(row.0), "events_per_second": .number(row.1.rounded()),
                        "trials": .array(trials.map { .number($0.rounded()) }),
                    ])
                }),
        ]).encoded().write(to: URL(fileURLWithPath: jsonPath))
        print("wrote \(jsonPath)")
    }
}

func runBenchmarks(_ options: Options) async throws {
    if options.adapterEvents > 0 {
        try await adaptersBenchmark(
            count: options.adapterEvents, stripeCount: options.stripeEvents, pythonEvents: options.pythonEvents,
            only: options.only, repeats: options.repeats, jsonPath: options.jsonPath)
        return
    }
    if options.spoolEvents > 0 {
        try await spoolBenchmark(count: options.spoolEvents, options: options)
        return
    }
    if options.ledgerEvents > 0 {
        try await ledgerBenchmark(count: options.ledgerEvents, options: options)
        return
    }
    if options.aggregateSeconds > 0 {
        try await aggregateBenchmark(seconds: options.aggregateSeconds, options: options)
        return
    }
    if options.tailEvents > 0 {
        try await tailBenchmark(count: options.tailEvents, options: options)
        return
    }
    if options.importEvents > 0 {
        try await importBenchmark(count: options.importEvents, jsonPath: options.jsonPath)
        return
    }
    let server = try await LoopbackHTTPServer.start(threads: 1) { _ in
        .respond(HTTPResponse(status: 200, headers: ["Content-Type": "application/json"], body: responseBody))
    }
    let client = try CurlHTTPClient()
    let n = options.requests

    // Warm-up (connection set-up, lazy initialisation).
    for i in 0..<200 { _ = try await client.send(request(server.baseURL, i)) }
    _ = plainCurl(url: server.baseURL + "/v1/billing/meter_events", count: 200)

    let sequential = try await timed {
        for i in 0..<n { _ = try await client.send(request(server.baseURL, i)) }
    }
    let cpuBefore = threadCPU()
    let concurrent = try await timed {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<n {
                if i >= options.concurrency { try await group.next() }
                group.addTask { _ = try await client.send(request(server.baseURL, i)) }
            }
            try await group.waitForAll()
        }
    }
    print("  concurrent: \(cpuSummary(cpuBefore, threadCPU(), seconds: concurrent))")
    let plain = plainCurl(url: server.baseURL + "/v1/billing/meter_events", count: n)

    var leak: [String: Int] = [:]
    if options.leakCheck > 0 {
        let before = memory().current
        for i in 0..<options.leakCheck { _ = try await client.send(request(server.baseURL, i)) }
        let after = memory().current
        leak = [
            "requests": options.leakCheck, "rss_before_kib": before, "rss_after_kib": after,
            "growth_kib": after - before,
        ]
    }
    let mem = memory()
    client.shutdown()
    await server.shutdown()

    let rows: [(String, Double)] = [
        ("CurlHTTPClient sequential (1 in flight)", Double(n) / sequential),
        ("CurlHTTPClient concurrent (\(options.concurrency) in flight)", Double(n) / concurrent),
        ("plain curl_easy_perform loop", plain > 0 ? Double(n) / plain : 0),
    ]
    let ceiling = rows[2].1
    print(
        "HTTP client throughput, \(n) loopback POSTs each (\(ProcessInfo.processInfo.activeProcessorCount) cores, server in-process)"
    )
    print("| measurement | requests/s | ratio to plain libcurl |")
    print("|---|---:|---:|")
    for (name, rate) in rows {
        print(
            "| \(name) | \(String(format: "%.0f", rate)) | \(ceiling > 0 ? String(format: "%.2f", rate / ceiling) : "n/a") |"
        )
    }
    print("peak RSS: \(mem.peak / 1024) MiB")
    if !leak.isEmpty {
        print(
            "leak check: \(leak["requests"] ?? 0) more requests, RSS \(leak["rss_before_kib"] ?? 0) KiB → \(leak["rss_after_kib"] ?? 0) KiB (growth \(leak["growth_kib"] ?? 0) KiB)"
        )
    }
    if let path = options.jsonPath {
        var json: [String: JSONValue] = [
            "requests": .number(Double(n)), "concurrency": .number(Double(options.concurrency)),
            "peak_rss_kib": .number(Double(mem.peak)),
            "results": .array(
                rows.map { .object(["name": .string($0.0), "requests_per_second": .number($0.1.rounded())]) }),
        ]
        if !leak.isEmpty { json["leak_check"] = .object(leak.mapValues { .number(Double($0)) }) }
        try JSONValue.object(json).encoded().write(to: URL(fileURLWithPath: path))
        print("wrote \(path)")
    }
}

/// CPU seconds (user + system) each live thread of this process has used so far, by thread id
/// with its name, from /proc/self/task/*/stat.
func threadCPU() -> [String: (name: String, seconds: Double)] {
    let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
    var out: [String: (name: String, seconds: Double)] = [:]
    guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task") else { return out }
    for tid in tasks {
        guard let stat = try? String(contentsOfFile: "/proc/self/task/\(tid)/stat", encoding: .utf8),
            let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")")
        else { continue }
        let name = String(stat[stat.index(after: open)..<close])
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the name: state is field 3, utime field 14, stime field 15 (1-based in proc(5)).
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { continue }
        out[tid] = (name, (user + system) / ticks)
    }
    return out
}

/// CPU used between two `threadCPU()` readings by thread name (threads that started meanwhile
/// count from zero; threads that ended meanwhile are gone from /proc and not counted), as
/// "name 1.23 s" sorted by use, with the cores busy on average over `seconds`.
func cpuSummary(
    _ before: [String: (name: String, seconds: Double)], _ after: [String: (name: String, seconds: Double)],
    seconds: Double
) -> String {
    var byName: [String: Double] = [:]
    for (tid, thread) in after { byName[thread.name, default: 0] += thread.seconds - (before[tid]?.seconds ?? 0) }
    let used = byName.filter { $0.value > 0.005 }.sorted { $0.value > $1.value }
    let total = used.reduce(0) { $0 + $1.value }
    return String(format: "%.2f cores busy: ", total / max(seconds, 1e-9))
        + used.map { String(format: "%@ %.2f s", $0.key, $0.value) }.joined(separator: ", ")
}

/// The machine's CPU time so far from /proc/stat's first line: (busy, steal) in clock ticks,
/// all cores summed. Steal is time the hypervisor ran someone else while this VM wanted a core;
/// when it is high the figures below are low for reasons outside this program.
func machineCPU() -> (busy: Double, steal: Double, total: Double) {
    guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
        let line = text.split(separator: "\n").first
    else { return (0, 0, 0) }
    let v = line.split(separator: " ").dropFirst().compactMap { Double($0) }
    guard v.count >= 8 else { return (0, 0, 0) }
    // user nice system idle iowait irq softirq steal
    return (v[0] + v[1] + v[2] + v[5] + v[6], v[7], v[0...7].reduce(0, +))
}

/// "steal 12%": the share of the machine's core time the hypervisor took between two readings.
func stealSummary(
    _ before: (busy: Double, steal: Double, total: Double), _ after: (busy: Double, steal: Double, total: Double)
) -> String {
    let total = after.total - before.total
    guard total > 0 else { return "steal n/a" }
    return String(format: "hypervisor steal %.0f%%", 100 * (after.steal - before.steal) / total)
}

/// The command line: every mode of the benchmark, parsed by ArgumentParser.
@main
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "usage-billing-bench",
        abstract: "Measure the HTTP client, import, the spool, the ledgers, every adapter, tails and pre-aggregation.",
        discussion: "Without a mode it measures the HTTP client against plain libcurl. See Benchmarks/README.md.")

    @Option(help: "HTTP client: loopback POSTs per measurement.") var requests = 5_000
    @Option(help: "HTTP client: requests in flight for the concurrent measurement.") var concurrency = 32
    @Option(help: "HTTP client: send N more requests and report RSS growth.") var leakCheck = 0
    @Option(help: "Write the results as JSON to this file.") var json: String?
    @Option(name: .customLong("import"), help: "Measure `import --dry-run` over N events.") var importEvents = 0
    @Option(name: .customLong("spool"), help: "Measure the SQLite spool: record and deliver N events.")
    var spoolEvents = 0
    @Option(name: .customLong("ledgers"), help: "SQLite and PostgreSQL side by side, N events delivered.")
    var ledgerEvents = 0
    @Option(name: .customLong("tails"), help: "Goodput under each emulator fault plan, N events per run.")
    var tailEvents = 0
    @Option(help: "Pre-aggregation: record 10,000 events a second for S seconds.") var aggregateSeconds = 0
    @Option(name: .customLong("adapters"), help: "Every adapter end to end against the emulator, N events each.")
    var adapterEvents = 0
    @Option(help: "Adapters: events for Stripe v1 (one per request).") var stripeEvents = 10_000
    @Option(name: .customLong("python"), help: "Adapters: also time each official Python SDK over M events.")
    var pythonEvents = 0
    @Option(help: "Adapters and tails: only these (comma-separated).") var only: String?
    @Flag(help: "Spool: deliver only (no record cases).") var deliverOnly = false
    @Flag(help: "Spool: record only.") var recordOnly = false
    @Option(name: .customLong("repeat"), help: "Trials per measurement (the median is reported).") var repeats = 1
    @Option(help: "Spool: ids in the record rows: sequences, uuidv7 or both (comma-separated).")
    var ids: String?
    @Option(help: "Spool: normal or full (default: both).") var durability: String?
    @Option(help: "Spool: record cases as WRITERSxEVENTS, comma-separated (e.g. 16x1,16x100).")
    var recordCases: String?

    func validate() throws {
        if let durability, SpoolDurability(rawValue: durability) == nil {
            throw ValidationError("--durability \(durability) is not a durability: use normal or full")
        }
        if let ids {
            let kinds = ids.split(separator: ",").map(String.init)
            guard !kinds.isEmpty, kinds.allSatisfy({ ["sequences", "uuidv7"].contains($0) }) else {
                throw ValidationError("--ids takes sequences, uuidv7 or both (comma-separated)")
            }
        }
        if let recordCases, parsedCases(recordCases).isEmpty {
            throw ValidationError("--record-cases takes WRITERSxEVENTS pairs, e.g. 16x1,16x100")
        }
    }

    private func parsedCases(_ text: String) -> [(Int, Int)] {
        text.split(separator: ",").compactMap { c in
            let p = c.split(separator: "x").compactMap { Int($0) }
            return p.count == 2 ? (p[0], p[1]) : nil
        }
    }

    func run() async throws {
        var options = Options()
        options.requests = requests
        options.concurrency = concurrency
        options.leakCheck = leakCheck
        options.jsonPath = json
        options.importEvents = importEvents
        options.spoolEvents = spoolEvents
        options.ledgerEvents = ledgerEvents
        options.tailEvents = tailEvents
        options.aggregateSeconds = aggregateSeconds
        options.adapterEvents = adapterEvents
        options.stripeEvents = stripeEvents
        options.pythonEvents = pythonEvents
        options.only = only.map { $0.split(separator: ",").map(String.init) } ?? []
        options.deliverOnly = deliverOnly
        options.recordOnly = recordOnly
        options.repeats = max(1, repeats)
        if let ids { options.idKinds = ids.split(separator: ",").map(String.init) }
        if let durability, let d = SpoolDurability(rawValue: durability) { options.durabilities = [d] }
        if let recordCases { options.recordCases = parsedCases(recordCases) }
        try await runBenchmarks(options)
    }
}
