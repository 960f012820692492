import Foundation
import Testing
import UsageBilling
import UsageBillingTesting
@testable import UsageSpool

/// The lane's state machine, driven by hand: no spool, no server, no clock but a stopped one.
@Suite("Lane state machine")
struct LaneStateMachineTests {
    typealias Machine = LaneStateMachine
    static let now = Date(timeIntervalSince1970: 10_000)

    static func machine(
        batch: Int = 1, inFlight: Int = 2, aggregation: Machine.Aggregation? = nil, untilEmpty: Bool = true,
        holdsMarks: Bool = false, hedging: HedgePolicy? = nil, paces: Bool = false, notesSends: Bool = false
    ) -> Machine {
        Machine(
            configuration: .init(
                batchSize: batch, inFlightLimit: inFlight, aggregation: aggregation, untilEmpty: untilEmpty,
                holdsMarks: holdsMarks, idlePoll: .milliseconds(200), hedging: hedging, paces: paces,
                notesSends: notesSends),
            sink: KeyedSink())
    }

    static func rows(_ customers: [String], from first: Int64 = 1) -> [QueuedDelivery] {
        customers.enumerated().map { i, customer in
            QueuedDelivery(
                seq: first + Int64(i),
                event: UsageEvent(id: "e\(first + Int64(i))", name: "api_request", customer: customer), attempts: 0)
        }
    }

    /// The batch a `.deliver` action carries, or a failed expectation naming what came instead.
    static func delivered(_ action: Machine.Action, sourceLocation: SourceLocation = #_sourceLocation) -> Machine.Batch?
    {
        guard case .deliver(let batch, _) = action else {
            Issue.record("expected a delivery, got \(action)", sourceLocation: sourceLocation)
            return nil
        }
        return batch
    }

    @Test func readsThenFillsItsSlotsThenWaits() throws {
        var m = Self.machine(inFlight: 2)
        guard case .read(let after, let limit) = m.next(now: Self.now) else {
            Issue.record("a fresh lane reads first"); return
        }
        #expect(after == 0 && limit == 4, "twice the rows every slot can carry, from the start")
        m.rowsRead(Self.rows(["a", "b", "c"]))
        let first = try #require(Self.delivered(m.next(now: Self.now)))
        let second = try #require(Self.delivered(m.next(now: Self.now)))
        #expect(first.rows.map(\.seq) == [1] && second.rows.map(\.seq) == [2], "oldest first, one per slot")
        guard case .awaitCompletion = m.next(now: Self.now) else {
            Issue.record("with every slot busy the lane waits"); return
        }
        m.batchFinished(seqs: first.rows.map(\.seq), keys: first.keys, marks: [], latency: .milliseconds(5))
        #expect(
            try #require(Self.delivered(m.next(now: Self.now))).rows.map(\.seq) == [3],
            "a freed slot takes the next row")
        #expect(m.inFlight == 2 && m.cursor == 3)
    }

    @Test func aBusyConcurrencyKeyWaitsForItsBatch() throws {
        var m = Self.machine(inFlight: 4)
        _ = m.next(now: Self.now)
        m.rowsRead(Self.rows(["a", "a", "b"]))
        let a1 = try #require(Self.delivered(m.next(now: Self.now)))
        let b = try #require(Self.delivered(m.next(now: Self.now)))
        #expect(
            a1.rows.map(\.seq) == [1] && b.rows.map(\.seq) == [3],
            "the second 'a' row waits while the first is in flight")
        guard case .read = m.next(now: Self.now) else { Issue.record("with room to spare it reads on"); return }
        m.rowsRead([])
        guard case .awaitCompletion = m.next(now: Self.now) else { Issue.record("nothing else may go: wait"); return }
        m.batchFinished(seqs: a1.rows.map(\.seq), keys: a1.keys, marks: [], latency: nil)
        #expect(try #require(Self.delivered(m.next(now: Self.now))).rows.map(\.seq) == [2], "the key is free again")
    }

    @Test func heldMarksAreWrittenBeforeTheLaneGoesIdleAndFinishes() throws {
        var m = Self.machine(inFlight: 2, holdsMarks: true)
        _ = m.next(now: Self.now)
        m.rowsRead(Self.rows(["a"]))
        let batch = try #require(Self.delivered(m.next(now: Self.now)))
        m.batchFinished(seqs: batch.rows.map(\.seq), keys: batch.keys, marks: [(1, .delivered)], latency: nil)
        // The pass read nothing more: a new pass from the start, then nothing due.
        guard case .read(let after, _) = m.next(now: Self.now) else {
            Issue.record("reads on after the first row"); return
        }
        #expect(after == 1)
        m.rowsRead([])
        let action = m.next(now: Self.now)
        guard case .writeMarks(let id, let marks) = action else {
            Issue.record("held marks are written before the lane idles, got \(action)"); return
        }
        #expect(marks.map(\.seq) == [1])
        guard case .awaitCompletion = m.next(now: Self.now) else {
            Issue.record("and nothing is read until the write finishes"); return
        }
        m.marksWritten(id)
        guard case .read(let again, _) = m.next(now: Self.now) else {
            Issue.record("then it looks once more after the cursor"); return
        }
        #expect(again == 1)
        m.rowsRead([])
        guard case .read(let restart, _) = m.next(now: Self.now) else {
            Issue.record("then a new pass from the oldest due row"); return
        }
        #expect(restart == 0)
        m.rowsRead([])
        guard case .applyCorrections = m.next(now: Self.now) else {
            Issue.record("nothing in flight and every mark written: corrections due are applied"); return
        }
        m.correctionsApplied(more: false, windowsChanged: false)
        guard case .checkIdle = m.next(now: Self.now) else {
            Issue.record("nothing due: ask when the next row is"); return
        }
        m.idle(nextDue: nil, now: Date())
        guard case .finish = m.next(now: Self.now) else {
            Issue.record("until-empty with nothing queued finishes"); return
        }
    }

    @Test(arguments: [(nil, 0.2), (30.0, 0.2), (0.05, 0.05)] as [(Double?, Double)])
    func anIdleLaneSleepsUntilItsNextRowOrItsPoll(_ dueIn: Double?, _ expected: Double) {
        var m = Self.machine(untilEmpty: false)
        _ = m.next(now: Self.now)
        m.rowsRead([])
        guard case .applyCorrections = m.next(now: Self.now) else {
            Issue.record("an empty lane applies its due corrections"); return
        }
        m.correctionsApplied(more: false, windowsChanged: false)
        guard case .checkIdle = m.next(now: Self.now) else {
            Issue.record("an empty lane checks when the next row is due"); return
        }
        let now = Date(timeIntervalSince1970: 5_000)
        m.idle(nextDue: dueIn.map { now.addingTimeInterval($0) }, now: now)
        guard case .sleep(let d) = m.next(now: Self.now) else { Issue.record("a lane that runs on sleeps"); return }
        #expect(abs(d.seconds - expected) < 1e-6, "slept \(d)")
        guard case .read = m.next(now: Self.now) else { Issue.record("and looks again after"); return }
    }

    /// Corrections are applied only once the pass has nothing in flight and nothing unwritten:
    /// a full step asks for more, and voids folded into windows start a new pass, whose window
    /// check emits the lowered revisions.
    @Test func correctionsWaitForAQuietLaneAndFoldedVoidsStartANewPass() throws {
        var m = Self.machine(inFlight: 1)
        _ = m.next(now: Self.now)
        m.rowsRead(Self.rows(["a"]))
        let batch = try #require(Self.delivered(m.next(now: Self.now)))
        guard case .awaitCompletion = m.next(now: Self.now) else {
            Issue.record("a batch in flight: no correction yet"); return
        }
        m.batchFinished(seqs: batch.rows.map(\.seq), keys: batch.keys, marks: [(1, .delivered)], latency: nil)
        guard case .writeMarks(let id, _) = m.next(now: Self.now) else { Issue.record("its mark first"); return }
        m.marksWritten(id)
        var action = m.next(now: Self.now)
        while case .read = action {
            m.rowsRead([])
            action = m.next(now: Self.now)
        }
        guard case .applyCorrections(let limit) = action else { Issue.record("then corrections: \(action)"); return }
        #expect(limit == Machine.correctionsPerStep)
        m.correctionsApplied(more: true, windowsChanged: false)
        guard case .applyCorrections = m.next(now: Self.now) else { Issue.record("a full step asks again"); return }

        var windowed = Self.machine(aggregation: .init(grace: .seconds(60), closeAll: true))
        guard case .readRaw = windowed.next(now: Self.now) else { Issue.record("a windowed lane folds first"); return }
        windowed.rawRowsRead([])
        guard case .checkWindows = windowed.next(now: Self.now) else { Issue.record("then checks windows"); return }
        windowed.windowsChecked(nextEnd: nil)
        action = windowed.next(now: Self.now)
        while case .read = action {
            windowed.rowsRead([])
            action = windowed.next(now: Self.now)
        }
        guard case .applyCorrections = action else { Issue.record("then corrections: \(action)"); return }
        windowed.correctionsApplied(more: false, windowsChanged: true)
        guard case .readRaw = windowed.next(now: Self.now) else {
            Issue.record("voids folded into windows: a new pass, which emits them"); return
        }
    }

    @Test func stoppingStartsNothingNewAndFinishesWhatIsInFlight() throws {
        var m = Self.machine(inFlight: 2, holdsMarks: true)
        _ = m.next(now: Self.now)
        m.rowsRead(Self.rows(["a", "b", "c"]))
        let first = try #require(Self.delivered(m.next(now: Self.now)))
        m.stop()
        guard case .awaitCompletion = m.next(now: Self.now) else {
            Issue.record("the batch in flight is waited for"); return
        }
        m.batchFinished(seqs: first.rows.map(\.seq), keys: first.keys, marks: [(1, .delivered)], latency: nil)
        guard case .writeMarks(let id, let marks) = m.next(now: Self.now) else {
            Issue.record("its marks are written"); return
        }
        #expect(marks.map(\.seq) == [1])
        guard case .awaitCompletion = m.next(now: Self.now) else { Issue.record("the write is waited for"); return }
        m.marksWritten(id)
        guard case .finish = m.next(now: Self.now) else {
            Issue.record("then the lane finishes, rows 2 and 3 left queued"); return
        }
    }

    @Test func anAggregatingLaneFoldsThenEmitsThenDelivers() throws {
        var m = Self.machine(inFlight: 1, aggregation: .init(grace: .seconds(5), closeAll: false, foldChunk: 2))
        guard case .readRaw(0, 2) = m.next(now: Self.now) else { Issue.record("raw rows are read first"); return }
        m.rawRowsRead(Self.rows(["a", "b"]))
        guard case .fold(let first, let more) = m.next(now: Self.now), let more else {
            Issue.record("a full chunk folds while the next is read"); return
        }
        #expect(first.map(\.seq) == [1, 2] && more.after == 2 && more.limit == 2)
        m.folded(next: Self.rows(["c"], from: 3))
        guard case .fold(let last, nil) = m.next(now: Self.now) else {
            Issue.record("a short chunk folds and nothing more is read"); return
        }
        #expect(last.map(\.seq) == [3])
        m.folded(next: [])
        guard case .checkWindows = m.next(now: Self.now) else { Issue.record("then windows are looked at"); return }
        m.windowsChecked(nextEnd: Self.now.addingTimeInterval(-4))
        guard case .read = m.next(now: Self.now) else {
            Issue.record("a window within its grace waits: window records are read"); return
        }
        m.rowsRead(Self.rows(["a"]))
        let batch = try #require(Self.delivered(m.next(now: Self.now)))
        guard case .awaitCompletion = m.next(now: Self.now) else { Issue.record("one record at a time"); return }
        m.batchFinished(seqs: batch.rows.map(\.seq), keys: batch.keys, marks: [], latency: nil)
        guard case .readRaw = m.next(now: Self.now) else {
            Issue.record("and with nothing in flight, new raw rows fold first"); return
        }
        m.rawRowsRead([])
        guard case .checkWindows = m.next(now: Self.now) else { Issue.record("nothing to fold: windows"); return }
        m.windowsChecked(nextEnd: Self.now.addingTimeInterval(-5))
        guard case .closeWindows(all: false) = m.next(now: Self.now) else {
            Issue.record("a window past its end and grace is emitted"); return
        }
        m.windowsEmitted()
        guard case .read = m.next(now: Self.now) else { Issue.record("then its record is read"); return }
    }

    /// The last run before a lane goes emits every window with new events, due or not.
    @Test func closingAllEmitsWindowsThatAreNotDue() throws {
        var m = Self.machine(inFlight: 1, aggregation: .init(grace: .seconds(5), closeAll: true))
        _ = m.next(now: Self.now)
        m.rawRowsRead([])
        _ = m.next(now: Self.now)
        m.windowsChecked(nextEnd: Self.now.addingTimeInterval(3600))
        guard case .closeWindows(all: true) = m.next(now: Self.now) else {
            Issue.record("every window is emitted"); return
        }
        m.windowsEmitted()
        m.stop()
        guard case .finish = m.next(now: Self.now) else { Issue.record("stopped between steps: it finishes"); return }
    }

    /// A paced batch is delivered once paced, unless the lane stopped meanwhile: then it never
    /// goes, and its rows and keys are free. A lane that notes sends notes the batch after its
    /// pace and before its send.
    @Test func aPacedBatchGoesOnlyIfTheLaneIsStillRunning() throws {
        var m = Self.machine(inFlight: 2, paces: true, notesSends: true)
        _ = m.next(now: Self.now)
        m.rowsRead(Self.rows(["a", "b"]))
        guard case .pace(let first) = m.next(now: Self.now) else { Issue.record("a batch is paced first"); return }
        m.paced(first)
        guard case .noteSending(let noted) = m.next(now: Self.now), noted.rows.map(\.seq) == [1] else {
            Issue.record("then its send is noted"); return
        }
        m.sendingNoted(noted)
        #expect(try #require(Self.delivered(m.next(now: Self.now))).rows.map(\.seq) == [1], "then it goes")
        guard case .pace(let second) = m.next(now: Self.now) else { Issue.record("the next batch paces"); return }
        m.paced(second)
        m.stop()
        guard case .awaitCompletion = m.next(now: Self.now) else {
            Issue.record("stopped while pacing: the paced batch is dropped, the one in flight awaited"); return
        }
        #expect(m.inFlight == 1 && !m.outstanding.contains(2), "the abandoned batch's row is free")
    }

    /// A lane that does not hold marks writes each batch's marks as soon as it answers, and the
    /// rows stay outstanding until the write is done.
    @Test func marksAreWrittenByTheMachineAsBatchesAnswer() throws {
        var m = Self.machine(inFlight: 2, holdsMarks: false)
        _ = m.next(now: Self.now)
        m.rowsRead(Self.rows(["a", "b"]))
        let first = try #require(Self.delivered(m.next(now: Self.now)))
        m.batchFinished(seqs: [1], keys: first.keys, marks: [(1, .delivered)], latency: nil)
        guard case .writeMarks(let id, let marks) = m.next(now: Self.now) else {
            Issue.record("the answer's marks are written first"); return
        }
        #expect(marks.map(\.seq) == [1] && m.outstanding.contains(1), "row 1 is out until written")
        m.marksWritten(id)
        #expect(!m.outstanding.contains(1))
    }

    /// The queue depth is sampled with the first batch and then at most once per interval.
    @Test func theQueueDepthIsSampledOncePerInterval() throws {
        var m = Self.machine(inFlight: 3)
        _ = m.next(now: Self.now)
        m.rowsRead(Self.rows(["a", "b", "c"]))
        var samples: [Bool] = []
        for t in [0.0, 0.5, 1.0] {
            guard case .deliver(_, let sample) = m.next(now: Self.now.addingTimeInterval(t)) else {
                Issue.record("expected a delivery"); return
            }
            samples.append(sample)
        }
        #expect(samples == [true, false, true])
    }

    /// A row marked for a retry is sent again once its time comes, not after the rest of the
    /// pass: a new pass starts at once, without waiting for the batches in flight (one may hang
    /// until its timeout), and skips their rows, which the spool still has queued.
    @Test func aDueRetryStartsANewPassThatSkipsRowsStillOut() throws {
        var m = Self.machine(inFlight: 3)
        _ = m.next(now: Self.now)
        m.rowsRead(Self.rows(["a", "b", "c", "d"]))
        let first = try #require(Self.delivered(m.next(now: Self.now)))
        let hung = try #require(Self.delivered(m.next(now: Self.now)))
        m.batchFinished(
            seqs: first.rows.map(\.seq), keys: first.keys, marks: [], latency: nil,
            retryAt: Self.now.addingTimeInterval(1))
        #expect(
            try #require(Self.delivered(m.next(now: Self.now))).rows.map(\.seq) == [3],
            "before the retry is due, the pass goes on")
        m.batchFinished(seqs: [3], keys: [], marks: [], latency: nil)
        let later = Self.now.addingTimeInterval(2)
        guard case .read(let after, _) = m.next(now: later) else {
            Issue.record("once it is due, a new pass reads from the start at once"); return
        }
        #expect(after == 0 && m.retryDue == nil && m.outstanding == [hung.rows[0].seq])
        m.rowsRead(Self.rows(["a", "b"]))  // the spool still has row 2 queued: its batch is in flight
        #expect(try #require(Self.delivered(m.next(now: later))).rows.map(\.seq) == [1], "the retry goes")
        guard case .read(let next, _) = m.next(now: later) else {
            Issue.record("with a slot free and row 2 skipped, it reads on"); return
        }
        #expect(next == 2, "row 2 was read, and skipped rather than sent a second time")
    }

    @Test func theHedgeDelayFollowsTheLanesLatencyWithinItsBounds() throws {
        let policy = HedgePolicy(multiplier: 4, floor: .milliseconds(250), ceiling: .seconds(2))
        var m = Self.machine(inFlight: 1, hedging: policy)
        #expect(m.hedgeAfter == .seconds(2), "no answers yet: the ceiling")
        func answers(_ n: Int, _ latency: Duration) {
            for _ in 0..<n {
                _ = m.next(now: Self.now)
                m.rowsRead(Self.rows(["a"]))
                guard case .deliver(let b, _) = m.next(now: Self.now) else { return }
                m.batchFinished(seqs: b.rows.map(\.seq), keys: b.keys, marks: [], latency: latency)
            }
        }
        answers(LatencyWindow.minimum, .milliseconds(10))
        #expect(m.hedgeAfter == .milliseconds(250), "a fast lane hedges no sooner than the floor")
        answers(LatencyWindow.size, .milliseconds(200))
        #expect(m.hedgeAfter == .milliseconds(800), "p99 × 4")
        answers(LatencyWindow.size, .seconds(1))
        #expect(m.hedgeAfter == .seconds(2), "never past the ceiling")
        #expect(Self.machine(hedging: nil).hedgeAfter == nil, "a lane whose provider keeps repeats never hedges")
        #expect(HedgePolicy.forTimeout(.seconds(4)).ceiling == .seconds(1), "well before the request timeout")
    }

    /// A fresh lane (no latencies yet) hedges after its provider's expected answer time × 4,
    /// within the bounds, and every batch in flight is armed, however many there are: the lane's
    /// hedge budget is spent when a hedge is sent, not when a batch starts.
    @Test func aFreshLaneHedgesFromItsFirstBatchAndArmsEveryBatch() throws {
        let policy = HedgePolicy.forTimeout(.seconds(10), answerTime: .milliseconds(250))
        #expect(policy.initial == .seconds(1) && policy.ceiling == .seconds(2))
        #expect(
            HedgePolicy.forTimeout(.seconds(10), answerTime: .seconds(5)).initial == .seconds(2),
            "never past the ceiling")
        var m = Self.machine(inFlight: 30, hedging: policy)
        _ = m.next(now: Self.now)
        m.rowsRead(Self.rows((0..<30).map { "c\($0)" }))
        for _ in 0..<30 {
            let batch = try #require(Self.delivered(m.next(now: Self.now)))
            #expect(batch.hedgeAfter == .seconds(1), "batch \(batch.rows[0].seq) is armed with the fresh lane's delay")
        }
    }

    /// One key's request hangs while its rows pile up in the read-ahead: the lane reads past its
    /// capacity (up to the overflow limit), so the other keys' rows keep going.
    @Test func oneHungKeyDoesNotStopTheOthers() throws {
        var m = Self.machine(inFlight: 2)  // capacity 4
        _ = m.next(now: Self.now)
        m.rowsRead(Self.rows(["x", "x", "x", "x"]))
        let hung = try #require(Self.delivered(m.next(now: Self.now)))
        #expect(hung.rows.map(\.seq) == [1])
        // Three 'x' rows wait; the read-ahead is nearly full of them.
        guard case .read(let after, let limit) = m.next(now: Self.now) else {
            Issue.record("reads past the rows that wait for the hung key"); return
        }
        #expect(after == 4 && limit >= 1)
        m.rowsRead(Self.rows(["y"], from: 5))
        let other = try #require(Self.delivered(m.next(now: Self.now)))
        #expect(other.rows.map(\.seq) == [5], "another key's row goes while 'x' hangs")
        m.batchFinished(seqs: other.rows.map(\.seq), keys: other.keys, marks: [], latency: nil)
        // Reading stops at the overflow limit: rows held never pass 4 × the capacity.
        var reads = 0
        while case .read(_, let n) = m.next(now: Self.now), reads < 100 {
            reads += 1
            m.rowsRead(Self.rows(Array(repeating: "x", count: n), from: 100 + Int64(reads) * 10))
        }
        #expect(reads > 0 && reads < 100, "it stops reading once the overflow limit is reached")
    }
}

@Suite("Hedge budget")
struct HedgeBudgetTests {
    @Test func aHedgeIsSpentWhenSentAndEarnedBackByAnsweredBatches() {
        let budget = HedgeBudget()
        #expect((0..<10).allSatisfy { _ in budget.take() }, "a fresh lane may hedge ten times at once")
        #expect(!budget.take(), "then it is spent")
        for _ in 0..<9 { budget.batchAnswered() }
        #expect(!budget.take(), "a tenth of a hedge per batch answered")
        budget.batchAnswered()
        #expect(budget.take())
        for _ in 0..<1_000 { budget.batchAnswered() }
        #expect(budget.available == HedgeBudget.burst, "never more than the burst")
    }
}

/// The fleet's fair share of lanes, without a database.
@Suite("Lane share")
struct LaneShareTests {
    @Test func aWorkerTakesItsShareAndHandsOffTheLastTakenWhenWorkersJoin() {
        var share = LaneShare(lanes: 6)
        let alone = share.workersAlive(1)
        #expect(alone.isEmpty && share.share == 6)
        for lane in ["a", "b", "c", "d", "e", "f"] {
            let taken = share.take(lane)
            #expect(taken)
        }
        let twice = share.take("a")
        #expect(!twice, "a lane is held once")
        let joined = share.workersAlive(3)
        #expect(joined == ["c", "d", "e", "f"], "three workers: a share of 2, the last four taken go")
        let again = share.workersAlive(3)
        #expect(again.isEmpty, "asked once")
        let beyond = share.take("g")
        #expect(!beyond, "no lane beyond the share while the hand-offs finish")
        for lane in ["c", "d", "e", "f"] { share.released(lane) }
        let atShare = share.take("c")
        #expect(share.held == ["a", "b"] && !atShare)
        let died = share.workersAlive(2)
        let grown = share.take("c")
        #expect(died.isEmpty && share.share == 3 && grown, "a worker died: the share grows and a lane is taken")
        #expect(LaneShare(lanes: 5).share == 5)
        var five = LaneShare(lanes: 5)
        _ = five.workersAlive(3)
        #expect(five.share == 2, "5 lanes over 3 workers: 2, 2 and 1")
        _ = five.workersAlive(0)
        #expect(five.share == 5, "no heartbeat answer yet reads as alone")
    }
}

/// Waiting for a shared ledger that is down: the retry engine's curve, jittered, capped.
@Suite("Ledger outage waits")
struct LedgerOutageWaitTests {
    @Test func waitsGrowToFiveSecondsWithJitterAndGiveUpWhenAsked() throws {
        let first = (0..<50).compactMap { _ in LedgerUnavailableError.wait(outages: 1) }
        #expect(
            first.count == 50 && first.allSatisfy { $0 <= .milliseconds(250) } && Set(first).count > 1,
            "jittered under 0.25 s")
        let later = (0..<50).compactMap { _ in LedgerUnavailableError.wait(outages: 12) }
        #expect(later.allSatisfy { $0 <= .seconds(5) } && later.contains { $0 > .seconds(1) }, "capped at 5 s")
        #expect(
            LedgerUnavailableError.wait(outages: 3, elapsed: .seconds(61), giveUpAfter: .seconds(60)) == nil,
            "import gives up after a minute")
    }
}
