import Foundation
import UsageBilling
import UsageBillingCurl
import UsageBillingProviders
import UsageRouting
import UsageSpool
import UsageTestSupport

/// SQLite and PostgreSQL side by side in one run, on this machine: `record` with 16 writers at 1
/// and at 100 events per call, and delivery of `count` events over four lanes (OpenMeter at a
/// loopback server, 100 events per request) by 1, 2 and 4 workers, printing the lanes each
/// worker held (a fleet's workers share the lanes). PostgreSQL is Debian's server,
/// started here on a loopback port with `fsync=off` (the SQLite spool's `normal` durability does
/// not fsync each commit either).
func ledgerBenchmark(count: Int, options: Options) async throws {
    let server = try await PostgresServer.dedicated()
    let dir = FileManager.default.temporaryDirectory.appending(path: "ub-ledger-bench-\(UUID().uuidString.prefix(8))")
        .path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let kinds = ["SQLite", "PostgreSQL"]
    func ledger(_ kind: String, _ tag: String) async throws -> any UsageLedger {
        kind == "SQLite"
            ? try Spool(path: "\(dir)/\(tag).spool") : try await PostgresLedger.open(try await server.database(tag))
    }
    let now = Date()
    let names = ["api_request", "storage_gb", "tokens", "seats"]
    func event(_ tag: String, _ i: Int) -> UsageEvent {
        UsageEvent(
            id: "\(tag)-\(i)", name: names[i % names.count], customer: "c\(i % 50)",
            timestamp: now.addingTimeInterval(-60), quantity: Decimal(i % 9 + 1))
    }
    var table: [(String, [String: [Double]])] = []

    for (writers, perCall) in [(16, 1), (16, 100)] where !options.deliverOnly {
        var rates: [String: [Double]] = [:]
        for trial in 0..<options.repeats {
            for kind in kinds {
                let total = perCall == 1 ? min(count, 20_000) : count
                let store = try await ledger(kind, "rec\(writers)x\(perCall)t\(trial)")
                let perWriter = total / writers
                let tag = "r\(perCall)-\(trial)"
                let started = ContinuousClock.now
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for w in 0..<writers {
                        group.addTask {
                            var i = 0
                            while i < perWriter {
                                let n = min(perCall, perWriter - i)
                                try await store.record(
                                    (0..<n).map { k in
                                        RecordEntry(
                                            event: event(tag, w * perWriter + i + k), lanes: ["openmeter/api_request"])
                                    }, now: Date())
                                i += n
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                let rate = Double(perWriter * writers) / (ContinuousClock.now - started).seconds
                rates[kind, default: []].append(rate)
                print(
                    "  record \(kind), \(writers) writers × \(perCall): \(String(format: "%.0f", rate)) events/s (trial \(trial))"
                )
            }
        }
        table.append(("record, \(writers) writers, \(perCall) event(s) per call", rates))
    }

    let http = try await LoopbackHTTPServer.start(threads: 1) { _ in .respond(HTTPResponse(status: 204)) }
    let config = try RoutingConfig.parse(
        """
        version: 1
        providers:
          openmeter: { kind: openmeter, api_key: om_REDACTED, endpoint: "\(http.baseURL)", max_batch_size: 100 }
        routes:
        \(names.map { "  - { events: [\($0)], to: openmeter }" }.joined(separator: "\n"))
        """, file: "bench.yaml", directory: dir, registry: .standard, environment: [:])
    let client = try CurlHTTPClient()
    for workers in [1, 2, 4] where !options.recordOnly {
        var rates: [String: [Double]] = [:]
        for trial in 0..<options.repeats {
            for kind in kinds {
                if kind == "SQLite" && workers > 1 { continue }  // one worker per spool file, by design
                let store = try await ledger(kind, "dlv\(workers)t\(trial)")
                let pipeline = try UsagePipeline(config: config, ledger: store, client: client)
                for chunk in stride(from: 0, to: count, by: 10_000) {
                    try await pipeline.record(
                        (chunk..<min(count, chunk + 10_000)).map { event("d\(workers)-\(trial)", $0) })
                }
                var fleet: [DeliveryWorker] = []
                for _ in 0..<workers {
                    let handle = workers == 1 ? store : try await openLedger(store.location)
                    // A short lease, so the workers' heartbeats (a third of it) share the lanes
                    // within the run.
                    fleet.append(DeliveryWorker(spool: handle, router: pipeline.router, leaseTTL: .seconds(1.5)))
                }
                let started = ContinuousClock.now
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for worker in fleet { group.addTask { try await worker.run(untilEmpty: true) } }
                    if workers > 1 {
                        // Every lane each worker held, sampled while they deliver.
                        var held: [Int: Set<String>] = [:], last: [Int: Set<String>] = [:]
                        while try await store.queuedCount(lane: nil) > 0 {
                            var now: [Int: Set<String>] = [:]
                            for lease in try await store.leases() {
                                if let index = fleet.firstIndex(where: { $0.owner == lease.owner }) {
                                    now[index, default: []].insert(lease.lane)
                                }
                            }
                            held.merge(now) { $0.union($1) }
                            if !now.isEmpty { last = now }
                            try await Task.sleep(for: .milliseconds(100))
                        }
                        func list(_ lanes: [Int: Set<String>]) -> String {
                            (0..<workers).map {
                                "worker \($0 + 1) \(lanes[$0, default: []].sorted().map { $0.replacingOccurrences(of: "openmeter/", with: "") }.joined(separator: "+"))"
                            }.joined(separator: ", ")
                        }
                        print(
                            "  \(kind), \(workers) workers: lanes held at some point: \(list(held)); last seen: \(list(last))"
                        )
                    }
                    try await group.waitForAll()
                }
                let rate = Double(count) / (ContinuousClock.now - started).seconds
                let left = try await store.queuedCount(lane: nil)
                rates[kind, default: []].append(rate)
                print(
                    "  deliver \(kind), \(workers) worker(s): \(String(format: "%.0f", rate)) events/s, \(left) left queued (trial \(trial))"
                )
            }
        }
        table.append(
            ("deliver \(count) events over \(names.count) lanes (100 per request), \(workers) worker(s)", rates))
    }
    client.shutdown()
    await http.shutdown()

    print(
        "Ledger benchmark (\(ProcessInfo.processInfo.activeProcessorCount) cores, one run; median of \(options.repeats) trial(s), PostgreSQL \(server.port) on loopback with fsync=off)"
    )
    print("| measurement | SQLite events/s | PostgreSQL events/s | PostgreSQL ÷ SQLite |")
    print("|---|---:|---:|---:|")
    func median(_ values: [Double]?) -> Double? {
        guard let values, !values.isEmpty else { return nil }
        return values.sorted()[values.count / 2]
    }
    for (name, rates) in table {
        let sqlite = median(rates["SQLite"]), postgres = median(rates["PostgreSQL"])
        let ratio = sqlite.flatMap { s in postgres.map { String(format: "%.2f", $0 / s) } } ?? "–"
        print(
            "| \(name) | \(sqlite.map { String(format: "%.0f", $0) } ?? "n/a (one worker per spool)") | \(postgres.map { String(format: "%.0f", $0) } ?? "–") | \(ratio) |"
        )
    }
    if let path = options.jsonPath {
        try JSONValue.object([
            "events": .number(Double(count)),
            "results": .array(
                table.map { name, rates in
                    .object([
                        "name": .string(name),
                        "trials": .object(rates.mapValues { .array($0.map { .number($0.rounded()) }) }),
                    ])
                }),
        ]).encoded().write(to: URL(fileURLWithPath: path))
        print("wrote \(path)")
    }
}
