import Foundation
import UsageBilling

/// One lane's delivery loop as a value: ``DeliveryWorker`` tells it what happened (rows read, a
/// chunk folded, a batch paced or answered, marks written, the lane idle) and performs the action
/// it returns. Every decision is the machine's: which rows go in which batch, when marks are
/// written, how raw rows fold in chunks, when windows are due, whether a paced batch still goes
/// after a stop, when the queue depth is sampled. It does no I/O and reads no clock (the time
/// comes in with ``next(now:)``), so every transition is tested without a spool or a server.
///
/// Invariants:
/// - at most ``Configuration/inFlightLimit`` batches are in flight, and no two hold one
///   concurrency key (Stripe: one call per customer and meter);
/// - a row is in at most one batch, and is not handed out again until its mark is written: a
///   pass that restarts early for a due retry skips the rows still out (``outstanding``);
/// - every mark is written by a ``Action/writeMarks(id:_:)`` the machine hands out; held marks
///   are written before the lane sleeps, stops or finishes (and before any new pass), so a
///   finished lane has nothing unwritten;
/// - a lane that aggregates folds raw rows and emits due windows only with nothing in flight;
/// - after ``stop()`` no batch starts (a batch still pacing is abandoned): the ones in flight
///   finish, their marks are written, then ``Action/finish``.
struct LaneStateMachine {
    struct Configuration: Sendable {
        /// The most events per `deliver` call.
        var batchSize: Int
        /// Batches in flight at once.
        var inFlightLimit: Int
        /// How the lane folds raw rows into windows and delivers window records; nil: it does not.
        var aggregation: Aggregation?
        /// Finish once nothing is due and nothing is scheduled (instead of polling).
        var untilEmpty: Bool
        /// Whether finished batches' marks are held to be written together (``MarkHold``);
        /// otherwise they are written as soon as each batch answers.
        var holdsMarks: Bool
        /// The longest sleep before looking for new rows.
        var idlePoll: Duration
        /// When to resend a batch that has waited too long; nil where a resend is not safe.
        var hedging: HedgePolicy?
        /// Whether the lane has a rate limit: each batch is paced (``Action/pace(_:)``) first.
        var paces = false
        /// Whether a batch's send is noted in the ledger before it starts
        /// (``Action/noteSending(_:)``): for providers looked at before a resend.
        var notesSends = false
        /// How often a batch also samples the lane's queue depth (a count over its queued rows).
        var depthSampleInterval: Duration = .seconds(1)

        var aggregates: Bool { aggregation != nil }
    }

    /// A lane that bills per window.
    struct Aggregation: Sendable {
        /// How long after a window's end it is emitted.
        var grace: Duration
        /// Emit every window with new events, due or not (the last run before a lane goes).
        var closeAll: Bool
        /// Raw rows per fold: each fold reads and rewrites every window it touches, so bigger
        /// folds touch each one less often.
        var foldChunk = 5_000
    }

    /// A batch to deliver.
    struct Batch: Sendable {
        var rows: [QueuedDelivery]
        /// The concurrency keys it holds until ``LaneStateMachine/batchFinished(seqs:keys:marks:latency:retryAt:)``.
        var keys: [ReadAhead.KeyToken]
        /// Resend it (same ids) if no answer came within this long; nil: never.
        var hedgeAfter: Duration?
    }

    enum Action {
        /// Write these marks (in a task of its own), then report ``marksWritten(_:)`` with `id`.
        case writeMarks(id: Int, [(seq: Int64, mark: DeliveryMark)])
        /// Wait for a batch or a write to finish and report it.
        case awaitCompletion
        /// Read up to `limit` raw rows (not window records) due now after seq `after`; report
        /// ``rawRowsRead(_:)``.
        case readRaw(after: Int64, limit: Int)
        /// Fold `rows` into their windows while reading the next raw rows (`thenRead`, nil: no
        /// more this time); report ``folded(next:)``. Reads run beside the write: under a steady
        /// stream a read is never empty, so the fold ends at the first short read.
        case fold([QueuedDelivery], thenRead: (after: Int64, limit: Int)?)
        /// Look up when the lane's earliest window with new events ends; report
        /// ``windowsChecked(nextEnd:)``.
        case checkWindows
        /// Queue a record for each window that is due (every window with new events, `all`);
        /// report ``windowsEmitted()``.
        case closeWindows(all: Bool)
        /// Read up to `limit` due rows after seq `after`; report ``rowsRead(_:)``.
        case read(after: Int64, limit: Int)
        /// Wait for the lane's rate limit for this batch; report ``paced(_:)``.
        case pace(Batch)
        /// Note durably that the batch's send is starting; report ``sendingNoted(_:)``.
        case noteSending(Batch)
        /// Deliver the batch in a task of its own (and sample the queue depth after it, with
        /// `sampleDepth`); report ``batchFinished(seqs:keys:marks:latency:retryAt:)``.
        case deliver(Batch, sampleDepth: Bool)
        /// Nothing is due and nothing of the lane is out (no batch in flight, no mark unwritten):
        /// confirm the voids made meanwhile (``UsageLedger/confirmVoids(lane:lease:)``), sample
        /// the queue depth, look up when the next row is; report ``idle(nextDue:now:)``.
        case checkIdle
        /// Apply up to this many corrections due on the lane (only with nothing in flight and
        /// every mark written, so a row delivered in this pass counts as delivered), then
        /// ``correctionsApplied(more:windowsChanged:)``.
        case applyCorrections(limit: Int)
        /// Sleep, then ask again.
        case sleep(Duration)
        /// The lane is done: nothing in flight, nothing held. Its voids are confirmed.
        case finish
    }

    private enum Phase {
        case top
        /// Folding raw rows: `rows` read and waiting to fold, or nil to read the first chunk.
        case folding(rows: [QueuedDelivery]?)
        /// Asking when the earliest window with new events ends.
        case checkingWindows
        /// The earliest window with new events ends at `nextEnd` (nil: none has any).
        case windowsChecked(nextEnd: Date?)
        case closingWindows
        case taking(readDone: Bool)
        /// A batch waits for its pace, or for its send to be noted.
        case pacing(Batch)
        case noting(Batch)
        /// A batch paced (and noted, `noted`): it goes, unless the lane stopped meanwhile.
        case ready(Batch, noted: Bool)
        /// Held marks are being written: nothing is read until they are (a new pass would read
        /// the rows they mark and send them again).
        case draining
        /// Rows this pass read are due again: held marks are handed to a write and a new pass
        /// starts from the oldest due row, skipping the rows still out (``outstanding``).
        case restarting
        case correcting
        case idle
        case sleeping(Duration)
        case finished
    }

    let configuration: Configuration
    private var phase = Phase.top
    private(set) var inFlight = 0
    private(set) var writing = 0
    private(set) var stopping = false
    /// Rows up to `cursor` were read in this pass: while batches are in flight the next read
    /// starts after them; once none is, the pass starts over (rows due again later).
    private(set) var cursor: Int64 = 0
    /// The earliest time a row behind the cursor is due again (its retry mark): once it passes,
    /// the pass ends early, so a retry waits its backoff and not for the rest of the backlog.
    private(set) var retryDue: Date?
    /// Rows handed to a batch whose marks are not written yet (in flight, held, or being
    /// written): still queued in the spool, so a new pass that starts before they are marked
    /// reads them again and must not send them twice.
    private(set) var outstanding: Set<Int64> = []
    /// The rows each write in progress marks, by the write's id.
    private var writes: [Int: [Int64]] = [:]
    private var nextWriteID = 0
    /// Rows read ahead for every batch that may be in flight (twice that, read again once half is
    /// free), so a lane whose rows wait for their concurrency key reads in large steps.
    private var pending: ReadAhead
    private var busyKeys = BusyKeys()
    private var hold = MarkHold()
    private var latencies = LatencyWindow()
    private var lastDepthSample: Date?

    init(configuration: Configuration, sink: any UsageSink) {
        self.configuration = configuration
        pending = ReadAhead(sink: sink, capacity: 2 * configuration.batchSize * configuration.inFlightLimit)
    }

    // MARK: Events in

    /// Start no new batch: finish what is in flight, write what is held, then finish.
    mutating func stop() { stopping = true }

    /// Corrections applied per ``Action/applyCorrections(limit:)``.
    static let correctionsPerStep = 100

    mutating func rowsRead(_ rows: [QueuedDelivery]) {
        cursor = rows.last?.seq ?? cursor
        pending.append(outstanding.isEmpty ? rows : rows.filter { !outstanding.contains($0.seq) })
    }

    /// The answer to ``Action/readRaw(after:limit:)``.
    mutating func rawRowsRead(_ rows: [QueuedDelivery]) {
        phase = rows.isEmpty ? .checkingWindows : .folding(rows: rows)
    }

    /// A chunk folded; `next`: the raw rows read meanwhile (empty: the fold is done, due windows
    /// are emitted next, and new raw rows fold again once nothing is in flight).
    mutating func folded(next: [QueuedDelivery]) { rawRowsRead(next) }

    /// The answer to ``Action/checkWindows``.
    mutating func windowsChecked(nextEnd: Date?) { phase = .windowsChecked(nextEnd: nextEnd) }

    mutating func windowsEmitted() { phase = .taking(readDone: false) }

    /// The answer to ``Action/pace(_:)``.
    mutating func paced(_ batch: Batch) { phase = .ready(batch, noted: false) }

    /// The answer to ``Action/noteSending(_:)``.
    mutating func sendingNoted(_ batch: Batch) { phase = .ready(batch, noted: true) }

    /// A batch answered (or was cancelled, with no marks): its keys are free, its marks held (or
    /// handed to a write at once, when the lane does not hold them), and its latency counts
    /// toward the hedge delay. `seqs`: the batch's rows, outstanding until their marks are written.
    /// `retryAt`: the earliest time one of its rows is due again, if any was marked for a retry.
    mutating func batchFinished(
        seqs: [Int64], keys: [ReadAhead.KeyToken], marks: [(seq: Int64, mark: DeliveryMark)], latency: Duration?,
        retryAt: Date? = nil
    ) {
        inFlight -= 1
        if marks.isEmpty { for seq in seqs { outstanding.remove(seq) } }
        if let retryAt { retryDue = min(retryDue ?? retryAt, retryAt) }
        for key in keys { busyKeys.release(key) }
        hold.add(marks)
        if let latency { latencies.record(latency) }
    }

    /// A batch from ``Action/pace(_:)`` that never went (the lane stopped while it paced).
    mutating func abandoned(_ batch: Batch) {
        batchFinished(seqs: batch.rows.map(\.seq), keys: batch.keys, marks: [], latency: nil)
    }

    mutating func marksWritten(_ id: Int) {
        writing -= 1
        for seq in writes.removeValue(forKey: id) ?? [] { outstanding.remove(seq) }
    }

    /// The answer to ``Action/applyCorrections(limit:)``: `more` when the limit was reached;
    /// `windowsChanged` when voids were folded into windows, whose next revisions a new pass
    /// emits.
    mutating func correctionsApplied(more: Bool, windowsChanged: Bool) {
        phase = more ? .correcting : windowsChanged ? .top : .idle
    }

    /// The answer to ``Action/checkIdle``: when the lane's next row is due (nil: none queued).
    mutating func idle(nextDue: Date?, now: Date) {
        guard let nextDue else {
            phase = configuration.untilEmpty ? .finished : .sleeping(configuration.idlePoll)
            return
        }
        phase = .sleeping(.seconds(max(0.001, min(nextDue.timeIntervalSince(now), configuration.idlePoll.seconds))))
    }

    /// How long a new batch waits for its answer before it is resent: the policy over the lane's
    /// recent latencies.
    var hedgeAfter: Duration? { configuration.hedging.map { $0.delay(p99: latencies.p99) } }

    // MARK: Actions out

    /// The next action at `now` (the worker's clock: when rows behind the cursor are due again,
    /// when held marks are old enough, when windows are due).
    mutating func next(now: Date) -> Action {
        if case .ready(let batch, _) = phase, stopping {
            phase = .top
            abandoned(batch)
        }
        if stopping {
            if let marks = hold.take(force: true, now: now) { return write(marks) }
            return inFlight > 0 || writing > 0 ? .awaitCompletion : .finish
        }
        if !configuration.holdsMarks, let marks = hold.take(force: true, now: now) { return write(marks) }
        while true {
            switch phase {
            case .finished:
                if let marks = hold.take(force: true, now: now) { return write(marks) }
                return .finish
            case .sleeping(let duration):
                phase = .top
                return .sleep(duration)
            case .correcting:
                return .applyCorrections(limit: Self.correctionsPerStep)
            case .idle:
                return .checkIdle
            case .folding(nil):
                return .readRaw(after: 0, limit: configuration.aggregation?.foldChunk ?? 1)
            case .folding(let rows?):
                let chunk = configuration.aggregation?.foldChunk ?? 1
                let more = rows.count >= chunk ? rows.last.map { (after: $0.seq, limit: chunk) } : nil
                return .fold(rows, thenRead: more)
            case .checkingWindows:
                return .checkWindows
            case .windowsChecked(let nextEnd):
                guard let aggregation = configuration.aggregation, let nextEnd,
                    aggregation.closeAll || nextEnd.timeIntervalSince(now) + aggregation.grace.seconds <= 0
                else {
                    phase = .taking(readDone: false)
                    continue
                }
                phase = .closingWindows
            case .closingWindows:
                return .closeWindows(all: configuration.aggregation?.closeAll ?? false)
            case .pacing(let batch):
                return .pace(batch)
            case .noting(let batch):
                return .noteSending(batch)
            case .ready(let batch, let noted):
                if configuration.notesSends && !noted {
                    phase = .noting(batch)
                    continue
                }
                phase = .top
                return deliver(batch, now: now)
            case .draining:
                if writing > 0 { return .awaitCompletion }
                phase = .top
            case .restarting:
                // Batches in flight go on (a hung one would stall the lane); their rows, and
                // those of the marks being written, stay `outstanding` and are skipped.
                if let marks = hold.take(force: true, now: now) { return write(marks) }
                cursor = 0
                pending.removeAll()
                retryDue = nil
                phase = .top
            case .top:
                if let marks = hold.take(force: false, now: now) { return write(marks) }
                if inFlight >= configuration.inFlightLimit { return .awaitCompletion }
                if configuration.aggregates && inFlight == 0 {
                    phase = .folding(rows: nil)
                    continue
                }
                phase = .taking(readDone: false)
            case .taking(let readDone):
                if let due = retryDue, due <= now, cursor > 0 {
                    phase = .restarting
                    continue
                }
                let due = pending.take(configuration.batchSize, busy: busyKeys)
                if !due.isEmpty {
                    inFlight += 1
                    // closures, not key paths: on tuples these were built at run time per batch
                    let keys = due.compactMap { $0.key }
                    for key in keys { busyKeys.hold(key) }
                    for (row, _) in due { outstanding.insert(row.seq) }
                    // Every batch is armed; the lane's ``HedgeBudget`` decides when the delay passes.
                    let batch = Batch(rows: due.map { $0.row }, keys: keys, hedgeAfter: hedgeAfter)
                    phase = configuration.paces ? .pacing(batch) : .ready(batch, noted: false)
                    continue
                }
                if !readDone && (pending.isEmpty || pending.room >= pending.capacity / 2) {
                    phase = .taking(readDone: true)
                    return .read(after: cursor, limit: pending.room)
                }
                // Every row held waits for a key a batch in flight holds: read further (up to the
                // overflow limit), so one slow key does not stop the others' rows behind its own.
                if !readDone && inFlight > 0 && pending.count < pending.overflowLimit {
                    phase = .taking(readDone: true)
                    return .read(after: cursor, limit: max(1, pending.capacity / 2))
                }
                phase = .top
                if inFlight > 0 { return .awaitCompletion }  // a batch finishing frees its keys
                // Every mark written before a new pass, a sleep or the end.
                if let marks = hold.take(force: true, now: now) {
                    phase = .draining
                    return write(marks)
                }
                if writing > 0 {
                    phase = .draining
                    return .awaitCompletion
                }
                if cursor > 0 {  // a new pass, from the oldest due row
                    cursor = 0
                    pending.removeAll()
                    retryDue = nil
                    continue
                }
                phase = .correcting
            }
        }
    }

    private mutating func deliver(_ batch: Batch, now: Date) -> Action {
        let sample =
            lastDepthSample.map { now.timeIntervalSince($0) >= configuration.depthSampleInterval.seconds } ?? true
        if sample { lastDepthSample = now }
        return .deliver(batch, sampleDepth: sample)
    }

    private mutating func write(_ marks: [(seq: Int64, mark: DeliveryMark)]) -> Action {
        writing += 1
        nextWriteID += 1
        writes[nextWriteID] = marks.map(\.seq)
        return .writeMarks(id: nextWriteID, marks)
    }
}
