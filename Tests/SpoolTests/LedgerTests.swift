import Foundation
import Testing
import UsageBilling
import UsageBillingTesting
import UsageRouting
import UsageTestSupport
@testable import UsageSpool

/// The two ledgers the tests run against: the SQLite spool and the shared PostgreSQL ledger
/// (a real server the tests start, `PostgresServer`).
enum LedgerKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite, postgres
    var testDescription: String { rawValue }

    /// A new, empty ledger of this kind: a fresh file, or a fresh database on the shared server.
    func make(_ tag: String) async throws -> any UsageLedger {
        switch self {
        case .sqlite: return try Spool(path: tempPath("\(tag).spool"))
        case .postgres: return try await PostgresLedger.open(try await PostgresServer.shared().database(tag))
        }
    }
}

@Suite("Ledger contract", .timeLimit(.minutes(2)))
struct LedgerContractTests {
    static let reason = RejectionReason(code: "http_400", message: "refused", origin: .provider)

    /// An event recorded twice (by one process or two) is one event; each lane gets one row;
    /// rows come out in recording order, and marks move them to their final state.
    @Test(arguments: LedgerKind.allCases)
    func recordOnceReadInOrderMark(_ kind: LedgerKind) async throws {
        let ledger = try await kind.make("contract")
        let batch = events(5, prefix: "c")
        try await ledger.record(batch.map { RecordEntry(event: $0, lanes: ["a/x", "b/x", "a/x"]) }, now: Date())
        let second = try await openLedger(ledger.location)
        // recorded before: nothing changes
        try await second.record(batch.map { RecordEntry(event: $0, lanes: ["a/x", "c/x"]) }, now: Date())
        #expect(try await ledger.queuedCount(lane: nil) == 10)
        let due = try await ledger.due(lane: "a/x", limit: 10, now: Date(), windowRecords: nil, after: 0)
        #expect(due.map(\.event.id) == batch.map(\.id))
        // The payload round-trips (the timestamp to well under a microsecond: it is stored as seconds since 1970).
        let back = try #require(due.first?.event), sent = batch[0]
        #expect(
            back.id == sent.id && back.name == sent.name && back.customer == sent.customer
                && back.quantity == sent.quantity
                && back.properties == sent.properties && abs(back.timestamp.timeIntervalSince(sent.timestamp)) < 1e-6)
        #expect(
            try await ledger.due(lane: "a/x", limit: 2, now: Date(), windowRecords: nil, after: due[1].seq).map(
                \.event.id) == ["c-2", "c-3"])
        try await ledger.mark(
            [
                (due[0].seq, .delivered), (due[1].seq, .duplicate), (due[2].seq, .dead(Self.reason)),
                (due[3].seq, .retry(at: Date().addingTimeInterval(3600), reason: "429")),
            ], now: Date(), lease: nil)
        let status = try #require(try await ledger.status().first { $0.lane == "a/x" })
        #expect(
            status.delivered == 1 && status.duplicates == 1 && status.dead == ["http_400": 1] && status.queued == 2
                && status.retrying == 1)
        #expect(
            try await ledger.due(lane: "a/x", limit: 10, now: Date(), windowRecords: nil, after: 0).map(\.event.id) == [
                "c-4"
            ], "the retry waits")
        #expect(try await ledger.nextDue(lane: "a/x").map { $0 <= Date() } == true, "c-4 is due now")
        #expect(try await ledger.deadLetters(reason: nil, limit: 10).map(\.eventID) == ["c-2"])
        #expect(try await ledger.laneNames() == ["a/x", "b/x"])
        var seen: [String] = []
        try await ledger.ledger(lane: "a/x") { event, state in if state != .dead { seen.append(event.id) } }
        #expect(seen == ["c-0", "c-1", "c-3", "c-4"])
        #expect(try await ledger.retryDeadLetters(reason: "http_400", now: Date()) == 1)
        #expect(try await ledger.queuedCount(lane: "a/x") == 3)
        let busy = try await ledger.hasQueued(lane: "a/x"), idle = try await ledger.hasQueued(lane: "z/x")
        #expect(busy && !idle)
    }

    /// Concurrent one-event calls (as serve's doors make them) share commits: every id is
    /// recorded once, exactly one caller of each id is told it is new, and the others that it
    /// was recorded before.
    @Test(arguments: LedgerKind.allCases)
    func concurrentCallersOfOneIdRecordItOnce(_ kind: LedgerKind) async throws {
        let ledger = try await kind.make("concurrent")
        let batch = events(10, prefix: "g")
        let known = try await withThrowingTaskGroup(of: [String].self) { group in
            for i in 0..<64 {
                group.addTask {
                    try await ledger.record([RecordEntry(event: batch[i % 10], lanes: ["a/x"])], now: Date())
                }
            }
            var all: [String] = []
            for try await ids in group { all += ids }
            return all
        }
        #expect(known.count == 54, "64 calls of 10 ids: 54 told the id was recorded before")
        #expect(Set(known) == Set(batch.map(\.id)), "each id came back from some later call")
        #expect(try await ledger.queuedCount(lane: "a/x") == 10)
    }

    /// How far behind a lane is: when its oldest queued row was recorded.
    @Test(arguments: LedgerKind.allCases)
    func oldestQueuedIsTheLanesFirstUndeliveredRow(_ kind: LedgerKind) async throws {
        let ledger = try await kind.make("oldest")
        let early = Date(timeIntervalSince1970: 1_800_000_000), late = early.addingTimeInterval(600)
        let batch = events(2, prefix: "o")
        try await ledger.record([RecordEntry(event: batch[0], lanes: ["a/x"])], now: early)
        try await ledger.record([RecordEntry(event: batch[1], lanes: ["a/x"])], now: late)
        #expect(try await ledger.oldestQueued(lane: "a/x") == early)
        let due = try await ledger.due(lane: "a/x", limit: 10, now: Date(), windowRecords: nil, after: 0)
        try await ledger.mark([(due[0].seq, .delivered)], now: Date(), lease: nil)
        #expect(try await ledger.oldestQueued(lane: "a/x") == late)
        try await ledger.mark([(due[1].seq, .delivered)], now: Date(), lease: nil)
        #expect(try await ledger.oldestQueued(lane: "a/x") == nil)
        #expect(try await ledger.oldestQueued(lane: "none/x") == nil)
    }

    /// The backlog at past instants, from when rows were recorded and when they left the queue:
    /// three rows recorded at t0, t0+10 and t0+20; the first delivered at t0+15.
    @Test(arguments: LedgerKind.allCases)
    func backlogHistoryCountsRowsQueuedAtEachInstant(_ kind: LedgerKind) async throws {
        let ledger = try await kind.make("history")
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        let batch = events(3, prefix: "h")
        for (i, event) in batch.enumerated() {
            try await ledger.record(
                [RecordEntry(event: event, lanes: ["a/x"])], now: t0.addingTimeInterval(Double(i) * 10))
        }
        let due = try await ledger.due(lane: "a/x", limit: 10, now: Date(), windowRecords: nil, after: 0)
        try await ledger.mark([(due[0].seq, .delivered)], now: t0.addingTimeInterval(15), lease: nil)
        let instants = [-1.0, 5, 12, 17, 25].map { t0.addingTimeInterval($0) }
        #expect(try await ledger.backlogHistory(at: instants) == ["a/x": [0, 1, 2, 1, 2]])
        #expect(try await ledger.backlogHistory(at: []).isEmpty)
    }

    /// Rows folded into windows count once however many times they are handed to a fold, and a
    /// closed window becomes one queued record with a derived id; a later event makes the next revision.
    @Test(arguments: LedgerKind.allCases)
    func foldOnceAndEmitRecords(_ kind: LedgerKind) async throws {
        let ledger = try await kind.make("windows")
        let spec = AggregationSpec(window: .fixed(seconds: 3600), formula: .sum)
        let start = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 / 3600).rounded(.down) * 3600 - 7200)
        let usage = (0..<10).map {
            UsageEvent(
                id: "w\($0)", name: "seats", customer: "acme", timestamp: start.addingTimeInterval(Double($0) * 60),
                quantity: 2)
        }
        try await ledger.record(usage.map { RecordEntry(event: $0, lanes: ["recurly/seats"]) }, now: Date())
        let rows = try await ledger.due(lane: "recurly/seats", limit: 100, now: Date(), windowRecords: false, after: 0)
        try await ledger.fold(rows, lane: "recurly/seats", spec: spec, now: Date())
        try await ledger.fold(rows, lane: "recurly/seats", spec: spec, now: Date())
        let windows = try await ledger.windows(lane: "recurly/seats")
        #expect(windows.count == 1 && windows.first?.state.value == 20 && windows.first?.state.events == 10)
        #expect(try await ledger.nextWindowEnd(lane: "recurly/seats") == start.addingTimeInterval(3600))
        #expect(try await ledger.closeWindows(lane: "recurly/seats", spec: spec, now: Date(), all: false) == 1)
        #expect(
            try await ledger.closeWindows(lane: "recurly/seats", spec: spec, now: Date(), all: false) == 0,
            "nothing new")
        let record = try #require(
            try await ledger.due(lane: "recurly/seats", limit: 10, now: Date(), windowRecords: true, after: 0).first)
        #expect(
            record.isWindowRecord && record.event.quantity == 20 && AggregateInfo(record.event).windowStart == start)
        let late = UsageEvent(
            id: "w-late", name: "seats", customer: "acme", timestamp: start.addingTimeInterval(30), quantity: 5)
        try await ledger.record([RecordEntry(event: late, lanes: ["recurly/seats"])], now: Date())
        try await ledger.fold(
            try await ledger.due(lane: "recurly/seats", limit: 10, now: Date(), windowRecords: false, after: 0),
            lane: "recurly/seats", spec: spec, now: Date())
        #expect(try await ledger.closeWindows(lane: "recurly/seats", spec: spec, now: Date(), all: true) == 1)
        let records = try await ledger.due(lane: "recurly/seats", limit: 10, now: Date(), windowRecords: true, after: 0)
        #expect(
            records.map(\.event.quantity) == [20, 5] && Set(records.map(\.event.id)).count == 2,
            "the next revision carries the increment")
        let status = try #require(try await ledger.status().first)
        #expect(status.aggregated == 11 && status.openWindows == 0 && status.queued == 2)
    }

    /// Lanes move and drop as a whole; dead letters of dropped lanes say why.
    @Test(arguments: LedgerKind.allCases)
    func reassignAndDropLanes(_ kind: LedgerKind) async throws {
        let ledger = try await kind.make("lanes")
        try await ledger.record(
            events(4, prefix: "l").map { RecordEntry(event: $0, lanes: ["old/x", "keep/x"]) }, now: Date())
        let moved = try await ledger.reassignLane("old/x", to: "new/x", targetAggregates: false)
        #expect(moved.rows == 4 && moved.windows == 0)
        #expect(try await ledger.laneNames() == ["keep/x", "new/x"])
        await #expect { _ = try await ledger.reassignLane("old/x", to: "new/x", targetAggregates: false) } throws: {
            ($0 as? UsageBillingError)?.field == "from"
        }
        let dropped = try await ledger.dropLane("new/x", now: Date())
        #expect(dropped.rows == 4)
        #expect(try await ledger.deadLetters(reason: "lane_removed", limit: 10).count == 4)
        #expect(try await ledger.orphanedLanes(known: ["keep/x"]).isEmpty)
        #expect(try await ledger.orphanedLanes(known: []).map(\.lane) == ["keep/x"])
        try await ledger.renameLanes([("keep/x", "kept/x")])
        #expect(try await ledger.queuedCount(lane: "kept/x") == 4)
    }

    /// Stripe's later refusals turn delivered rows of that provider's lanes into dead letters.
    @Test(arguments: LedgerKind.allCases)
    func rejectDeliveredOnAProvidersLanes(_ kind: LedgerKind) async throws {
        let ledger = try await kind.make("reject")
        try await ledger.record(
            events(3, prefix: "r").map { RecordEntry(event: $0, lanes: ["stripe/api_request", "orb/api_request"]) },
            now: Date())
        for lane in ["stripe/api_request", "orb/api_request"] {
            let rows = try await ledger.due(lane: lane, limit: 10, now: Date(), windowRecords: nil, after: 0)
            try await ledger.mark(rows.map { ($0.seq, .delivered) }, now: Date(), lease: nil)
        }
        #expect(
            try await ledger.rejectDelivered(
                [("r-1", Self.reason), ("nope", Self.reason)], provider: "stripe", now: Date()) == 1)
        let lanes = Dictionary(uniqueKeysWithValues: try await ledger.status().map { ($0.lane, $0) })
        #expect(lanes["stripe/api_request"]?.dead == ["http_400": 1] && lanes["orb/api_request"]?.dead.isEmpty == true)
        #expect(try await ledger.purgeDeadLetters(reason: nil) == 1)
    }
}

@Suite("Shared ledger: leases", .timeLimit(.minutes(2)))
struct LeaseTests {
    /// One owner at a time per lane; a lease that expired is taken with a newer token; marks
    /// under the old token change nothing and say so.
    @Test func oneOwnerPerLaneAndFencedMarks() async throws {
        let ledger = try await LedgerKind.postgres.make("lease")
        let other = try await PostgresLedger.open(ledger.location)  // a second process's view
        try await ledger.record(events(2, prefix: "f").map { RecordEntry(event: $0, lanes: ["stripe/x"]) }, now: Date())
        // Long enough that a loaded machine's pauses end well inside each lease; the renewal then
        // shortens it, and the test waits past its end.
        let first = try #require(try await ledger.acquireLease(lane: "stripe/x", owner: "w1", ttl: .seconds(30)))
        #expect(try await other.acquireLease(lane: "stripe/x", owner: "w2", ttl: .seconds(30)) == nil, "held by w1")
        #expect(try await ledger.renewLease(first, ttl: .seconds(2)))
        #expect(try await ledger.leases().map(\.owner) == ["w1"])
        try await Task.sleep(for: .milliseconds(2_500))
        let second = try #require(
            try await other.acquireLease(lane: "stripe/x", owner: "w2", ttl: .seconds(30)), "expired: w2 takes it")
        #expect(second.token > first.token)
        #expect(try await ledger.renewLease(first, ttl: .seconds(30)) == false, "w1's lease is gone")
        let rows = try await ledger.due(lane: "stripe/x", limit: 10, now: Date(), windowRecords: nil, after: 0)
        await #expect(throws: LeaseLostError.self) {
            try await ledger.mark(rows.map { ($0.seq, .delivered) }, now: Date(), lease: first)
        }
        #expect(try await ledger.queuedCount(lane: "stripe/x") == 2, "the fenced marks changed nothing")
        try await other.mark(rows.map { ($0.seq, .delivered) }, now: Date(), lease: second)
        #expect(try await ledger.queuedCount(lane: "stripe/x") == 0)
        try await other.releaseLease(second)
        #expect(
            try await ledger.acquireLease(lane: "stripe/x", owner: "w1", ttl: .seconds(1)) != nil,
            "released: free at once")
    }

    /// Concurrent first starts migrate the schema once; a bad URL names what is wrong and the fix.
    @Test func concurrentOpensAndBadURLs() async throws {
        let url = try await PostgresServer.shared().database("open")
        let versions = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<4 { group.addTask { try await PostgresLedger.open(url).schemaVersion() } }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        let latest = PostgresLedger.migrations.last?.version ?? 0
        #expect(latest >= 2 && versions == [Int](repeating: latest, count: 4))
        for (bad, says) in [
            ("postgres://host:5432/db", "has no user"), ("postgres://u:secret-pw@/db", "has no host"),
            ("postgres://u@h/db?sslmode=sometimes", "sslmode=sometimes"), ("postgres://u@h/db?timeout=5", "'timeout'"),
        ] {
            await #expect { _ = try await PostgresLedger.open(bad) } throws: { error in
                let text = "\(error)"
                return text.contains(says) && !text.contains("secret-pw") && (error as? UsageBillingError)?.fix != nil
            }
        }
        // Nothing listens there: unavailable, retryable, and the password is not in the message.
        let closed = try ClosedPort()
        await #expect {
            _ = try await PostgresLedger.open("postgres://u:secret-pw@127.0.0.1:\(closed.port)/db?sslmode=disable")
        } throws: { error in
            error is LedgerUnavailableError && !"\(error)".contains("secret-pw")
        }
    }
}

@Suite("Shared ledger: connection loss", .timeLimit(.minutes(2)))
struct LedgerRestartTests {
    /// The database restarts under an open ledger: calls in the gap fail with
    /// `LedgerUnavailableError` (retry with the same ids: the ledger dedupes) and the same ledger
    /// works again once the server is back, with everything committed before still there.
    @Test func aRestartIsRetryableNotFatal() async throws {
        let server = try await PostgresServer.dedicated()
        let ledger = try await PostgresLedger.open(try await server.database("restart"))
        try await ledger.record(events(3, prefix: "before").map { RecordEntry(event: $0, lanes: ["a/x"]) }, now: Date())
        // Calls in flight while the server goes down end (one way or the other); none hangs.
        let busy = Task {
            var outcomes = (ok: 0, unavailable: 0)
            for i in 0..<200 {
                do {
                    try await ledger.record(
                        [
                            RecordEntry(
                                event: UsageEvent(id: "during-\(i)", name: "api_request", customer: "acme"),
                                lanes: ["a/x"])
                        ], now: Date())
                    outcomes.ok += 1
                } catch is LedgerUnavailableError {
                    outcomes.unavailable += 1
                }
                try await Task.sleep(for: .milliseconds(10))
            }
            return outcomes
        }
        try await Task.sleep(for: .milliseconds(300))
        try await server.restart()
        let during = try await busy.value
        #expect(during.ok + during.unavailable == 200)
        var unavailable = 0
        let after = events(3, prefix: "after").map { RecordEntry(event: $0, lanes: ["a/x"]) }
        let recorded = try await eventually(within: .seconds(30), every: .milliseconds(200)) {
            do {
                try await ledger.record(after, now: Date())
                return true
            } catch is LedgerUnavailableError {
                unavailable += 1
                return false
            }
        }
        #expect(recorded, "the ledger works again after the restart")
        try await ledger.record(after, now: Date())  // said twice: still once
        // A call whose answer was lost may have been written: between the calls answered and all.
        let queued = try await ledger.queuedCount(lane: "a/x")
        #expect(queued >= 6 + during.ok && queued <= 6 + during.ok + during.unavailable)
        print(
            "restart: \(during.unavailable) of 200 calls during the restart refused as unavailable, \(unavailable) after it"
        )
    }
}

@Suite("Shared ledger: TLS", .timeLimit(.minutes(2)))
struct LedgerTLSTests {
    /// A server that takes TCP connections only over TLS (as managed databases do), with a
    /// self-signed certificate: `sslmode=require` works, plain text is refused by the server,
    /// and `verify-full` refuses a certificate no CA signed.
    @Test func sslmodeRequireEncryptsAndVerifyFullVerifies() async throws {
        let server = try await PostgresServer.dedicated(tls: true)
        let url = try await server.database("tls")
        #expect(url.hasSuffix("sslmode=require"))
        let ledger = try await PostgresLedger.open(url)
        try await ledger.record(events(1, prefix: "tls").map { RecordEntry(event: $0, lanes: ["a/x"]) }, now: Date())
        #expect(try await ledger.queuedCount(lane: "a/x") == 1)
        let name = String(url.split(separator: "/").last?.split(separator: "?").first ?? "")
        await #expect { _ = try await PostgresLedger.open(server.url(name, sslmode: "disable")) } throws: { error in
            // The server refuses plain text as a login failure; the fix names sslmode.
            (error as? UsageBillingError)?.code == .configuration
                && (error as? UsageBillingError)?.fix?.contains("sslmode=require") == true
        }
        await #expect { _ = try await PostgresLedger.open(server.url(name, sslmode: "verify-full")) } throws: { error in
            print("verify-full against a self-signed certificate: \(error)")
            return error is LedgerUnavailableError && "\(error)".lowercased().contains("certificate")
        }
    }
}

@Suite("Copying a ledger", .timeLimit(.minutes(2)))
struct LedgerCopyTests {
    /// A spool with rows in every state and windows goes into PostgreSQL and back: the same
    /// counts per lane, the same windows; an interrupted copy run again copies the rest once;
    /// the worker then delivers what was queued from the copy.
    @Test func spoolToPostgresAndBackKeepsEveryRowOnce() async throws {
        let spool = try Spool(path: tempPath("copy.spool"))
        try await spool.record(
            events(30, prefix: "cp").map { RecordEntry(event: $0, lanes: ["stripe/api_request", "orb/api_request"]) },
            now: Date())
        try await spool.record(
            [
                RecordEntry(
                    event: UsageEvent(id: "cp-unrouted", name: "gpu", customer: "acme"), lanes: [],
                    deadLetter: ("unrouted", RejectionReason(code: "unrouted", message: "no route", origin: .local)))
            ], now: Date())
        let rows = try await spool.due(lane: "stripe/api_request", limit: 10, now: Date(), windowRecords: nil, after: 0)
        try await spool.mark(
            [
                (rows[0].seq, .delivered), (rows[1].seq, .duplicate), (rows[2].seq, .dead(LedgerContractTests.reason)),
                (rows[3].seq, .retry(at: Date().addingTimeInterval(60), reason: "429")),
            ], now: Date(), lease: nil)
        let spec = AggregationSpec(window: .fixed(seconds: 3600), formula: .sum)
        try await spool.record(
            events(5, prefix: "seat").map { RecordEntry(event: $0, lanes: ["recurly/seats"]) }, now: Date())
        try await spool.fold(
            try await spool.due(lane: "recurly/seats", limit: 10, now: Date(), windowRecords: false, after: 0),
            lane: "recurly/seats", spec: spec, now: Date())

        // Corrections: a void of a delivered event (pending on stripe, withheld on orb), a void of
        // a queued one (withheld), an amend with its replacement recorded.
        _ = try await spool.void(["cp-0", "cp-20"], reason: "test customer", now: Date())
        let amend = try await spool.amend("cp-21", quantity: 9, reason: "wrong unit", now: Date())
        try await spool.record(
            [RecordEntry(event: amend.replacement, lanes: ["stripe/api_request", "orb/api_request"])], now: Date())
        let corrections = try await spool.corrections(of: nil)
        #expect(corrections.count == 3)

        let postgres = try await LedgerKind.postgres.make("copy")
        // Interrupted: the first batch only, then the whole copy again.
        let first = try await spool.exportEntries(afterKey: 0, limit: 10)
        #expect(try await postgres.importEntries(first) == 10)
        let report = try await copyLedger(from: spool, to: postgres, batch: 7)
        #expect(report.events == 37 && report.copied == 27 && report.windows == 1 && report.corrections == 3)
        #expect(try await postgres.corrections(of: nil) == corrections, "every correction, with its lanes")
        #expect(try await copyLedger(from: spool, to: postgres).copied == 0, "a second run copies nothing")
        #expect(try await postgres.status() == (try await spool.status()))
        #expect(
            try await postgres.windows(lane: "recurly/seats").map(\.state)
                == (try await spool.windows(lane: "recurly/seats").map(\.state)))
        #expect(
            try await postgres.deadLetters(reason: nil, limit: 10).map(\.eventID).sorted() == ["cp-2", "cp-unrouted"])

        let back = try Spool(path: tempPath("copy-back.spool"))
        let again = try await copyLedger(from: postgres, to: back)
        #expect(again.copied == 37 && again.corrections == 3)
        #expect(try await back.status() == (try await spool.status()))
        #expect(try await back.corrections(of: nil) == corrections)
        // The copied pending void waits on the copied row: the worker's query finds it due.
        let due = try back.dueCorrections(lane: "stripe/api_request", now: Date(), limit: 10)
        #expect(due.map(\.event.id).contains("cp-0"), "\(due.map(\.event.id))")
        await #expect(throws: UsageBillingError.self) { _ = try await copyLedger(from: back, to: back) }
    }
}
