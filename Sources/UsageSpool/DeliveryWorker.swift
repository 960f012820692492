import Foundation
import Logging
import Metrics
import ServiceLifecycle
import UsageBilling
import UsageRouting

/// Drains the spool: one loop per lane, each reading its due rows in order (up to the sink's
/// batch size), pacing by the sink's rate limit, delivering, and marking every row delivered,
/// duplicate, dead (with the reason) or due again later by the retry policy. Lanes never wait for
/// each other, and since every mark is durable, a restarted worker resumes where it stopped
/// (rows sent but not yet marked go again with the same ids; the provider dedupes them). A lane
/// with several requests in flight to a provider that dedupes holds its marks for up to 20 ms
/// (`MarkHold`) and writes them in one transaction.
public final class DeliveryWorker: Sendable {
    let spool: any UsageLedger
    let router: Router
    let policy: RetryPolicy
    let clock: any UsageClock
    /// The longest a lane sleeps before looking for new rows.
    let idlePoll: Duration
    /// How long a lane's lease lasts unless renewed (a third of it between renewals): a killed
    /// worker's lanes are taken over this long after its last renewal.
    let leaseTTL: Duration
    /// This worker's name in the ledger's leases: host, pid and a random part.
    public let owner: String
    let logger: Logger
    private let stopFlag = StopFlag()

    /// A worker for `spool`, delivering through `router`'s sinks.
    public init(spool: any UsageLedger, router: Router, policy: RetryPolicy = RetryPolicy(maxAttempts: 20, maxElapsed: .seconds(24 * 3600)),
                clock: any UsageClock = SystemClock(), idlePoll: Duration = .milliseconds(200), leaseTTL: Duration = .seconds(15),
                logger: Logger = Logger(label: "usage-billing.worker")) {
        self.spool = spool
        self.router = router
        self.policy = policy
        self.clock = clock
        self.idlePoll = idlePoll
        self.leaseTTL = leaseTTL
        self.owner = "\(ProcessInfo.processInfo.hostName)/\(getpid())/\(UUID().uuidString.prefix(8).lowercased())"
        self.logger = logger
    }

    /// Metrics, with the lane as a dimension (swift-metrics; no backend is bundled: bootstrap one,
    /// e.g. swift-prometheus, in your process):
    /// - `usage_billing_deliveries_total` (counter; dimensions `lane`, `outcome`: accepted,
    ///   duplicate, rejected, retryable, possibly_delivered)
    /// - `usage_billing_dead_letters_total` (counter; `lane`, `reason`)
    /// - `usage_billing_queue_depth` (gauge; `lane`): queued rows, refreshed as the lane works
    /// - `usage_billing_delivery_duration` (timer; `lane`): one `deliver` call to the provider
    public enum MetricNames {
        public static let deliveries = "usage_billing_deliveries_total"
        public static let deadLetters = "usage_billing_dead_letters_total"
        public static let queueDepth = "usage_billing_queue_depth"
        public static let deliveryDuration = "usage_billing_delivery_duration"
    }

    /// Asks every lane to stop after marking the batch it is delivering (graceful shutdown).
    public func stop() { stopFlag.set() }

    /// Whether ``stop()`` was called: lanes start no new batch from then on.
    public var isStopping: Bool { stopFlag.isSet }

    /// Delivers until every queued row is final (`untilEmpty`), until ``stop()`` (each lane
    /// finishes and marks its current batch), or until cancelled (a batch in flight is abandoned
    /// unmarked and goes again next time, with the same ids).
    ///
    /// Lanes whose sink bills per window fold raw rows into the spool's windows and deliver a
    /// record per window once it ends plus the grace period; `closeOpenWindows` emits every
    /// window with new events at once (an explicit flush).
    ///
    /// One worker delivers from a spool at a time: `run` holds an exclusive lock on
    /// `<spool>.worker-lock` (`flock`, released when it returns or its process dies) and throws
    /// `.configuration` when another worker, in this process or another, holds it for more than
    /// a second. Two workers would read the same queued rows and send them twice, which a provider
    /// that does not dedupe (Paddle's charges, Recurly's and Chargebee's window records) bills twice.
    ///
    /// Before delivering, lanes of a spool written before lanes had names are renamed to the
    /// config's (``Spool/migrateLegacyLanes(to:)``), and a spool with undelivered work on a lane
    /// the config no longer has makes `run` throw `.configuration` naming each such lane, its
    /// counts and the fix, before anything is sent: those rows would otherwise wait forever.
    ///
    /// On a shared ledger (``PostgresLedger``) any number of workers run: each lane is delivered
    /// by the worker holding its lease, renewed while it works; the others wait for it to expire
    /// (a killed worker's lanes move on after ``leaseTTL``), or, with `untilEmpty`, finish once
    /// the lane has nothing left. A worker whose lease was taken writes no mark and goes back to
    /// waiting for the lane.
    public func run(untilEmpty: Bool, closeOpenWindows: Bool = false) async throws {
        let lock = try await spool.acquireDeliveryLock()
        defer { lock?.release() }
        try await checkLanes()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in router.lanes {
                guard let sink = router.sink(for: lane) else { continue }
                let maxInFlight = router.maxInFlight(for: lane)
                group.addTask { try await self.runLeased(lane.description, sink: sink, maxInFlight: maxInFlight, untilEmpty: untilEmpty, closeAll: closeOpenWindows) }
            }
            try await group.waitForAll()
        }
    }

    /// Runs one lane while this worker holds its lease, renewing it; takes the lane again after
    /// losing it, and waits while another worker holds it.
    private func runLeased(_ lane: String, sink: any UsageSink, maxInFlight: Int, untilEmpty: Bool, closeAll: Bool) async throws {
        while !Task.isCancelled && !stopFlag.isSet {
            do {
                if try await runLeasedOnce(lane, sink: sink, maxInFlight: maxInFlight, untilEmpty: untilEmpty, closeAll: closeAll) { return }
            } catch let unavailable as LedgerUnavailableError {
                // The database restarts or the network dropped: nothing was marked that was not
                // written; wait, take the lane again, and go on where the ledger stands.
                logger.warning("the ledger is unavailable; retrying", metadata: ["lane": "\(lane)", "error": "\(unavailable.reason)"])
                try await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// One turn of ``runLeased``: true when the lane is done (or another worker finished it),
    /// false to take it again.
    private func runLeasedOnce(_ lane: String, sink: any UsageSink, maxInFlight: Int, untilEmpty: Bool, closeAll: Bool) async throws -> Bool {
        do {
            guard let lease = try await spool.acquireLease(lane: lane, owner: owner, ttl: leaseTTL) else {
                // Another worker delivers it. With untilEmpty this one is done once nothing is left.
                if untilEmpty, try await spool.queuedCount(lane: lane) == 0 {
                    let openWindows = closeAll ? try await spool.nextWindowEnd(lane: lane) : nil
                    if openWindows == nil { return true }
                }
                try await Task.sleep(for: min(leaseTTL / 3, .seconds(1)))
                return false
            }
            do {
                try await withThrowingTaskGroup(of: Bool.self) { group in
                    group.addTask {
                        try await self.runLane(lane, sink: sink, maxInFlight: maxInFlight, untilEmpty: untilEmpty, closeAll: closeAll, lease: lease)
                        return true
                    }
                    if lease.expiresAt != .distantFuture {
                        group.addTask {
                            while true {
                                try await Task.sleep(for: self.leaseTTL / 3)
                                guard try await self.spool.renewLease(lease, ttl: self.leaseTTL) else { throw LeaseLostError(lane: lane, token: lease.token) }
                            }
                        }
                    }
                    _ = try await group.next()  // the lane finished, or the renewal found the lease gone
                    group.cancelAll()
                }
                try? await spool.releaseLease(lease)
                return true
            } catch {
                try? await spool.releaseLease(lease)  // lets another worker (or this one, next turn) take it at once
                throw error
            }
        } catch let lost as LeaseLostError {
            logger.warning("lane lease lost; taking it again when free", metadata: ["lane": "\(lane)", "token": "\(lost.token)"])
            return false
        }
    }

    /// Renames positional lanes, then refuses orphans (see ``run(untilEmpty:closeOpenWindows:)``).
    func checkLanes() async throws {
        let renamed = try await spool.migrateLegacyLanes(to: router.config)
        for (from, to) in renamed { logger.notice("lane renamed", metadata: ["from": "\(from)", "to": "\(to)"]) }
        let orphans = try await spool.orphanedLanes(known: Set(router.lanes.map(\.name)))
        if !orphans.isEmpty { throw Self.orphanError(orphans, config: router.config, spoolPath: spool.location) }
    }

    /// The error for undelivered work on lanes `config` does not have: each lane with its counts,
    /// and the commands that move or dead-letter them.
    public static func orphanError(_ orphans: [OrphanedLane], config: RoutingConfig, spoolPath: String) -> UsageBillingError {
        let first = orphans[0].lane
        let lanes = config.lanes.map(\.name)
        let candidates = lanes.filter { Lane(name: $0)?.route == Lane(name: first)?.route || Lane(name: $0)?.provider == Lane(name: first)?.provider }
        let target = candidates.first ?? lanes.first ?? "<provider>/<route>"
        return UsageBillingError(
            .configuration,
            "the spool \(spoolPath) holds undelivered events on \(orphans.count) lane(s) that \(config.file) no longer has: "
                + orphans.map(\.description).joined(separator: "; "),
            fix: "move them to a lane of this config (`usage-billing lanes reassign \(first) \(target) -c \(config.file) --spool \(spoolPath)`; its lanes: \(lanes.joined(separator: ", "))), "
                + "dead-letter them (`usage-billing lanes drop \(first) --yes --spool \(spoolPath)`), or put their route back in the config",
            field: "routes")
    }

    private func runLane(_ lane: String, sink: any UsageSink, maxInFlight: Int, untilEmpty: Bool, closeAll: Bool, lease: LaneLease) async throws {
        let limiter = sink.capabilities.rateLimit.map { RateLimiter($0, clock: clock) }
        let batchSize = sink.capabilities.maxBatchSize
        let spec = sink.capabilities.aggregation
        let checksBeforeRetry = sink.capabilities.idempotency == .clientCheckBeforeRetry
        // Lanes whose requests stand alone keep several batches in flight; the rest go one by one.
        let inFlightLimit = spec == nil && !checksBeforeRetry ? max(1, maxInFlight) : 1
        let depth = Gauge(label: MetricNames.queueDepth, dimensions: [("lane", lane)])
        let duration = Metrics.Timer(label: MetricNames.deliveryDuration, dimensions: [("lane", lane)])
        // One counter per outcome, made once per lane (not per batch: a Stripe v1 batch is one event).
        let outcomeCounters = Dictionary(uniqueKeysWithValues: ["accepted", "duplicate", "rejected", "retryable", "possibly_delivered"].map {
            ($0, Counter(label: MetricNames.deliveries, dimensions: [("lane", lane), ("outcome", $0)]))
        })
        var laneLogger = self.logger
        laneLogger[metadataKey: "lane"] = "\(lane)"
        let logger = laneLogger
        var lastDepthSample = ContinuousClock.now - .seconds(2)
        // Rows up to `cursor` were read in this pass: while batches are in flight the next read
        // starts after them; once none is, the pass starts over (rows due again later).
        var cursor: Int64 = 0
        // Rows read ahead for every batch that may be in flight, in one query (with one event per
        // request, a query per batch cost more than the request), not yet handed to a batch:
        // twice that, and read again once half is free (or nothing is left), so a lane whose
        // rows wait for their concurrency key (Stripe: one call per customer and meter) reads
        // in large steps, not a row or two after each request (0.43 reads per request before).
        var pending = ReadAhead(sink: sink, capacity: 2 * batchSize * inFlightLimit)
        var busyKeys = BusyKeys()  // concurrency keys of the batches in flight
        // A lane with several requests in flight to a provider that drops repeated ids holds its
        // batches' marks and writes them together (`MarkHold`), so a batch frees its slot and
        // keys when the answer arrives, not after a transaction of its own.
        let dedupes = if case .providerDeduplicates = sink.capabilities.idempotency { true } else { false }
        let holdsMarks = inFlightLimit > 1 && dedupes
        var hold = MarkHold(clock: clock)  // stays empty unless `holdsMarks`: the batches write their own
        try await withThrowingTaskGroup(of: LaneTask.self) { group in
            var inFlight = 0, writing = 0
            func finishOne() async throws {
                guard let done = try await group.next() else { return }
                switch done {
                case .batch(let keys, let marks):
                    inFlight -= 1
                    for key in keys { busyKeys.release(key) }
                    hold.add(marks)
                case .marked:
                    writing -= 1
                }
            }
            /// Hands the held marks to the spool in a task of their own once `hold` says so (or now).
            func writeHeld(now force: Bool) {
                guard let marks = hold.take(force: force) else { return }
                writing += 1
                group.addTask {
                    try await self.spool.mark(marks, now: self.clock.now(), lease: lease)
                    return .marked
                }
            }
            while !Task.isCancelled && !stopFlag.isSet {
                writeHeld(now: false)
                if inFlight >= inFlightLimit {  // wait for room, then look at the stop flag again
                    try await finishOne()
                    continue
                }
                let now = clock.now()
                if let spec, inFlight == 0 {
                    // Raw rows fold into their windows 5,000 at a time (each fold reads and
                    // rewrites every window it touches, so bigger folds touch each one less
                    // often), and the next rows are read while the last ones fold: reads run
                    // beside the write, and the two took the same time one after the other.
                    var raw = try await spool.due(lane: lane, limit: 5_000, now: now, windowRecords: false, after: 0)
                    if !raw.isEmpty {
                        while let last = raw.last?.seq {
                            let batch = raw
                            async let folding: Void = spool.fold(batch, lane: lane, spec: spec, now: now)
                            let next = stopFlag.isSet ? [] : try await spool.due(lane: lane, limit: 5_000, now: now, windowRecords: false, after: last)
                            try await folding
                            raw = next
                        }
                        continue
                    }
                    if let end = try await spool.nextWindowEnd(lane: lane), closeAll || end.timeIntervalSince(now) + spec.grace.seconds <= 0 {
                        let queued = try await spool.closeWindows(lane: lane, spec: spec, now: now, all: closeAll)
                        if queued > 0 { logger.debug("window records queued", metadata: ["records": "\(queued)"]) }
                    }
                }
                var due = pending.take(batchSize, busy: busyKeys)
                if due.isEmpty && (pending.isEmpty || pending.room >= pending.capacity / 2) {
                    let more = try await spool.due(lane: lane, limit: pending.room, now: now, windowRecords: spec == nil ? nil : true, after: cursor)
                    cursor = more.last?.seq ?? cursor
                    pending.append(more)
                    due = pending.take(batchSize, busy: busyKeys)
                }
                if due.isEmpty {
                    if inFlight > 0 {  // wait for a batch to finish (and free its keys), then look again
                        try await finishOne()
                        continue
                    }
                    if !hold.isEmpty || writing > 0 {  // every mark written before a new pass, a sleep or the end
                        writeHeld(now: true)
                        while writing > 0 { try await finishOne() }
                        continue
                    }
                    if cursor > 0 {  // a new pass, from the oldest due row
                        cursor = 0
                        pending.removeAll()
                        continue
                    }
                    depth.record(try await spool.queuedCount(lane: lane))
                    guard let next = try await spool.nextDue(lane: lane) else {
                        if untilEmpty { return }
                        try await clock.sleep(for: idlePoll)
                        continue
                    }
                    let wait = max(0.001, min(next.timeIntervalSince(now), idlePoll.seconds))
                    try await clock.sleep(for: .seconds(wait))
                    continue
                }
                if let limiter { try await limiter.acquire() }
                if stopFlag.isSet { break }
                inFlight += 1
                let keys = due.compactMap { $0.key }  // closures, not key paths: on tuples these were built at run time per batch
                for key in keys { busyKeys.hold(key) }
                let rows = due.map { $0.row }
                // The queue depth gauge costs a count over the lane's queued rows: at most once a second.
                let sample = ContinuousClock.now - lastDepthSample > .seconds(1)
                if sample { lastDepthSample = ContinuousClock.now }
                group.addTask {
                    let marks = try await self.deliverBatch(rows, lane: lane, sink: sink, checksBeforeRetry: checksBeforeRetry, holdsMarks: holdsMarks,
                                                            lease: lease, duration: duration, outcomeCounters: outcomeCounters, logger: logger)
                    if sample { depth.record(try await self.spool.queuedCount(lane: lane)) }
                    return .batch(keys: keys, marks: marks)
                }
            }
            // Stopping or cancelled: batches in flight finish (a cancelled one leaves its rows
            // unmarked), then what is held is written.
            while writing > 0 || inFlight > 0 { try await finishOne() }
            writeHeld(now: true)
            try await group.waitForAll()
        }
    }

    /// What a lane's task hands back.
    private enum LaneTask: Sendable {
        /// A batch finished: the concurrency keys it held, and its marks if the lane holds them.
        case batch(keys: [ReadAhead.KeyToken], marks: [(seq: Int64, mark: Spool.Mark)])
        /// Held marks were written.
        case marked
    }

    /// Delivers one batch and marks every row: delivered, duplicate, dead, or due again later.
    /// With `holdsMarks` the marks are returned for the lane to write with others' instead.
    private func deliverBatch(_ due: [QueuedDelivery], lane: String, sink: any UsageSink, checksBeforeRetry: Bool, holdsMarks: Bool,
                              lease: LaneLease, duration: Metrics.Timer, outcomeCounters: [String: Counter], logger: Logger) async throws -> [(seq: Int64, mark: Spool.Mark)] {
        let outcomes: [DeliveryOutcome]
        let started = ContinuousClock.now
        do {
            // Rows that may already be at the provider (tried before, or a send was starting
            // when the process died); a provider without idempotency looks them up first.
            let retrying = Set(due.lazy.filter { $0.firstAttemptAt != nil }.map { $0.event.id })
            if checksBeforeRetry { try await spool.markSending(due.map { $0.seq }, now: clock.now()) }
            outcomes = try await sink.deliver(due.map { $0.event }, retrying: retrying)
            let elapsed = (ContinuousClock.now - started).components
            duration.recordNanoseconds(elapsed.seconds * 1_000_000_000 + elapsed.attoseconds / 1_000_000_000)
        } catch is CancellationError {
            return []
        } catch {
            logger.error("the lane's sink failed; its events stay queued", metadata: ["error": "\(error)", "events": "\(due.count)"])
            // The whole sink is unusable (bad credentials, ...): keep the rows queued and try
            // again later, so fixing the config loses nothing.
            let at = clock.now().addingTimeInterval(min(60, policy.ceiling(forRetry: (due.first?.attempts ?? 0) + 1).seconds))
            try await spool.mark(due.map { ($0.seq, .retry(at: at, reason: "lane error: \(error)")) }, now: clock.now(), lease: lease)
            return []
        }
        var rng = SystemRandomNumberGenerator()
        let marks: [(Int64, Spool.Mark)] = zip(due, outcomes).map { row, outcome in
            (row.seq, mark(outcome, row: row, rng: &rng))
        }
        if !holdsMarks { try await spool.mark(marks, now: clock.now(), lease: lease) }
        func counter(_ label: String) -> Counter {
            outcomeCounters[label] ?? Counter(label: MetricNames.deliveries, dimensions: [("lane", lane), ("outcome", label)])
        }
        if outcomes.count == 1 {
            counter(outcomes[0].label).increment()
        } else {
            var counts: [String: Int] = [:]
            for outcome in outcomes { counts[outcome.label, default: 0] += 1 }  // one increment per outcome, not per event
            for (label, count) in counts { counter(label).increment(by: count) }
        }
        for case (let row, .dead(let reason)) in zip(due, marks.lazy.map { $0.1 }) {
            Counter(label: MetricNames.deadLetters, dimensions: [("lane", lane), ("reason", reason.code)]).increment()
            logger.warning("dead letter", metadata: ["event": "\(row.event.id)", "reason": "\(reason.code)", "message": "\(reason.message)"])
        }
        logger.debug("delivered a batch", metadata: ["events": "\(due.count)"])
        return holdsMarks ? marks : []
    }

    private func mark(_ outcome: DeliveryOutcome, row: QueuedDelivery, rng: inout SystemRandomNumberGenerator) -> Spool.Mark {
        let now = clock.now()
        switch outcome {
        case .accepted: return .delivered
        case .duplicate: return .duplicate
        case .rejected(let reason): return .dead(reason)
        case .retryable(let reason, let after):
            return retry(row: row, now: now, retryAfter: after, reason: reason.description, rng: &rng)
        case .possiblyDelivered:
            return retry(row: row, now: now, retryAfter: nil, reason: "possibly delivered; resending with the same id", rng: &rng)
        }
    }

    private func retry(row: QueuedDelivery, now: Date, retryAfter: Duration?, reason: String, rng: inout SystemRandomNumberGenerator) -> Spool.Mark {
        let elapsed = Duration.seconds(now.timeIntervalSince(row.firstAttemptAt ?? now))
        guard let wait = policy.delay(attemptsMade: row.attempts + 1, elapsed: elapsed, retryAfter: retryAfter, using: &rng) else {
            return .dead(RejectionReason(code: "gave_up", message: "still failing after \(row.attempts + 1) attempts: \(reason)", origin: .local))
        }
        return .retry(at: now.addingTimeInterval(wait.seconds), reason: reason)
    }
}

/// Config → router → spool → worker, as one object: `record` returns once events are durable;
/// `flush` waits until everything recorded so far is delivered or dead-lettered.
public final class UsagePipeline: Sendable {
    /// The ledger: a SQLite spool, or a Postgres ledger shared with other processes.
    public let spool: any UsageLedger
    /// The router.
    public let router: Router
    /// The worker.
    public let worker: DeliveryWorker

    /// A pipeline over `config`, spooling to `spoolPath`, sending with `client`.
    public convenience init(config: RoutingConfig, spoolPath: String, client: any HTTPClient, durability: SpoolDurability = .normal,
                            policy: RetryPolicy = RetryPolicy(maxAttempts: 20, maxElapsed: .seconds(24 * 3600)), clock: any UsageClock = SystemClock()) throws {
        try self.init(config: config, ledger: try Spool(path: spoolPath, durability: durability), client: client, policy: policy, clock: clock)
    }

    /// A pipeline over `config`, recording into `ledger` (``openLedger(_:durability:)`` opens one
    /// by its location: a file or a `postgres://` URL).
    public init(config: RoutingConfig, ledger: any UsageLedger, client: any HTTPClient,
                policy: RetryPolicy = RetryPolicy(maxAttempts: 20, maxElapsed: .seconds(24 * 3600)), clock: any UsageClock = SystemClock()) throws {
        spool = ledger
        router = try Router(config: config, client: client, clock: clock)
        worker = DeliveryWorker(spool: spool, router: router, policy: policy, clock: clock)
    }

    /// Records events durably, one row per destination. Under `unrouted: reject`, an event no
    /// route takes makes the call throw `.invalidInput` before anything is written; under
    /// `dead-letter` it is kept as a dead letter on the `unrouted` lane.
    public func record(_ events: [UsageEvent]) async throws {
        try await spool.record(try Self.entries(events, router: router))
    }

    /// The spool entries for `events`.
    public static func entries(_ events: [UsageEvent], router: Router) throws -> [Spool.Entry] {
        try events.map { event in
            if let d = router.destinations(for: event) {
                return Spool.Entry(event: event, lanes: ([d.primary] + d.shadows).map(\.description))
            }
            guard case .rejected(let reason) = router.unroutedRejection(event) else { return Spool.Entry(event: event, lanes: []) }
            if router.config.unrouted == .reject {
                throw UsageBillingError(.invalidInput, reason.message, fix: "add a route for '\(event.name)' or set unrouted: dead-letter", field: "name")
            }
            return Spool.Entry(event: event, lanes: [], deadLetter: ("unrouted", reason))
        }
    }

    /// Delivers until every row recorded so far is final. Lanes that bill per window emit every
    /// window with new events first (`closingOpenWindows`, default), so everything recorded is
    /// billed; events arriving later for the same window go out as the window's next revision.
    /// Runs the worker, so it throws `.configuration` while another worker (a `DeliveryService`
    /// in this process, or `usage-billing worker`) delivers from the same spool.
    public func flush(closingOpenWindows: Bool = true) async throws {
        try await worker.run(untilEmpty: true, closeOpenWindows: closingOpenWindows)
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
    private var marks: [(seq: Int64, mark: Spool.Mark)] = []
    private var since: Duration = .zero

    init(clock: any UsageClock) { self.clock = clock }

    var isEmpty: Bool { marks.isEmpty }

    mutating func add(_ more: [(seq: Int64, mark: Spool.Mark)]) {
        guard !more.isEmpty else { return }
        if marks.isEmpty { since = clock.monotonicNow() }
        marks += more
    }

    /// The held marks, if it is time to write them (or `force`), and holds none after.
    mutating func take(force: Bool) -> [(seq: Int64, mark: Spool.Mark)]? {
        guard !marks.isEmpty, force || marks.count >= Self.rows || clock.monotonicNow() - since >= Self.age else { return nil }
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
    private var shift: Int      // 64 − log2(slots)
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

/// The exclusive lock one running worker holds on its spool: `flock` on `<spool>.worker-lock`,
/// which names the holder's pid for the error a second worker gets.
final class WorkerLock: DeliveryLock {
    private let fd: Int32

    private init(fd: Int32) { self.fd = fd }

    static func acquire(spoolPath: String) async throws -> WorkerLock {
        let path = spoolPath + ".worker-lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw UsageBillingError(.configuration, "cannot open the worker lock \(path): \(String(cString: strerror(errno)))",
                                    fix: "make the spool's directory writable by this user")
        }
        // A worker killed a moment ago may still be exiting (its lock goes with it): wait up to a second.
        for attempt in 0... {
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { break }
            guard errno == EWOULDBLOCK || errno == EINTR, attempt < 20 else {
                let holder = Self.holder(fd)
                close(fd)
                let who = holder.map { $0 == getpid() ? "this process (pid \($0))" : "pid \($0)" } ?? "another process"
                throw UsageBillingError(.configuration, "another worker, in \(who), is already delivering from the spool \(spoolPath)",
                                        fix: "stop that worker first, or let it deliver: two workers on one spool would send the same rows twice")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        return WorkerLock(fd: fd)
    }

    /// The pid the holder wrote, if readable.
    private static func holder(_ fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        return Int32(String(decoding: buffer[..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    func release() {
        _ = flock(fd, LOCK_UN)
        close(fd)
    }
}

/// A flag set once, read from any task (a worker's stop, a ledger's finished migration).
final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}

/// The delivery worker as a swift-service-lifecycle `Service`: run it in a `ServiceGroup` with
/// SIGTERM as a graceful-shutdown signal, and on SIGTERM each lane finishes and marks the batch it
/// is delivering, then the service returns.
public struct DeliveryService: Service {
    /// The worker.
    public let worker: DeliveryWorker
    /// Return once nothing is queued.
    public let untilEmpty: Bool
    /// Emit aggregation windows with new events at once (see ``DeliveryWorker/run(untilEmpty:closeOpenWindows:)``).
    public let closeOpenWindows: Bool

    /// A service running `worker`.
    public init(worker: DeliveryWorker, untilEmpty: Bool = false, closeOpenWindows: Bool = false) {
        self.worker = worker
        self.untilEmpty = untilEmpty
        self.closeOpenWindows = closeOpenWindows
    }

    public func run() async throws {
        let worker = self.worker, untilEmpty = self.untilEmpty, closeOpenWindows = self.closeOpenWindows
        try await withGracefulShutdownHandler {
            try await worker.run(untilEmpty: untilEmpty, closeOpenWindows: closeOpenWindows)
        } onGracefulShutdown: {
            worker.stop()
        }
    }
}
