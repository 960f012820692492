import Foundation
import UsageBilling
import UsageBillingCurl
import UsageBillingProviders
import UsageEmulator
import UsageRouting
import UsageSpool

/// Tail tolerance: a Stripe v1 lane (live key, its default pace, 50 customers) and an Orb lane
/// (10 events per request, its default pace) drain `count` events from a spool through the
/// emulator with each fault plan: none, `429=0.05`, `timeout=0.002` (one request in 500 applied
/// and never answered), and a mix of them. Goodput (events billed per second of draining) is
/// given against the fault-free run of the same lane in the same process.
func tailBenchmark(count: Int, options: Options) async throws {
    let dir = FileManager.default.temporaryDirectory.appending(path: "ub-tails-\(UUID().uuidString.prefix(8))").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    // The last row turns hedging off: what the hung requests cost without it (each holds its
    // slot, and on Stripe its customer, for the whole request timeout).
    let plans: [(name: String, spec: String, extra: String)] = [
        ("none", "", ""), ("429=0.05", "429=0.05", ""), ("timeout=0.002", "timeout=0.002", ""),
        ("mixed", "429=0.05,500=0.05,reset=0.02,timeout=0.002", ""), ("timeout=0.002, hedge: false", "timeout=0.002", ", hedge: false"),
    ]
    let lanes: [(kind: String, settings: String)] = [("stripe", "secret_key: sk_live_REDACTED"), ("orb", "api_key: orb_REDACTED, max_batch_size: 10, events_per_minute: 100000000")]
    let client = try CurlHTTPClient()
    defer { client.shutdown() }
    var rows: [(lane: String, plan: String, seconds: Double, requests: Int, injected: Int, duplicates: Int, agree: Bool)] = []
    for lane in lanes where options.only.isEmpty || options.only.contains(lane.kind) {
        for (name, spec, extra) in plans {
            let emulator = try await UsageEmulator.start(faults: [lane.kind: try FaultPlan.parse(spec)], seed: 7)
            let endpoint = (emulator.endpoints[lane.kind] ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key): \"\($0.value)\"" }.joined(separator: ", ")
            let config = try RoutingConfig.parse("""
                version: 1
                providers:
                  \(lane.kind): { kind: \(lane.kind), \(lane.settings), \(endpoint)\(extra) }
                routes:
                  - { events: [api_request], to: \(lane.kind) }
                """, file: "tails.yaml", directory: dir, registry: .standard, environment: [:])
            let pipeline = try UsagePipeline(config: config, spoolPath: "\(dir)/\(lane.kind)-\(rows.count).spool", client: client)
            let now = Date()
            let events = (0..<count).map { i in
                UsageEvent(id: "tail-\(lane.kind)-\(rows.count)-\(i)", name: "api_request", customer: "cus_\(i % 50)", timestamp: now.addingTimeInterval(-60), quantity: Decimal(i % 9 + 1))
            }
            for start in stride(from: 0, to: count, by: 1_000) { try await pipeline.record(Array(events[start..<min(count, start + 1_000)])) }
            let started = ContinuousClock.now
            try await pipeline.flush()
            let seconds = (ContinuousClock.now - started).seconds
            let status = try await pipeline.spool.status().first
            let billed = await emulator.accepted(lane.kind)
            let agree = billed.reduce(Decimal(0)) { $0 + $1.quantity } == events.reduce(Decimal(0)) { $0 + $1.quantity }
                && Set(billed.compactMap(\.key)).count == billed.count && status?.queued == 0
            let stats = emulator.statistics
            let injected = (stats.injected[lane.kind] ?? [:]).values.reduce(0, +)
            rows.append((lane.kind, name, seconds, stats.requests[lane.kind] ?? 0, injected, status?.duplicates ?? 0, agree))
            print("  \(lane.kind) \(name): \(count) events in \(String(format: "%.2f", seconds)) s, \(stats.requests[lane.kind] ?? 0) requests, injected \(stats.injected[lane.kind] ?? [:]), duplicates \(status?.duplicates ?? 0)")
            await emulator.shutdown()
        }
    }
    print("Tail tolerance: \(count) events per run, drained by `worker --until-empty` (spool → worker → CurlHTTPClient → emulator, one process, \(ProcessInfo.processInfo.activeProcessorCount) cores)")
    print("| lane | faults | drained in | events/s | goodput vs no faults | requests | faults injected | answered duplicate | billed once, totals agree |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    var json: [JSONValue] = []
    for row in rows {
        let base = rows.first { $0.lane == row.lane && $0.plan == "none" }?.seconds ?? row.seconds
        let ratio = base / row.seconds
        print("| \(row.lane) | \(row.plan) | \(String(format: "%.2f", row.seconds)) s | \(String(format: "%.0f", Double(count) / row.seconds)) | \(String(format: "%.0f%%", ratio * 100)) | \(row.requests) | \(row.injected) | \(row.duplicates) | \(row.agree ? "yes" : "NO") |")
        json.append(.object(["lane": .string(row.lane), "faults": .string(row.plan), "seconds": .number((row.seconds * 100).rounded() / 100),
                             "goodput_vs_fault_free": .number((ratio * 100).rounded() / 100), "requests": .number(Double(row.requests)),
                             "injected": .number(Double(row.injected)), "duplicates": .number(Double(row.duplicates)), "agree": .bool(row.agree)]))
    }
    if let path = options.jsonPath {
        try JSONValue.object(["events": .number(Double(count)), "runs": .array(json)]).encoded().write(to: URL(fileURLWithPath: path))
        print("wrote \(path)")
    }
    if rows.contains(where: { !$0.agree }) { throw UsageBillingError(.unexpectedResponse, "a run billed an event twice or lost one") }
}
