import Foundation
import Testing
import UsageBilling
import UsageBillingProviders
import UsageBillingTesting
import UsageRouting
import UsageSpool
import UsageTestSupport

/// An in-memory Recurly usage endpoint: POST stores a record, GET lists them by usage_timestamp.
/// `timeoutAfterApplying` makes the next POST land and then time out, like a lost response.
final class FakeRecurly: HTTPClient, Sendable {
    struct Record: Sendable { var tag: String; var amount: Double; var usageTimestamp: String }
    let state = Locked<(records: [Record], posts: Int, gets: Int, timeoutAfterApplying: Bool)>(([], 0, 0, false))

    var records: [Record] { state.with { $0.records } }
    var posts: Int { state.with { $0.posts } }
    var gets: Int { state.with { $0.gets } }

    func apply(_ body: JSONValue?) {
        let record = Record(
            tag: body?["merchant_tag"]?.stringValue ?? "", amount: body?["amount"]?.numberValue ?? 0,
            usageTimestamp: body?["usage_timestamp"]?.stringValue ?? "")
        state.with { $0.records.append(record) }
    }

    func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        if request.method == .post {
            apply(JSONValue.parse(request.body ?? Data()))
            let timeout = state.with { s in
                s.posts += 1
                defer { s.timeoutAfterApplying = false }
                return s.timeoutAfterApplying
            }
            if timeout {
                throw UsageBillingError(.timeout, "scripted: the response was lost", mayHaveReachedServer: true)
            }
            return HTTPResponse(
                status: 201, headers: ["Content-Type": "application/json"],
                body: JSONValue.object(["id": .string("u1"), "object": .string("usage")]).encoded())
        }
        let query = Dictionary(
            FormEncoding.decode(URLComponents(string: request.url)?.percentEncodedQuery ?? ""), uniquingKeysWith: { $1 }
        )
        let data: [JSONValue] = state.with { s in
            s.gets += 1
            return s.records.filter { r in
                (query["begin_time"].map { r.usageTimestamp >= $0 } ?? true)
                    && (query["end_time"].map { r.usageTimestamp <= $0 } ?? true)
            }.map {
                .object([
                    "id": .string("u"), "object": .string("usage"), "merchant_tag": .string($0.tag),
                    "amount": .number($0.amount),
                    "usage_timestamp": .string($0.usageTimestamp),
                ])
            }
        }
        return HTTPResponse(
            status: 200, headers: ["Content-Type": "application/json"],
            body: JSONValue.object(["object": .string("list"), "has_more": .bool(false), "data": .array(data)])
                .encoded())
    }
}

private let hourStart = Date(timeIntervalSince1970: 1_795_132_800)  // 2026-11-20T00:00:00Z

private func recurlyConfig() throws -> RoutingConfig {
    try routing(
        """
        version: 1
        providers:
          recurly:
            kind: recurly
            api_key: recurly_REDACTED
            add_on_id: code-api-calls
            aggregate: { window: 1h, grace: 5m }
            customers: { acme: uuid-6f2c1d5e8a9b4c3d2e1f0a9b8c7d6e5f }
        routes:
          - { events: [api_request], to: recurly }
        """)
}

private func usage(_ id: String, minute: Double, _ quantity: Decimal) -> UsageEvent {
    UsageEvent(
        id: id, name: "api_request", customer: "acme", timestamp: hourStart.addingTimeInterval(minute * 60),
        quantity: quantity)
}

private let quickRetries = RetryPolicy(baseDelay: .milliseconds(10), maxDelay: .milliseconds(50), maxAttempts: 10)

@Suite("Aggregation windows in the spool", .timeLimit(.minutes(3)))
struct AggregationSpoolTests {
    /// Windows live in the spool: a restart mid-window neither loses nor double-counts, each
    /// window is billed once when it closes, and late events go out as the next revision.
    @Test(arguments: LedgerKind.allCases)
    func windowsSurviveRestartsAndBillOnce(_ kind: LedgerKind) async throws {
        let path = try await kind.make("agg").location
        let fake = FakeRecurly()
        let clock = TestClock(now: hourStart.addingTimeInterval(600))
        do {
            let pipeline = try UsagePipeline(
                config: try recurlyConfig(), ledger: try await openLedger(path), client: fake, policy: quickRetries,
                clock: clock)
            try await pipeline.record([usage("a", minute: 1, 2), usage("b", minute: 2, 3), usage("c", minute: 3, 4)])
            try await pipeline.flush(closingOpenWindows: false)
            let lane = try await #require(try await pipeline.spool.status().first)
            #expect(lane.aggregated == 3 && lane.openWindows == 1 && lane.queued == 0)
            #expect(fake.posts == 0, "an open window is not billed")
        }
        // Restart: a new pipeline on the same ledger.
        let pipeline = try UsagePipeline(
            config: try recurlyConfig(), ledger: try await openLedger(path), client: fake, policy: quickRetries,
            clock: clock)
        try await pipeline.record([usage("d", minute: 40, 1), usage("e", minute: 59, 5), usage("f", minute: 61, 7)])
        try await pipeline.record([usage("a", minute: 1, 2)])  // recorded again: a no-op
        clock.advance(by: .seconds(3600 - 600 + 300))  // the first hour's end + grace
        try await pipeline.flush(closingOpenWindows: false)
        #expect(fake.records.map(\.amount) == [15], "the first hour billed once with every event, none twice")
        #expect(fake.records.first?.usageTimestamp == "2026-11-20T00:00:00Z")
        let open = try await #require(
            try await pipeline.spool.windows(lane: "recurly/api_request").first { $0.key.start == 1_795_136_400 })
        #expect(open.state.dirty && open.state.value == 7, "the second hour is still open")

        try await pipeline.record([usage("late", minute: 30, 4)])
        try await pipeline.flush(closingOpenWindows: false)
        #expect(fake.records.map(\.amount) == [15, 4], "the late event goes out as the first hour's next revision")
        #expect(Set(fake.records.map(\.tag)).count == 2)

        try await pipeline.flush()  // closes the open hour on request
        #expect(fake.records.map(\.amount) == [15, 4, 7])
        #expect(fake.records.map(\.amount).reduce(0, +) == 26, "billed = recorded")
        let lane = try await #require(try await pipeline.spool.status().first)
        #expect(lane.delivered == 3 && lane.aggregated == 7 && lane.openWindows == 0 && lane.queued == 0)
    }

    /// More raw rows than one fold takes (5,000), recorded while earlier ones fold: each fold
    /// reads the next rows beside its write, and still every row is folded exactly once.
    @Test(arguments: LedgerKind.allCases)
    func foldsLargerThanOneBatchCountEveryRowOnce(_ kind: LedgerKind) async throws {
        let fake = FakeRecurly()
        let clock = TestClock(now: hourStart.addingTimeInterval(4 * 3600))
        let pipeline = try UsagePipeline(
            config: try recurlyConfig(), ledger: try await kind.make("fold"), client: fake, policy: quickRetries,
            clock: clock)
        // 12,001 events over three hours: three folds of up to 5,000, the last one partial.
        let batch = (0..<12_001).map { usage("e\($0)", minute: Double($0 % 180), Decimal($0 % 7 + 1)) }
        for chunk in stride(from: 0, to: batch.count, by: 4_000) {
            try await pipeline.record(Array(batch[chunk..<min(batch.count, chunk + 4_000)]))
        }
        try await pipeline.flush()
        var expected: [String: Decimal] = [:]
        for e in batch {
            expected[
                RFC3339.format(
                    Date(timeIntervalSince1970: (e.timestamp.timeIntervalSince1970 / 3600).rounded(.down) * 3600)),
                default: 0] += e.quantity
        }
        var billed: [String: Decimal] = [:]
        for r in fake.records { billed[r.usageTimestamp, default: 0] += Decimal(r.amount) }
        #expect(billed == expected, "each hour billed with every event once")
        let lane = try await #require(try await pipeline.spool.status().first)
        #expect(lane.aggregated == 12_001 && lane.queued == 0 && lane.delivered == 3)
    }

    /// Two folds given the same rows (two workers on one file read them both): the second
    /// finds them folded already and counts nothing.
    @Test func rowsFoldedTwiceCountOnce() async throws {
        let spool = try Spool(path: tempPath("twice.spool"))
        let spec = AggregationSpec(window: .fixed(seconds: 3600), formula: .sum)
        try await spool.record(
            (0..<10).map { RecordEntry(event: usage("t\($0)", minute: Double($0), 2), lanes: ["recurly/api_request"]) })
        let rows = try await spool.due(
            lane: "recurly/api_request", limit: 100, now: hourStart.addingTimeInterval(7200), windowRecords: false)
        #expect(rows.count == 10)
        try await spool.fold(rows, lane: "recurly/api_request", spec: spec)
        try await spool.fold(rows, lane: "recurly/api_request", spec: spec)
        let windows = try spool.windows(lane: "recurly/api_request")
        #expect(windows.count == 1)
        #expect(windows.first?.state.value == 20 && windows.first?.state.events == 10)
    }

    /// Recurly cannot dedupe: after a lost response, the record is looked up by merchant_tag and
    /// found, so it is not posted a second time.
    @Test(arguments: LedgerKind.allCases)
    func ambiguousFailureIsLookedUpNotChargedTwice(_ kind: LedgerKind) async throws {
        let fake = FakeRecurly()
        fake.state.with { $0.timeoutAfterApplying = true }
        let clock = TestClock(now: hourStart.addingTimeInterval(600))
        let pipeline = try UsagePipeline(
            config: try recurlyConfig(), ledger: try await kind.make("ambiguous"), client: fake, policy: quickRetries,
            clock: clock)
        try await pipeline.record([usage("a", minute: 1, 2), usage("b", minute: 2, 3)])
        try await pipeline.flush()
        #expect(fake.posts == 1, "one POST; the retry only looked")
        #expect(fake.gets == 1)
        #expect(fake.records.map(\.amount) == [5])
        let lane = try await #require(try await pipeline.spool.status().first)
        #expect(lane.duplicates == 1 && lane.delivered == 0 && lane.queued == 0)
    }

    /// A worker that died during the request (the row was marked as sending, never marked done):
    /// the next worker looks it up before posting.
    @Test(arguments: LedgerKind.allCases)
    func aSendCutShortByACrashIsLookedUpAfterRestart(_ kind: LedgerKind) async throws {
        let path = try await kind.make("crash").location
        let fake = FakeRecurly()
        let clock = TestClock(now: hourStart.addingTimeInterval(600))
        let config = try recurlyConfig()
        let spec = try #require(
            AggregationSpec(window: .fixed(seconds: 3600), grace: .seconds(300)) as AggregationSpec?)
        do {
            let pipeline = try UsagePipeline(
                config: config, ledger: try await openLedger(path), client: fake, policy: quickRetries, clock: clock)
            try await pipeline.record([usage("a", minute: 1, 6)])
            // What a worker does up to the request, then "dies" after Recurly stored it.
            let raw = try await pipeline.spool.due(
                lane: "recurly/api_request", limit: 10, now: clock.now(), windowRecords: false)
            try await pipeline.spool.fold(raw, lane: "recurly/api_request", spec: spec, now: clock.now())
            try await pipeline.spool.closeWindows(lane: "recurly/api_request", spec: spec, now: clock.now(), all: true)
            let record = try await #require(
                try await pipeline.spool.due(
                    lane: "recurly/api_request", limit: 10, now: clock.now(), windowRecords: true
                ).first)
            try await pipeline.spool.markSending([record.seq], now: clock.now())
            fake.apply(
                .object([
                    "merchant_tag": .string(record.event.id), "amount": .number(6),
                    "usage_timestamp": .string("2026-11-20T00:00:00Z"),
                ]))
        }
        let pipeline = try UsagePipeline(
            config: config, ledger: try await openLedger(path), client: fake, policy: quickRetries, clock: clock)
        try await pipeline.flush()
        #expect(fake.posts == 0, "found by its merchant_tag, so not posted again")
        #expect(fake.gets == 1)
        #expect(fake.records.count == 1)
        #expect(try await pipeline.spool.status().first?.duplicates == 1)
    }
}

@Suite("Aggregation without a spool")
struct RouterAggregationTests {
    /// An import reads in steps; windows span steps and are billed once, at the end.
    @Test func importBillsEachWindowOnceAfterReadingEverything() async throws {
        let fake = FakeRecurly()
        let router = try Router(
            config: try recurlyConfig(), client: fake, clock: TestClock(now: hourStart.addingTimeInterval(3 * 3600)))
        // two hours, 25 events
        let input = (0..<25).map { usage("e\($0)", minute: Double($0 * 4), Decimal($0 % 3 + 1)) }
        let path = tempPath("import.ndjson")
        let encoder = JSONEncoder()
        try Data(input.map { String(decoding: try encoder.encode($0), as: UTF8.self) }.joined(separator: "\n").utf8)
            .write(to: URL(fileURLWithPath: path))
        let summary = await Importer(router: router, policy: quickRetries, pace: false, batchSize: 7).run(
            try EventReader(path: path, format: .ndjson))
        #expect(fake.posts == 2, "one record per hour, though the input came in 4 steps")
        let billed: Double = fake.records.map(\.amount).reduce(0, +)
        let recorded: Double = input.map { NSDecimalNumber(decimal: $0.quantity).doubleValue }.reduce(0, +)
        #expect(billed == recorded)
        #expect(summary.counts["recurly/api_request (primary)"]?["aggregated"] == 25)
        #expect(summary.counts["recurly/api_request (primary) window records"]?["accepted"] == 2)
    }
}
