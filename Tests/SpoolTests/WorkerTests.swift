import Foundation
import UsageBilling
import UsageEmulator
import Testing
import UsageBillingCurl
import UsageBillingProviders
import UsageBillingTesting
import UsageRouting
import UsageTestSupport
@testable import UsageSpool

/// An OpenMeter-shaped server that fails every request while `failing` is set.
final class SwitchableServer: Sendable {
    let failing = Locked(true)
    let received = Locked<Set<String>>([])

    func handle(_ request: LoopbackHTTPServer.Request) -> LoopbackHTTPServer.Action {
        if failing.with({ $0 }) { return .respond(.json(503, .object(["title": .string("Service Unavailable")]))) }
        let json = JSONValue.parse(request.body)
        let ids = (json?.arrayValue ?? [json].compactMap { $0 }).compactMap { $0["id"]?.stringValue }
        received.with { $0.formUnion(ids) }
        return .respond(HTTPResponse(status: 204))
    }
}

@Suite("Delivery worker", .timeLimit(.minutes(5)))
struct WorkerTests {
    /// One lane's provider is down for a long stretch; the other lane delivers everything in the
    /// meantime; the failed lane catches up afterwards.
    @Test(arguments: LedgerKind.allCases)
    func aFailingLaneNeverStallsTheOther(_ kind: LedgerKind) async throws {
        let emulator = try await UsageEmulator.start()
        let down = SwitchableServer()
        let openMeterServer = try await LoopbackHTTPServer.start { down.handle($0) }
        let config = try routing(
            """
            version: 1
            providers:
              stripe: { kind: stripe, secret_key: sk_live_REDACTED, endpoint: "\(emulator.endpoints["stripe"]?["endpoint"] ?? "")" }
              openmeter: { kind: openmeter, api_key: om_REDACTED, endpoint: "\(openMeterServer.baseURL)", max_batch_size: 20 }
            routes:
              - { events: [api_request], to: stripe, shadow: openmeter }
            """)
        let curl = try CurlHTTPClient()
        defer { curl.shutdown() }
        let pipeline = try UsagePipeline(
            config: config, ledger: try await kind.make("iso"), client: curl,
            policy: RetryPolicy(baseDelay: .milliseconds(20), maxDelay: .milliseconds(200), maxAttempts: 1_000))
        let n = 120
        try await pipeline.record(events(n))
        let worker = Task { try await pipeline.flush() }

        // Stripe's lane finishes while OpenMeter is still down.
        let stripeDone = try await eventually(within: .seconds(200)) {
            try await pipeline.spool.status().first { $0.lane == "stripe/api_request" }?.delivered == n
        }
        #expect(stripeDone, "the healthy lane did not finish while the other was down")
        let openMeter = try await #require(
            try await pipeline.spool.status().first { $0.lane == "openmeter/api_request" })
        #expect(openMeter.delivered == 0 && openMeter.queued == n && openMeter.retrying > 0)

        down.failing.with { $0 = false }
        try await worker.value
        let final = try await pipeline.spool.status()
        #expect(final.allSatisfy { $0.queued == 0 && $0.delivered == n && $0.dead.isEmpty })
        #expect(down.received.with { $0.count } == n)
        print("isolation: \(n) events; stripe lane done while openmeter was down; openmeter caught up with \(n)")
        await emulator.shutdown()
        await openMeterServer.shutdown()
    }
}

/// Counts requests in progress, overall and per Stripe customer and meter.
final class OverlapProbe: Sendable {
    private struct State {
        var now: [String: Int] = [:]; var total = 0; var maxPerKey = 0; var maxTotal = 0; var ids: Set<String> = []
    }
    private let state = Locked(State())

    var maxPerKey: Int { state.with { $0.maxPerKey } }
    var maxTotal: Int { state.with { $0.maxTotal } }
    var received: Int { state.with { $0.ids.count } }

    func handle(_ request: LoopbackHTTPServer.Request) async -> LoopbackHTTPServer.Action {
        let form = Dictionary(
            FormEncoding.decode(String(decoding: request.body, as: UTF8.self)), uniquingKeysWith: { $1 })
        let key = (form["payload[stripe_customer_id]"] ?? "") + "/" + (form["event_name"] ?? "")
        state.with { s in
            s.now[key, default: 0] += 1
            s.total += 1
            s.maxPerKey = max(s.maxPerKey, s.now[key] ?? 0)
            s.maxTotal = max(s.maxTotal, s.total)
            if let id = form["identifier"] { s.ids.insert(id) }
        }
        // The first requests wait for a second one (a worker that overlaps calls sends it at once),
        // so the overlap seen does not hang on the machine's speed; then long enough for requests
        // to overlap if the worker let them.
        _ = try? await eventually(within: .seconds(10)) { self.maxTotal > 1 }
        try? await Task.sleep(for: .milliseconds(4))
        state.with { s in
            s.now[key, default: 1] -= 1
            s.total -= 1
        }
        return .respond(.json(200, .object(["object": .string("billing.meter_event")])))
    }
}

@Suite("Delivery worker concurrency", .timeLimit(.minutes(2)))
struct WorkerConcurrencyTests {
    /// Stripe takes one concurrent call per customer and meter: the worker keeps several requests
    /// in flight, but never two for one customer and meter.
    @Test(arguments: LedgerKind.allCases)
    func stripeNeverGetsTwoCallsAtOnceForOneCustomerAndMeter(_ kind: LedgerKind) async throws {
        let probe = OverlapProbe()
        let server = try await LoopbackHTTPServer.start(threads: 2) { await probe.handle($0) }
        let config = try routing(
            """
            version: 1
            providers:
              stripe: { kind: stripe, secret_key: sk_live_REDACTED, endpoint: "\(server.baseURL)", hedge: false }
            routes:
              - { events: [api_request, storage], to: stripe }
            """)
        let curl = try CurlHTTPClient()
        defer { curl.shutdown() }
        let pipeline = try UsagePipeline(config: config, ledger: try await kind.make("keys"), client: curl)
        let now = Date()
        // Interleaved: 3 customers × 2 meters, 20 events each, so consecutive rows share a key often.
        let events = (0..<120).map { i in
            UsageEvent(
                id: "k-\(i)", name: i % 2 == 0 ? "api_request" : "storage",
                customer: ["acme", "globex", "initech"][i / 2 % 3],
                timestamp: now.addingTimeInterval(-60), quantity: 1)
        }
        try await pipeline.record(events)
        try await pipeline.flush()
        #expect(probe.received == 120)
        #expect(probe.maxPerKey == 1, "two calls for one customer and meter were in flight at once")
        #expect(probe.maxTotal > 1, "the worker no longer overlaps calls for different customers")
        print(
            "stripe concurrency: 120 events, at most \(probe.maxTotal) in flight, at most \(probe.maxPerKey) per customer and meter"
        )
        await server.shutdown()
    }
}

extension WorkerConcurrencyTests {
    /// `max_in_flight`, which every provider takes, bounds a lane's requests at once; without it
    /// the adapter's default (Orb: 8) applies. The first requests are held until the bound is
    /// reached (a worker keeping that many in flight gets there at once), so the peak seen is the
    /// bound on any machine; one more than the bound would show as a higher peak.
    @Test(arguments: LedgerKind.allCases, [(3, 3), (nil, 8)] as [(Int?, Int)])
    func maxInFlightBoundsALane(_ kind: LedgerKind, _ bound: (setting: Int?, expected: Int)) async throws {
        let (setting, expected) = bound
        let peak = Locked((now: 0, max: 0, requests: 0))
        let server = try await LoopbackHTTPServer.start(threads: 2) { _ in
            peak.with {
                $0.now += 1; $0.max = max($0.max, $0.now); $0.requests += 1
            }
            _ = try? await eventually(within: .seconds(10)) { peak.with { $0.max } >= expected }
            try? await Task.sleep(for: .milliseconds(20))
            peak.with { $0.now -= 1 }
            return .respond(.json(200, .object(["validation_failed": .array([])])))
        }
        let config = try routing(
            """
            version: 1
            providers:
              orb: { kind: orb, api_key: orb_REDACTED, endpoint: "\(server.baseURL)", max_batch_size: 1, requests_per_second: 100000, events_per_minute: 100000000, hedge: false\(setting.map { ", max_in_flight: \($0)" } ?? "") }
            routes:
              - { events: [api_request], to: orb }
            """)
        #expect(config.providers["orb"]?.maxInFlight == setting)
        let curl = try CurlHTTPClient()
        defer { curl.shutdown() }
        let pipeline = try UsagePipeline(config: config, ledger: try await kind.make("inflight"), client: curl)
        try await pipeline.record(events(40, prefix: "f"))
        try await pipeline.flush()
        let seen = peak.with { $0 }
        #expect(seen.requests == 40)
        #expect(seen.max == expected, "at most \(seen.max) requests in flight, expected \(expected)")
        await server.shutdown()
    }
}

/// Answers every request with 204 once `open()` is called, counting requests.
final class GateClient: HTTPClient, Sendable {
    private let state = Locked((requests: 0, open: false))
    var requests: Int { state.with { $0.requests } }
    func open() { state.with { $0.open = true } }

    func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        state.with { $0.requests += 1 }
        _ = try await eventually { self.state.with { $0.open } }
        return HTTPResponse(status: 204)
    }
}

@Suite("One worker per spool", .timeLimit(.minutes(1)))
struct WorkerLockTests {
    @Test func aSecondWorkerOnTheSameSpoolIsRefusedUntilTheFirstStops() async throws {
        let config = try routing(
            """
            version: 1
            providers:
              openmeter: { kind: openmeter, api_key: om_REDACTED, hedge: false }
            routes:
              - { events: [api_request], to: openmeter }
            """)
        let path = tempPath("lock.spool")
        let gate = GateClient()
        let first = try UsagePipeline(config: config, spoolPath: path, client: gate)
        try await first.record(events(5))
        let running = Task { try await first.flush() }
        _ = try await eventually { gate.requests > 0 }
        #expect(gate.requests == 1, "the first worker is delivering")

        // A second pipeline on the same file (as a second `usage-billing worker` would be).
        let second = try UsagePipeline(config: config, spoolPath: path, client: gate)
        await #expect { try await second.flush() } throws: { error in
            guard let e = error as? UsageBillingError else { return false }
            return e.code == .configuration && "\(e)".contains("already delivering") && "\(e)".contains("this process")
        }
        #expect(gate.requests == 1, "the refused worker sent nothing")

        gate.open()
        try await running.value
        try await second.flush()  // the lock is free again once the first worker returns
        #expect(try await second.spool.status().first?.delivered == 5)
        #expect(gate.requests == 1, "every event went once")
    }
}

@Suite("Seqs after a purge", .timeLimit(.minutes(1)))
struct PurgeReuseTests {
    /// Since v7 a row's seq is the highest plus one, so purging the newest dead letters lets new
    /// rows take their seqs again. A worker that has already read past those seqs still delivers
    /// the new rows, and nothing else changes.
    @Test func rowsTakingPurgedSeqsAreStillDelivered() async throws {
        let received = Locked<Set<String>>([])
        let server = try await LoopbackHTTPServer.start { request in
            let json = JSONValue.parse(request.body)
            let batch = json?.arrayValue ?? [json].compactMap { $0 }
            if batch.contains(where: { $0["subject"]?.stringValue == "bad" }) {
                return .respond(
                    .json(400, .object(["title": .string("Bad Request"), "detail": .string("subject is blocked")])))
            }
            received.with { $0.formUnion(batch.compactMap { $0["id"]?.stringValue }) }
            return .respond(HTTPResponse(status: 204))
        }
        let config = try openMeterOnly(server, batch: 1)
        let curl = try CurlHTTPClient()
        defer { curl.shutdown() }
        let pipeline = try UsagePipeline(
            config: config, spoolPath: tempPath("reuse.spool"), client: curl,
            policy: RetryPolicy(baseDelay: .milliseconds(10), maxDelay: .milliseconds(50), maxAttempts: 5))
        let good = events(3, prefix: "good")
        let bad = events(2, prefix: "bad").map {
            UsageEvent(id: $0.id, name: $0.name, customer: "bad", timestamp: $0.timestamp, quantity: $0.quantity)
        }
        try await pipeline.record(good + bad)  // the refused events hold the highest seqs
        let seqs = { (prefix: String) in
            try await (try #require(pipeline.spool as? Spool)).pool.read { db in
                try Int64.fetchAll(
                    db,
                    sql:
                        "SELECT d.seq FROM deliveries d JOIN events e ON e.key = d.event WHERE e.id LIKE ? ORDER BY d.seq",
                    arguments: [prefix + "%"])
            }
        }
        let topBefore = try #require(try await seqs("bad").last)
        let worker = Task { try await pipeline.worker.run(untilEmpty: false) }
        defer { worker.cancel() }
        #expect(try await eventually { try await pipeline.spool.status().first?.dead["http_400"] == 2 })
        #expect(try await pipeline.spool.purgeDeadLetters() == 2)

        let later = events(2, prefix: "later")
        try await pipeline.record(later)
        let reused = try await seqs("later")
        #expect(
            reused.count == 2 && (reused.first ?? .max) <= topBefore,
            "the new rows were expected to take the purged seqs: \(reused), top was \(topBefore)")
        #expect(try await eventually { received.with { $0 } == Set((good + later).map(\.id)) })
        pipeline.worker.stop()
        try await worker.value
        let status = try await #require(try await pipeline.spool.status().first)
        #expect(status.delivered == 5 && status.queued == 0 && status.dead.isEmpty)
        await server.shutdown()
    }
}

/// A sink keyed by customer, for the read-ahead's bookkeeping.
struct KeyedSink: UsageSink {
    var name: String { "keyed" }
    var capabilities: SinkCapabilities {
        SinkCapabilities(
            maxBatchSize: 10, idempotency: .providerDeduplicates(window: .seconds(86_400)), maxConcurrentRequests: 8)
    }
    func deliver(_ batch: [UsageEvent]) async throws -> [DeliveryOutcome] { batch.map { _ in .accepted } }
    func concurrencyKey(for event: UsageEvent) -> String? { event.customer == "free" ? nil : event.customer }
}

@Suite("Read-ahead")
struct ReadAheadTests {
    /// `take` hands out the oldest rows whose key no batch in flight holds, up to the limit,
    /// and keeps the rest in order for the next call.
    @Test func takeSkipsBusyKeysAndKeepsTheRestInOrder() {
        var ahead = ReadAhead(sink: KeyedSink(), capacity: 10)
        let customers = ["a", "b", "a", "free", "c", "b", "d"]
        ahead.append(
            customers.enumerated().map { i, customer in
                QueuedDelivery(
                    seq: Int64(i + 1), event: UsageEvent(id: "r\(i + 1)", name: "api_request", customer: customer),
                    attempts: 0)
            })
        #expect(ahead.room == 3)
        #expect(ahead.take(2, busy: ["a".hashValue: 1]).map(\.row.seq) == [2, 4])
        #expect(ahead.take(0, busy: [:]).isEmpty)
        #expect(ahead.take(3, busy: ["a".hashValue: 1, "c".hashValue: 2]).map(\.row.seq) == [6, 7])
        #expect(ahead.take(1, busy: [:]).map(\.row.seq) == [1])
        #expect(ahead.take(5, busy: ["c".hashValue: 1]).map(\.row.seq) == [3])
        #expect(ahead.take(5, busy: [:]).map(\.row.seq) == [5])
        #expect(ahead.take(5, busy: [:]).isEmpty && ahead.room == 10)
    }
}

@Suite("Held marks", .timeLimit(.minutes(3)))
struct MarkHoldTests {
    /// Nothing is handed out before `rows` marks or `age` (by the lane's clock) have gathered,
    /// unless forced; what is handed out is every mark held, in order, and the hold is empty after.
    @Test func marksAreHandedOutTogetherWhenEnoughOrOldEnough() {
        let t0 = Date(timeIntervalSince1970: 1_000)
        var hold = MarkHold()
        #expect(hold.take(force: true, now: t0)?.count == nil, "nothing held, nothing to write")
        hold.add([(1, .delivered), (2, .duplicate)])
        #expect(hold.take(force: false, now: t0)?.count == nil, "two marks, just held")
        #expect(hold.take(force: true, now: t0)?.map(\.seq) == [1, 2])
        #expect(hold.isEmpty)
        hold.add((1...Int64(MarkHold.rows)).map { ($0, .delivered) })
        #expect(hold.take(force: false, now: t0)?.count == MarkHold.rows, "a full hold is written")
        hold.add([(7, .delivered)])
        #expect(hold.take(force: false, now: t0) == nil, "first seen now")
        let almost = t0.addingTimeInterval((MarkHold.age - .milliseconds(1)).seconds)
        hold.add([(8, .delivered)])
        #expect(hold.take(force: false, now: almost)?.count == nil, "younger than the age: still held")
        #expect(
            hold.take(force: false, now: t0.addingTimeInterval(MarkHold.age.seconds + 0.001))?.map(\.seq) == [7, 8],
            "the oldest mark's age decides")
        hold.add([(9, .delivered)])
        _ = hold.take(force: false, now: t0)
        #expect(
            hold.take(force: false, now: t0.addingTimeInterval(-1))?.map(\.seq) == [9],
            "a clock that went back writes them at once")
    }

    /// A lane with requests in flight to a provider that drops repeated ids (OpenMeter, one event
    /// per request, 8 at once) writes its marks together: with the lane's clock standing still,
    /// only a full hold or the end of a pass writes them, so `n` answers take at most one
    /// transaction per `MarkHold.rows` plus one at the end, however fast the machine is (marking
    /// each batch as it finished took one per 1–8 requests). Every row ends delivered. How many
    /// transactions a real clock's 20 ms gathers is the adapters benchmark's figure (commits per trial).
    @Test func aLaneWithRequestsInFlightWritesItsMarksTogether() async throws {
        let server = try await LoopbackHTTPServer.start { _ in .respond(HTTPResponse(status: 204)) }
        let curl = try CurlHTTPClient()
        defer { curl.shutdown() }
        let pipeline = try UsagePipeline(
            config: try openMeterOnly(server, batch: 1), spoolPath: tempPath("held.spool"), client: curl,
            clock: TestClock(now: Date()))
        let n = 400
        try await pipeline.record(events(n, prefix: "held"))
        let spool = try #require(pipeline.spool as? Spool)  // the SQLite spool's commit thread counts its transactions
        let before = spool.commitStatistics
        try await pipeline.flush()
        let transactions = spool.commitStatistics.transactions - before.transactions
        #expect(
            transactions >= 1 && transactions <= (n + MarkHold.rows - 1) / MarkHold.rows + 1,
            "\(transactions) transactions for \(n) requests")
        let lane = try await #require(try await pipeline.spool.status().first)
        #expect(lane.delivered == n && lane.queued == 0)
        #expect(server.requestsReceived == n)
        await server.shutdown()
    }
}

@Suite("Busy keys")
struct BusyKeysTests {
    /// Random holds and releases (few distinct keys, so runs collide, and enough to grow the
    /// table twice) agree with a dictionary of holder counts at every step.
    @Test(arguments: [1, 2, 3])
    func agreesWithADictionary(seed: UInt64) {
        var rng = SplitMix(seed: seed)
        var busy = BusyKeys()
        var model: [Int: Int] = [:]
        let keys = (0..<200).map { _ in Int(bitPattern: UInt(rng.next())) } + [0, 1, 2, -1]
        for _ in 0..<20_000 {
            let key = keys[Int(rng.next() % UInt64(keys.count))]
            if rng.next() % 3 == 0, model[key] != nil {
                busy.release(key)
                if let n = model[key], n > 1 { model[key] = n - 1 } else { model[key] = nil }
            } else {
                busy.hold(key)
                model[key, default: 0] += 1
            }
            #expect(busy.count == model.count && busy.contains(key) == (model[key] != nil))
        }
        for key in keys { #expect(busy.contains(key) == (model[key] != nil), "\(key)") }
        for (key, n) in model { for _ in 0..<n { busy.release(key) } }
        #expect(busy.isEmpty && keys.allSatisfy { !busy.contains($0) })
    }
}

/// A small seeded generator for the tests.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
