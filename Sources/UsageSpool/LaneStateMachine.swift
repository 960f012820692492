import Foundation
import UsageBilling

/// One lane's delivery loop as a value: ``DeliveryWorker`` tells it what happened (rows read, a
/// batch answered, marks written, the lane idle) and performs the action it returns (read, fold,
/// emit windows, deliver, write marks, wait, sleep, finish). It does no I/O and reads no clock
/// (the time comes in with ``next(now:)``), so every transition is tested without a spool or a
/// server.
///
/// Invariants:
/// - at most ``Configuration/inFlightLimit`` batches are in flight, and no two hold one
///   concurrency key (Stripe: one call per customer and meter);
/// - a row is in at most one batch, and is not handed out again until its mark is written: a
///   pass that restarts early for a due retry skips the rows still out (``outstanding``);
/// - held marks are written before the lane sleeps, stops or finishes (and handed to a write
///   before any new pass), so a finished lane has nothing unwritten;
/// - a lane that aggregates folds raw rows and emits due windows only with nothing in flight;
/// - after ``stop()`` no batch starts: the ones in flight finish, their marks are written, then
///   ``Action/finish``.
struct LaneStateMachine {
    struct Configuration: Sendable {
        /// The most events per `deliver` call.
        var batchSize: Int
        /// Batches in flight at once.
        var inFlightLimit: Int
        /// Whether the lane folds raw rows into windows and delivers window records.
        var aggregates: Bool
        /// Finish once nothing is due and nothing is scheduled (instead of polling).
        var untilEmpty: Bool
        /// Whether finished batches hand their marks back to be written together (`MarkHold`).
        var holdsMarks: Bool
        /// The longest sleep before looking for new rows.
        var idlePoll: Duration
        /// When to resend a batch that has waited too long; nil where a resend is not safe.
        var hedging: HedgePolicy?
    }

    /// A batch to deliver.
    struct Batch: Sendable {
        var rows: [QueuedDelivery]
        /// The concurrency keys it holds until ``LaneStateMachine/batchFinished(keys:marks:latency:)``.
        var keys: [ReadAhead.KeyToken]
        /// Resend it (same ids) if no answer came within this long; nil: never.
        var hedgeAfter: Duration?
    }

    enum Action {
        /// Write these marks (in a task of its own), then report ``marksWritten(_:)`` with `id`.
        case writeMarks(id: Int, [(seq: Int64, mark: DeliveryMark)])
        /// Wait for a batch or a write to finish and report it.
        case awaitCompletion
        /// Fold the lane's raw rows into their windows, until a read finds fewer than a full
        /// chunk; report ``folded()``.
        case fold
        /// Queue a record for each window that is due; report ``windowsEmitted()``.
        case emitWindows
        /// Read up to `limit` due rows after seq `after`; report ``rowsRead(_:)``.
        case read(after: Int64, limit: Int)
        /// Pace, then deliver the batch in a task of its own; report
        /// ``batchFinished(seqs:keys:marks:latency:unusedHedge:retryAt:)`` (or ``abandoned(_:)``
        /// if it never started).
        case deliver(Batch)
        /// Nothing is due: look up when the next row is; report ``idle(nextDue:now:)``.
        case checkIdle
        /// Sleep, then ask again.
        case sleep(Duration)
        /// The lane is done: nothing in flight, nothing held.
        case finish
    }

    private enum Phase {
        case top
        case folding
        case emitting
        case taking(readDone: Bool)
        /// Held marks are being written: nothing is read until they are (a new pass would read
        /// the rows they mark and send them again).
        case draining
        /// Rows this pass read are due again: held marks are handed to a write and a new pass
        /// starts from the oldest due row, skipping the rows still out (``outstanding``).
        case restarting
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
    private var hold: MarkHold
    private var latencies = LatencyWindow()
    init(configuration: Configuration, sink: any UsageSink, clock: any UsageClock) {
        self.configuration = configuration
        pending = ReadAhead(sink: sink, capacity: 2 * configuration.batchSize * configuration.inFlightLimit)
        hold = MarkHold(clock: clock)
    }

    // MARK: Events in

    /// Start no new batch: finish what is in flight, write what is held, then finish.
    mutating func stop() { stopping = true }

    mutating func rowsRead(_ rows: [QueuedDelivery]) {
        cursor = rows.last?.seq ?? cursor
        pending.append(outstanding.isEmpty ? rows : rows.filter { !outstanding.contains($0.seq) })
    }

    /// The fold ran (up to its first short read); due windows are emitted next, and new raw rows
    /// fold again once nothing is in flight.
    mutating func folded() { phase = .emitting }

    mutating func windowsEmitted() { phase = .taking(readDone: false) }

    /// A batch answered (or was cancelled, with no marks): its keys are free, its marks held if
    /// the lane holds them, and its latency counts toward the hedge delay.
    /// `seqs`: the batch's rows; unless their marks are handed back to be held, the batch wrote them.
    mutating func batchFinished(
        seqs: [Int64], keys: [ReadAhead.KeyToken], marks: [(seq: Int64, mark: DeliveryMark)], latency: Duration?,
        retryAt: Date? = nil
    ) {
        inFlight -= 1
        if !configuration.holdsMarks || marks.isEmpty { for seq in seqs { outstanding.remove(seq) } }
        if let retryAt { retryDue = min(retryDue ?? retryAt, retryAt) }
        for key in keys { busyKeys.release(key) }
        hold.add(marks)
        if let latency { latencies.record(latency) }
    }

    /// A batch from ``Action/deliver(_:)`` that never started (the lane stopped while pacing).
    mutating func abandoned(_ batch: Batch) {
        batchFinished(seqs: batch.rows.map(\.seq), keys: batch.keys, marks: [], latency: nil)
    }

    mutating func marksWritten(_ id: Int) {
        writing -= 1
        for seq in writes.removeValue(forKey: id) ?? [] { outstanding.remove(seq) }
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

    /// The next action at `now` (the worker's clock: when rows behind the cursor are due again).
    mutating func next(now: Date) -> Action {
        if stopping {
            if let marks = hold.take(force: true) { return write(marks) }
            return inFlight > 0 || writing > 0 ? .awaitCompletion : .finish
        }
        while true {
            switch phase {
            case .finished:
                if let marks = hold.take(force: true) { return write(marks) }
                return .finish
            case .sleeping(let duration):
                phase = .top
                return .sleep(duration)
            case .idle:
                return .checkIdle
            case .folding:
                return .fold
            case .emitting:
                return .emitWindows
            case .draining:
                if writing > 0 { return .awaitCompletion }
                phase = .top
            case .restarting:
                // Batches in flight go on (a hung one would stall the lane); their rows, and
                // those of the marks being written, stay `outstanding` and are skipped.
                if let marks = hold.take(force: true) { return write(marks) }
                cursor = 0
                pending.removeAll()
                retryDue = nil
                phase = .top
            case .top:
                if let marks = hold.take(force: false) { return write(marks) }
                if inFlight >= configuration.inFlightLimit { return .awaitCompletion }
                if configuration.aggregates && inFlight == 0 {
                    phase = .folding
                    return .fold
                }
                phase = .taking(readDone: false)
            case .taking(let readDone):
                if let due = retryDue, due <= now, cursor > 0 {
                    phase = .restarting
                    continue
                }
                let due = pending.take(configuration.batchSize, busy: busyKeys)
                if !due.isEmpty {
                    phase = .top
                    inFlight += 1
                    // closures, not key paths: on tuples these were built at run time per batch
                    let keys = due.compactMap { $0.key }
                    for key in keys { busyKeys.hold(key) }
                    for (row, _) in due { outstanding.insert(row.seq) }
                    // Every batch is armed; the lane's ``HedgeBudget`` decides when the delay passes.
                    return .deliver(Batch(rows: due.map { $0.row }, keys: keys, hedgeAfter: hedgeAfter))
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
                if let marks = hold.take(force: true) {
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
                phase = .idle
                return .checkIdle
            }
        }
    }

    private mutating func write(_ marks: [(seq: Int64, mark: DeliveryMark)]) -> Action {
        writing += 1
        nextWriteID += 1
        writes[nextWriteID] = marks.map(\.seq)
        return .writeMarks(id: nextWriteID, marks)
    }
}

/// When a request that has waited too long is sent again with the same ids (a hedge), for
/// providers that drop a repeated id: a request accepted and never answered (a dropped
/// connection, a load balancer that lost it) then costs its slot and its customer this long,
/// not the whole request timeout. The first answer that settles the batch wins; the other
/// request is cancelled, and if the provider had applied it, the hedge is answered `duplicate`.
public struct HedgePolicy: Sendable, Hashable {
    /// The delay is the lane's recent p99 latency times this...
    public var multiplier: Double
    /// ... but at least this (a fast lane's p99 is no reason to double its load)...
    public var floor: Duration
    /// ... and at most this.
    public var ceiling: Duration
    /// The delay while the lane has too few answers to tell its p99 (a fresh worker); nil: the
    /// ceiling.
    public var initial: Duration?

    /// A policy; see each property.
    public init(
        multiplier: Double = 4, floor: Duration = .milliseconds(250), ceiling: Duration, initial: Duration? = nil
    ) {
        self.multiplier = multiplier
        self.floor = floor
        self.ceiling = max(floor, ceiling)
        self.initial = initial.map { min(self.ceiling, max(floor, $0)) }
    }

    /// The policy for a lane whose requests time out after `timeout`: hedge well before it. With
    /// the provider's expected `answerTime`, a fresh lane hedges after `multiplier` times it.
    public static func forTimeout(_ timeout: Duration, answerTime: Duration? = nil) -> HedgePolicy {
        HedgePolicy(ceiling: min(timeout / 4, .seconds(2)), initial: answerTime.map { $0 * 4 })
    }

    /// The delay for a lane whose p99 latency is `p99` (nil: not known yet).
    public func delay(p99: Duration?) -> Duration {
        guard let p99 else { return initial ?? ceiling }
        return min(ceiling, max(floor, p99 * multiplier))
    }
}

/// The latencies of a lane's last 512 answers, and their 99th percentile (recomputed every 64
/// answers: a sort of 512 durations per batch would cost more than the batch's bookkeeping).
struct LatencyWindow {
    static let size = 512
    /// Fewer answers than this give no percentile (the hedge waits its ceiling).
    static let minimum = 32
    private var samples: [Duration] = []
    private var next = 0
    private var sinceSort = 0
    private(set) var p99: Duration?

    mutating func record(_ latency: Duration) {
        if samples.count < Self.size {
            samples.append(latency)
        } else {
            samples[next] = latency
            next = (next + 1) % Self.size
        }
        sinceSort += 1
        if samples.count >= Self.minimum && (p99 == nil || sinceSort >= 64) {
            sinceSort = 0
            let sorted = samples.sorted()
            p99 = sorted[min(sorted.count - 1, Int((Double(sorted.count) * 0.99).rounded(.down)))]
        }
    }
}

/// The marks of a lane's finished batches, held to be written together. A Stripe v1 lane
/// finishes a batch (one event) per request: writing each batch's marks before its slot and
/// concurrency keys came free made every request wait for a transaction of about ten marks, and
/// those transactions were a tenth of the delivery's CPU.
///
/// Held only on lanes that keep several requests in flight to a provider that drops a repeated
/// id: a crash loses the held marks, so those rows (about ``rows`` at most, or ``age`` worth) go
/// again with the same ids, as rows in flight at a crash always have. Everything held is written
/// before the lane starts a new pass, sleeps, stops or returns.
struct MarkHold {
    /// Written once this many are held...
    static let rows = 256
    /// ... or the oldest was held this long, by the lane's clock (so a test that controls the
    /// clock decides when age alone writes them).
    static let age: Duration = .milliseconds(20)
    let clock: any UsageClock
    private var marks: [(seq: Int64, mark: DeliveryMark)] = []
    private var since: Duration = .zero

    init(clock: any UsageClock) { self.clock = clock }

    var isEmpty: Bool { marks.isEmpty }

    mutating func add(_ more: [(seq: Int64, mark: DeliveryMark)]) {
        guard !more.isEmpty else { return }
        if marks.isEmpty { since = clock.monotonicNow() }
        marks += more
    }

    /// The held marks, if it is time to write them (or `force`), and holds none after.
    mutating func take(force: Bool) -> [(seq: Int64, mark: DeliveryMark)]? {
        guard !marks.isEmpty, force || marks.count >= Self.rows || clock.monotonicNow() - since >= Self.age else {
            return nil
        }
        defer { marks = [] }
        return marks
    }
}

/// A lane's rows read from the spool and not yet handed to a batch, in seq order, each with the
/// sink's concurrency key as a ``KeyToken``.
struct ReadAhead {
    /// A concurrency key's hash. Taking a row looks its key up among the busy keys for every
    /// row it passes (up to 64 for a Stripe lane, per request), and hashing the key's text each
    /// time was a fifth of the lane's time; two keys with one hash (no more likely than any
    /// 64-bit collision) would only wait for each other.
    typealias KeyToken = Int

    let sink: any UsageSink
    let capacity: Int
    private var rows: [QueuedDelivery] = []
    private var keys: [KeyToken?] = []  // parallel to `rows`

    init(sink: any UsageSink, capacity: Int) {
        self.sink = sink
        self.capacity = capacity
    }

    /// How many more rows fit.
    var room: Int { capacity - rows.count }
    /// How far past ``capacity`` the lane reads when every row held waits for a key in flight
    /// (one customer's request hangs while its rows pile up): other keys' rows go on meanwhile.
    var overflowLimit: Int { 4 * capacity }
    /// Rows held.
    var count: Int { rows.count }
    /// Whether no row is waiting.
    var isEmpty: Bool { rows.isEmpty }

    mutating func append(_ more: [QueuedDelivery]) {
        rows.append(contentsOf: more)
        keys.append(contentsOf: more.map { sink.concurrencyKey(for: $0.event)?.hashValue })
    }

    mutating func removeAll() {
        rows.removeAll(keepingCapacity: true)
        keys.removeAll(keepingCapacity: true)
    }

    /// Up to `limit` rows, oldest first, leaving in place those whose key a batch in flight holds.
    mutating func take(_ limit: Int, busy: BusyKeys) -> [(row: QueuedDelivery, key: KeyToken?)] {
        guard !rows.isEmpty else { return [] }
        if busy.isEmpty || !keys.contains(where: { $0 != nil }) {
            let n = min(limit, rows.count)
            defer {
                rows.removeFirst(n)
                keys.removeFirst(n)
            }
            return (0..<n).map { (rows[$0], keys[$0]) }
        }
        // Only the taken rows move (copying every kept row cost a retain and release each), and
        // one taken row (a Stripe v1 request) is a plain `remove(at:)`: the generic
        // `removeSubranges` cost more than the scan.
        var picked: [Int] = []
        for i in keys.indices where picked.count < limit {
            if keys[i].map({ !busy.contains($0) }) ?? true { picked.append(i) }
        }
        let taken = picked.map { (row: rows[$0], key: keys[$0]) }
        if picked.count == 1 {
            rows.remove(at: picked[0])
            keys.remove(at: picked[0])
        } else if !picked.isEmpty {
            let ranges = RangeSet(picked, within: keys)
            rows.removeSubranges(ranges)
            keys.removeSubranges(ranges)
        }
        return taken
    }
}

/// The concurrency keys the batches in flight hold, each with how many hold it: a table of key
/// tokens (already hashes) with open addressing. `ReadAhead.take` looks up the key of every row
/// it passes, up to 64 per Stripe v1 request; a `Dictionary` hashed each token again (SipHash),
/// a twentieth of the lane's time.
struct BusyKeys: ExpressibleByDictionaryLiteral {
    private var tokens: [ReadAhead.KeyToken]
    private var holders: [Int]  // 0: the slot is free
    private var shift: Int  // 64 − log2(slots)
    /// How many distinct keys are held.
    private(set) var count = 0

    init() { self.init(slots: 64) }

    private init(slots: Int) {
        tokens = [ReadAhead.KeyToken](repeating: 0, count: slots)
        holders = [Int](repeating: 0, count: slots)
        shift = 64 - slots.trailingZeroBitCount
    }

    /// Keys with their holder counts (tests).
    init(dictionaryLiteral elements: (ReadAhead.KeyToken, Int)...) {
        self.init()
        for (token, n) in elements { for _ in 0..<n { hold(token) } }
    }

    var isEmpty: Bool { count == 0 }

    /// The token's home slot (Fibonacci hashing: the multiply spreads any bits into the top ones).
    private func home(_ token: ReadAhead.KeyToken) -> Int {
        Int(truncatingIfNeeded: (UInt64(UInt(bitPattern: token)) &* 0x9E37_79B9_7F4A_7C15) >> UInt64(shift))
    }

    /// The slot holding `token`, or the free slot where it would go.
    private func find(_ token: ReadAhead.KeyToken) -> (slot: Int, found: Bool) {
        let mask = holders.count - 1
        var i = home(token)
        while holders[i] != 0 {
            if tokens[i] == token { return (i, true) }
            i = (i + 1) & mask
        }
        return (i, false)
    }

    func contains(_ token: ReadAhead.KeyToken) -> Bool { count > 0 && find(token).found }

    /// One more batch holds `token`.
    mutating func hold(_ token: ReadAhead.KeyToken) {
        if (count + 1) * 2 > holders.count { grow() }
        let (slot, found) = find(token)
        if !found {
            tokens[slot] = token
            count += 1
        }
        holders[slot] += 1
    }

    /// A batch holding `token` finished; the key is free once no batch holds it.
    mutating func release(_ token: ReadAhead.KeyToken) {
        var (hole, found) = find(token)
        guard found else { return }
        holders[hole] -= 1
        guard holders[hole] == 0 else { return }
        count -= 1
        // Backward-shift deletion: move up each later entry of the run that may sit in the hole
        // (its home is not between the hole and it), so every lookup's probe stays unbroken.
        let mask = holders.count - 1
        var j = (hole + 1) & mask
        while holders[j] != 0 {
            if (j - home(tokens[j])) & mask >= (j - hole) & mask {
                tokens[hole] = tokens[j]
                holders[hole] = holders[j]
                holders[j] = 0
                hole = j
            }
            j = (j + 1) & mask
        }
    }

    private mutating func grow() {
        var bigger = BusyKeys(slots: holders.count * 2)
        for i in holders.indices where holders[i] != 0 {
            let (slot, _) = bigger.find(tokens[i])
            bigger.tokens[slot] = tokens[i]
            bigger.holders[slot] = holders[i]
            bigger.count += 1
        }
        self = bigger
    }
}
