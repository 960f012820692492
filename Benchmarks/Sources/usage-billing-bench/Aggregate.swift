import Foundation
import UsageBilling
import UsageBillingCurl
import UsageBillingProviders
import UsageEmulator
import UsageRouting
import UsageSpool

/// Pre-aggregation under a heavy customer: one customer records 10,000 events a second for
/// `seconds` into a Stripe v1 lane with `aggregate: { window: 1m, grace: 5s }` while the worker
/// runs; then the worker stops and a flush emits the last window. Stripe v1 takes one call at a
/// time per customer and meter, which without aggregation caps one customer at a call per
/// round trip; with it, the customer costs one call per minute.
func aggregateBenchmark(seconds: Int, options: Options) async throws {
    let dir = FileManager.default.temporaryDirectory.appending(path: "ub-aggregate-\(UUID().uuidString.prefix(8))").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let emulator = try await UsageEmulator.start()
    let endpoint = (emulator.endpoints["stripe"] ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key): \"\($0.value)\"" }
        .joined(separator: ", ")
    let config = try RoutingConfig.parse(
        """
        version: 1
        providers:
          stripe: { kind: stripe, secret_key: sk_live_REDACTED, aggregate: { window: 1m, grace: 5s }, \(endpoint) }
        routes:
          - { events: [api_request], to: stripe }
        """, file: "aggregate.yaml", directory: dir, registry: .standard, environment: [:])
    let client = try CurlHTTPClient()
    defer { client.shutdown() }
    let pipeline = try UsagePipeline(config: config, spoolPath: "\(dir)/aggregate.spool", client: client)
    // A worker of its own: `stop()` is for good, and the flush at the end runs the pipeline's.
    let running = DeliveryWorker(spool: pipeline.spool, router: pipeline.router)
    let worker = Task { try await running.run(untilEmpty: false) }

    let perTick = 1_000, tick = Duration.milliseconds(100)  // 10,000 events/s
    var recorded = 0
    var total = Decimal(0)
    let started = ContinuousClock.now
    var next = started
    while ContinuousClock.now - started < .seconds(seconds) {
        let now = Date()
        let batch = (0..<perTick).map { i in
            UsageEvent(
                id: "heavy-\(recorded + i)", name: "api_request", customer: "cus_heavy", timestamp: now,
                quantity: Decimal((recorded + i) % 5 + 1))
        }
        try await pipeline.record(batch)
        total += batch.reduce(Decimal(0)) { $0 + $1.quantity }
        recorded += perTick
        next = next.advanced(by: tick)
        if next > ContinuousClock.now { try await Task.sleep(until: next) }
    }
    let recordSeconds = (ContinuousClock.now - started).seconds
    let requestsWhileRunning = emulator.requests("stripe")
    running.stop()
    try await worker.value
    try await pipeline.flush()  // the last, still open window
    let billed = await emulator.accepted("stripe")
    let billedTotal = billed.reduce(Decimal(0)) { $0 + $1.quantity }
    let requests = emulator.requests("stripe")
    let minutes = Set(billed.map { Int($0.timestamp.timeIntervalSince1970) / 60 }).count
    let status = try await pipeline.spool.status().first
    print(
        "Pre-aggregation, one heavy customer to Stripe v1 (aggregate: window 1m, grace 5s; \(ProcessInfo.processInfo.activeProcessorCount) cores)"
    )
    print(
        "| events recorded | over | recorded events/s | requests to Stripe | minutes billed | requests per customer per minute | Stripe's total = the spool's | queued after |"
    )
    print("|---:|---:|---:|---:|---:|---:|---|---:|")
    let perMinute = Double(requests) / Double(max(1, minutes))
    print(
        "| \(recorded) | \(String(format: "%.1f", recordSeconds)) s | \(String(format: "%.0f", Double(recorded) / recordSeconds)) | \(requests) (\(requestsWhileRunning) while recording) | \(minutes) | \(String(format: "%.2f", perMinute)) | \(billedTotal == total ? "yes" : "NO (\(billedTotal) vs \(total))") | \(status?.queued ?? -1) |"
    )
    if let path = options.jsonPath {
        try JSONValue.object([
            "events": .number(Double(recorded)), "seconds": .number((recordSeconds * 10).rounded() / 10),
            "requests": .number(Double(requests)),
            "minutes": .number(Double(minutes)),
            "requests_per_customer_minute": .number((perMinute * 100).rounded() / 100),
            "totals_agree": .bool(billedTotal == total), "aggregated": .number(Double(status?.aggregated ?? 0)),
        ]).encoded().write(to: URL(fileURLWithPath: path))
        print("wrote \(path)")
    }
    await emulator.shutdown()
    if billedTotal != total || perMinute > 2 {
        throw UsageBillingError(
            .unexpectedResponse, "the heavy customer was not billed exactly, in at most 2 requests a minute")
    }
}
