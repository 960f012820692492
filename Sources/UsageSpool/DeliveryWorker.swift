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
    public init(
        spool: any UsageLedger, router: Router, policy: RetryPolicy = .worker,
        clock: any UsageClock = SystemClock(), idlePoll: Duration = .milliseconds(200),
        leaseTTL: Duration = .seconds(15),
        logger: Logger = Logger(label: "usage-billing.worker")
    ) {
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
    /// - `usage_billing_dead_letters_total` (counter; `lane`, `reason`; each lane starts with a
    ///   zero series whose `reason` is empty, so a rate over it is defined before the first)
    /// - `usage_billing_queue_depth` (gauge; `lane`): queued rows, refreshed as the lane works
    /// - `usage_billing_delivery_duration_seconds` (histogram; `lane`): one `deliver` call to the provider
    /// - `usage_billing_hedges_total` (counter; `lane`): batches resent after waiting past the
    ///   lane's hedge delay (``HedgePolicy``), and `usage_billing_hedge_wins_total`: those the
    ///   resend answered first
    public enum MetricNames {
        public static let deliveries = "usage_billing_deliveries_total"
        public static let deadLetters = "usage_billing_dead_letters_total"
        public static let queueDepth = "usage_billing_queue_depth"
        public static let deliveryDuration = "usage_billing_delivery_duration_seconds"
        public static let hedges = "usage_billing_hedges_total"
        public static let hedgeWins = "usage_billing_hedge_wins_total"
    }

    /// The dead-letter counter of `lane` for `reason` (`serve` counts the unrouted events it keeps
    /// as dead letters here too).
    public static func deadLetterCounter(lane: String, reason: String) -> Counter {
        Counter(label: MetricNames.deadLetters, dimensions: [("lane", lane), ("reason", reason)])
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
        // On a shared ledger the workers alive divide the lanes between them (a heartbeat each).
        let fleet = lock == nil ? FleetShare(lanes: router.lanes.count) : nil
        if let fleet {
            // Workers of a fleet often start together (a deploy): after registering, one short
            // pause lets the others register too, so the first does not take every lane only to
            // hand most of them off a heartbeat later.
            _ = try await spool.heartbeat(owner: owner, ttl: leaseTTL)
            try await Task.sleep(for: min(leaseTTL / 10, .milliseconds(200)))
            fleet.workersAlive(try await spool.heartbeat(owner: owner, ttl: leaseTTL))
        }
        try await withThrowingTaskGroup(of: Void.self) { outer in
            if let fleet { outer.addTask { await self.beat(fleet) } }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for lane in router.lanes {
                    guard let sink = router.sink(for: lane) else { continue }
                    let maxInFlight = router.maxInFlight(for: lane)
                    group.addTask {
                        try await self.runLeased(
                            lane.description, sink: sink, maxInFlight: maxInFlight, untilEmpty: untilEmpty,
                            closeAll: closeOpenWindows, fleet: fleet)
                    }
                }
                try await group.waitForAll()
            }
            outer.cancelAll()
        }
        if fleet != nil { try? await spool.signOff(owner: owner) }
    }

    /// Runs one lane while this worker holds its lease, renewing it; takes the lane again after
    /// losing it, and waits while another worker holds it.
    private func runLeased(
        _ lane: String, sink: any UsageSink, maxInFlight: Int, untilEmpty: Bool, closeAll: Bool, fleet: FleetShare?
    ) async throws {
        var outages = 0
        while !Task.isCancelled && !stopFlag.isSet {
            do {
                if try await runLeasedOnce(
                    lane, sink: sink, maxInFlight: maxInFlight, untilEmpty: untilEmpty, closeAll: closeAll, fleet: fleet
                ) {
                    return
                }
                outages = 0
            } catch let unavailable as LedgerUnavailableError {
                // The database restarts or the network dropped: nothing was marked that was not
                // written; wait, take the lane again, and go on where the ledger stands.
                outages += 1
                logger.warning(
                    "the ledger is unavailable; retrying",
                    metadata: ["lane": "\(lane)", "error": "\(unavailable.reason)"])
                try await Task.sleep(for: LedgerUnavailableError.wait(outages: outages) ?? .seconds(5))
            }
        }
    }

    /// One turn of ``runLeased``: true when the lane is done (or another worker finished it),
    /// false to take it again (after losing it, or handing it off to the fleet).
    private func runLeasedOnce(
        _ lane: String, sink: any UsageSink, maxInFlight: Int, untilEmpty: Bool, closeAll: Bool, fleet: FleetShare?
    ) async throws -> Bool {
        // In a fleet, a worker asks for a lane only below its share, and counts it as held only
        // once granted (a lane another worker holds must not keep a free one from being taken).
        let handoff = fleet?.take(lane)
        defer { if handoff != nil { fleet?.released(lane) } }
        do {
            let lease =
                fleet != nil && handoff == nil
                ? nil : try await spool.acquireLease(lane: lane, owner: owner, ttl: leaseTTL)
            if lease == nil, handoff != nil { fleet?.released(lane) }
            guard let lease else {
                // Another worker delivers it. With untilEmpty this one is done once nothing is left.
                if untilEmpty, try await !spool.hasQueued(lane: lane) {
                    let openWindows = closeAll ? try await spool.nextWindowEnd(lane: lane) : nil
                    if openWindows == nil { return true }
                }
                try await Task.sleep(for: min(leaseTTL / 3, .seconds(1)))
                return false
            }
            try await LeaseKeeper(ledger: spool, lease: lease, ttl: leaseTTL).holding {
                try await self.runLane(
                    lane, sink: sink, maxInFlight: maxInFlight, untilEmpty: untilEmpty, closeAll: closeAll,
                    lease: lease, handoff: handoff)
            }
            // Handed off: another worker of the fleet takes it; this one waits its turn.
            return !(handoff?.isSet ?? false)
        } catch let lost as LeaseLostError {
            logger.warning(
                "lane lease lost; taking it again when free", metadata: ["lane": "\(lane)", "token": "\(lost.token)"])
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
    /// and per lane the command that moves its events to a lane of the same provider kind on the
    /// same route (or any route), or dead-letters them when the config has no such lane.
    public static func orphanError(_ orphans: [OrphanedLane], config: RoutingConfig, spoolPath: String)
        -> UsageBillingError
    {
        let fixes = orphans.map { orphan -> String in
            let drop = "`usage-billing lanes drop \(orphan.lane) --yes --spool \(spoolPath)`"
            guard let target = reassignTarget(for: orphan.lane, config: config) else {
                let kind = Lane(name: orphan.lane).flatMap { config.kindName(ofProvider: $0.provider) }
                return
                    "\(orphan.lane): dead-letter it with \(drop) (the config has no lane of \(kind.map { "provider kind \($0)" } ?? "its provider kind"))"
            }
            return
                "\(orphan.lane): move it with `usage-billing lanes reassign \(orphan.lane) \(target) -c \(config.file) --spool \(spoolPath)`, or dead-letter it with \(drop)"
        }
        return UsageBillingError(
            .configuration,
            "the spool \(spoolPath) holds undelivered work on \(orphans.count) lane(s) that \(config.file) no longer has: "
                + orphans.map(\.description).joined(separator: "; "),
            fix: fixes.joined(separator: "; ") + "; or put their routes back in the config",
            field: "routes")
    }

    /// The config's lane an orphaned lane's events belong on: one of the same provider kind,
    /// on the same route if there is one. Nil when the config has no lane of that kind: moving
    /// one provider's rows onto another's lane would bill them at a provider that never had them.
    public static func reassignTarget(for lane: String, config: RoutingConfig) -> String? {
        guard let from = Lane(name: lane), let kind = config.kindName(ofProvider: from.provider) else { return nil }
        let sameKind = config.lanes.filter { config.providers[$0.provider]?.kind.name == kind }
        return (sameKind.first { $0.route == from.route } ?? sameKind.first)?.name
    }

    /// Drives the lane's ``LaneStateMachine``: performs each action it returns and tells it
    /// what came of it.
    /// `handoff`: set when the fleet gives the lane to another worker; the lane then stops as
    /// on shutdown (batches in flight answered and marked).
    private func runLane(
        _ lane: String, sink: any UsageSink, maxInFlight: Int, untilEmpty: Bool, closeAll: Bool, lease: LaneLease,
        handoff: StopFlag?
    ) async throws {
        let limiter = sink.capabilities.rateLimit.map { RateLimiter($0, clock: clock) }
        let spec = sink.capabilities.aggregation
        let checksBeforeRetry = sink.capabilities.idempotency == .clientCheckBeforeRetry
        let dedupes = if case .providerDeduplicates = sink.capabilities.idempotency { true } else { false }
        // Lanes whose requests stand alone keep several batches in flight; the rest go one by one.
        let inFlightLimit = spec == nil && !checksBeforeRetry ? max(1, maxInFlight) : 1
        var machine = LaneStateMachine(
            configuration: .init(
                batchSize: sink.capabilities.maxBatchSize, inFlightLimit: inFlightLimit,
                aggregation: spec.map { .init(grace: .seconds($0.grace.seconds), closeAll: closeAll) },
                untilEmpty: untilEmpty,
                // A lane with several requests in flight to a provider that drops repeated ids holds
                // its batches' marks and writes them together (`MarkHold`), so a batch frees its slot
                // and keys when the answer arrives, not after a transaction of its own.
                holdsMarks: inFlightLimit > 1 && dedupes, idlePoll: idlePoll,
                // Only a provider that drops a repeated id may get a batch twice.
                hedging: dedupes && router.hedges(lane)
                    ? HedgePolicy.forTimeout(
                        router.timeout(for: lane) ?? .seconds(30), answerTime: router.answerTime(for: lane)) : nil,
                paces: limiter != nil, notesSends: checksBeforeRetry),
            sink: sink)
        let metrics = LaneMetrics(lane: lane)
        let hedgeBudget = HedgeBudget()
        var laneLogger = self.logger
        laneLogger[metadataKey: "lane"] = "\(lane)"
        let logger = laneLogger
        // The driver only performs the machine's actions and reports what came of them.
        try await withThrowingTaskGroup(of: LaneTask.self) { group in
            while true {
                if Task.isCancelled || stopFlag.isSet || handoff?.isSet == true { machine.stop() }
                switch machine.next(now: clock.now()) {
                case .finish:
                    try await group.waitForAll()
                    try await spool.confirmVoids(lane: lane, lease: lease)
                    return
                case .awaitCompletion:
                    switch try await group.next() {
                    case .batch(let seqs, let keys, let marks, let latency, let retryAt)?:
                        if latency != nil { hedgeBudget.batchAnswered() }
                        machine.batchFinished(seqs: seqs, keys: keys, marks: marks, latency: latency, retryAt: retryAt)
                    case .marked(let id)?: machine.marksWritten(id)
                    case nil: break
                    }
                case .writeMarks(let id, let marks):
                    group.addTask {
                        try await self.spool.mark(marks, now: self.clock.now(), lease: lease)
                        return .marked(id)
                    }
                case .readRaw(let after, let limit):
                    machine.rawRowsRead(
                        try await spool.due(
                            lane: lane, limit: limit, now: clock.now(), windowRecords: false, after: after))
                case .fold(let rows, let thenRead):
                    guard let spec else { machine.folded(next: []); continue }
                    let now = clock.now()
                    async let folding: Void = spool.fold(rows, lane: lane, spec: spec, now: now)
                    let next =
                        if let thenRead {
                            try await spool.due(
                                lane: lane, limit: thenRead.limit, now: now, windowRecords: false, after: thenRead.after
                            )
                        } else { [QueuedDelivery]() }
                    try await folding
                    machine.folded(next: next)
                case .checkWindows:
                    machine.windowsChecked(nextEnd: try await spool.nextWindowEnd(lane: lane))
                case .closeWindows(let all):
                    if let spec {
                        let queued = try await spool.closeWindows(lane: lane, spec: spec, now: clock.now(), all: all)
                        if queued > 0 { logger.debug("window records queued", metadata: ["records": "\(queued)"]) }
                    }
                    machine.windowsEmitted()
                case .read(let after, let limit):
                    machine.rowsRead(
                        try await spool.due(
                            lane: lane, limit: limit, now: clock.now(), windowRecords: spec == nil ? nil : true,
                            after: after))
                case .applyCorrections(let limit):
                    let applied = try await applyCorrections(
                        lane: lane, sink: sink, limit: limit, lease: lease, logger: logger)
                    machine.correctionsApplied(more: applied.more, windowsChanged: applied.windowsChanged)
                case .checkIdle:
                    try await spool.confirmVoids(lane: lane, lease: lease)
                    metrics.depth.record(try await spool.queuedCount(lane: lane))
                    let rows = try await spool.nextDue(lane: lane)
                    let corrections = try await spool.nextCorrectionDue(lane: lane)
                    machine.idle(nextDue: [rows, corrections].compactMap { $0 }.min(), now: clock.now())
                case .sleep(let duration):
                    try await clock.sleep(for: duration)
                case .pace(let batch):
                    try await limiter?.acquire(events: batch.rows.count)
                    machine.paced(batch)
                case .noteSending(let batch):
                    try await spool.markSending(batch.rows.map(\.seq), now: clock.now())
                    machine.sendingNoted(batch)
                case .deliver(let batch, let sampleDepth):
                    group.addTask {
                        let (marks, latency, retryAt) = try await self.deliverBatch(
                            batch, lane: lane, sink: sink, limiter: limiter, hedgeBudget: hedgeBudget,
                            metrics: metrics, logger: logger)
                        if sampleDepth { metrics.depth.record(try await self.spool.queuedCount(lane: lane)) }
                        return .batch(
                            seqs: batch.rows.map(\.seq), keys: batch.keys, marks: marks, latency: latency,
                            retryAt: retryAt)
                    }
                }
            }
        }
    }

    /// What a lane's task hands back.
    private enum LaneTask: Sendable {
        /// A batch finished: the concurrency keys it held, its marks, and
        /// how long its answer took (nil: no answer, e.g. cancelled).
        /// `retryAt`: the earliest time one of its rows is due again, if any was marked for a retry.
        case batch(
            seqs: [Int64], keys: [ReadAhead.KeyToken], marks: [(seq: Int64, mark: DeliveryMark)], latency: Duration?,
            retryAt: Date?)
        /// Held marks were written (the write's id).
        case marked(Int)
    }

    /// A lane's metrics, made once per lane (not per batch: a Stripe v1 batch is one event).
    struct LaneMetrics: Sendable {
        let lane: String
        let depth: Gauge
        let duration: Metrics.Timer
        let outcomes: [String: Counter]
        let hedges: Counter
        let hedgeWins: Counter

        init(lane: String) {
            self.lane = lane
            depth = Gauge(label: MetricNames.queueDepth, dimensions: [("lane", lane)])
            duration = Metrics.Timer(label: MetricNames.deliveryDuration, dimensions: [("lane", lane)])
            outcomes = Dictionary(
                uniqueKeysWithValues: ["accepted", "duplicate", "rejected", "retryable", "possibly_delivered"].map {
                    ($0, Counter(label: MetricNames.deliveries, dimensions: [("lane", lane), ("outcome", $0)]))
                })
            hedges = Counter(label: MetricNames.hedges, dimensions: [("lane", lane)])
            hedgeWins = Counter(label: MetricNames.hedgeWins, dimensions: [("lane", lane)])
            for counter in outcomes.values { counter.increment(by: 0) }
            hedges.increment(by: 0)
            hedgeWins.increment(by: 0)
            DeliveryWorker.deadLetterCounter(lane: lane, reason: "").increment(by: 0)
        }

        func outcome(_ label: String) -> Counter {
            outcomes[label] ?? Counter(label: MetricNames.deliveries, dimensions: [("lane", lane), ("outcome", label)])
        }
    }

    /// Delivers one batch (resending it once if ``LaneStateMachine/Batch/hedgeAfter`` passes
    /// without an answer) and decides every row's mark: delivered, duplicate, dead, or due again
    /// later. The lane's machine has them written.
    private func deliverBatch(
        _ batch: LaneStateMachine.Batch, lane: String, sink: any UsageSink, limiter: RateLimiter?,
        hedgeBudget: HedgeBudget,
        metrics: LaneMetrics,
        logger: Logger
    ) async throws -> (marks: [(seq: Int64, mark: DeliveryMark)], latency: Duration?, retryAt: Date?) {
        let due = batch.rows
        let outcomes: [DeliveryOutcome]
        let latency: Duration
        do {
            // Rows that may already be at the provider (tried before, or a send was starting
            // when the process died); a provider without idempotency looks them up first.
            let retrying = Set(due.lazy.filter { $0.firstAttemptAt != nil }.map { $0.event.id })
            let events = due.map { $0.event }
            let started = ContinuousClock.now  // real time, as the request timeout and the hedge delay are
            let answer = try await Hedged.deliver(
                after: batch.hedgeAfter, pace: { try await limiter?.acquire(events: due.count) },
                mayHedge: { hedgeBudget.take() }
            ) {
                try await sink.deliver(events, retrying: retrying)
            }
            latency = ContinuousClock.now - started
            outcomes = answer.outcomes
            if answer.hedged {
                metrics.hedges.increment()
                if answer.hedgeWon { metrics.hedgeWins.increment() }
                logger.debug("hedged a batch", metadata: ["events": "\(due.count)", "won": "\(answer.hedgeWon)"])
            }
            let elapsed = latency.components
            metrics.duration.recordNanoseconds(elapsed.seconds * 1_000_000_000 + elapsed.attoseconds / 1_000_000_000)
        } catch is CancellationError {
            return ([], nil, nil)
        } catch {
            logger.error(
                "the lane's sink failed; its events stay queued",
                metadata: ["error": "\(error)", "events": "\(due.count)"])
            // The whole sink is unusable (bad credentials, ...): keep the rows queued and try
            // again later, so fixing the config loses nothing.
            let at = clock.now().addingTimeInterval(
                min(60, policy.ceiling(forRetry: policy.curveIndex(forRetry: (due.first?.attempts ?? 0) + 1)).seconds))
            return (due.map { ($0.seq, .retry(at: at, reason: "lane error: \(error)")) }, nil, at)
        }
        let marks: [(Int64, DeliveryMark)] = zip(due, outcomes).map { row, outcome in (row.seq, mark(outcome, row: row))
        }
        if outcomes.count == 1 {
            metrics.outcome(outcomes[0].label).increment()
        } else {
            var counts: [String: Int] = [:]
            // one increment per outcome, not per event
            for outcome in outcomes { counts[outcome.label, default: 0] += 1 }
            for (label, count) in counts { metrics.outcome(label).increment(by: count) }
        }
        for case (let row, .dead(let reason)) in zip(due, marks.lazy.map { $0.1 }) {
            Self.deadLetterCounter(lane: lane, reason: reason.code).increment()
            logger.warning(
                "dead letter",
                metadata: ["event": "\(row.event.id)", "reason": "\(reason.code)", "message": "\(reason.message)"])
        }
        logger.debug("delivered a batch", metadata: ["events": "\(due.count)"])
        let retryAt = marks.lazy.compactMap { if case .retry(let at, _) = $0.1 { at } else { nil } }.min()
        return (marks, latency, retryAt)
    }

    /// The row's mark, by the retry engine (``RetryPolicy/decide(_:attemptsMade:elapsed:using:)``).
    private func mark(_ outcome: DeliveryOutcome, row: QueuedDelivery) -> DeliveryMark {
        var rng = SystemJitter()  // see SystemJitter: a zero-sized generator crashes ThreadSanitizer
        let now = clock.now()
        let elapsed = Duration.seconds(now.timeIntervalSince(row.firstAttemptAt ?? now))
        switch policy.decide(outcome, attemptsMade: row.attempts + 1, elapsed: elapsed, using: &rng) {
        case .delivered(let duplicate): return duplicate ? .duplicate : .delivered
        case .rejected(let reason), .gaveUp(let reason): return .dead(reason)
        case .retry(let wait, let reason): return .retry(at: now.addingTimeInterval(wait.seconds), reason: reason)
        }
    }
}
