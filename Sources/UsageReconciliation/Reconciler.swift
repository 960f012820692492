import Foundation
import UsageBilling
import UsageRouting
import UsageSpool

/// What to reconcile.
public struct ReconcileOptions: Sendable {
    /// Start of the range (inclusive); widened down to each provider's window grid.
    public var from: Date
    /// End of the range (exclusive); widened up to each provider's window grid.
    public var to: Date
    /// The window totals are compared in.
    public var granularity: ReadBackGranularity
    /// Config provider names to compare (nil: every provider with a lane in the spool).
    public var providers: [String]?
    /// Your customer ids to compare (nil: all).
    public var customers: [String]?
    /// A difference up to this (absolute) still counts as a match.
    public var tolerance: Decimal
    /// Windows that ended less than this long ago (or have not ended) are `pending`, not
    /// `mismatch`, when they disagree: providers index usage with some delay. Zero compares
    /// every window as it stands now.
    public var settle: Duration
    /// The time the `settle` delay is measured from.
    public var now: Date

    /// Options; the defaults compare every provider and customer per day, exactly, with no settle delay.
    public init(
        from: Date, to: Date, granularity: ReadBackGranularity = .day, providers: [String]? = nil,
        customers: [String]? = nil,
        tolerance: Decimal = 0, settle: Duration = .zero, now: Date = Date()
    ) {
        self.from = from
        self.to = to
        self.granularity = granularity
        self.providers = providers
        self.customers = customers
        self.tolerance = tolerance
        self.settle = settle
        self.now = now
    }
}

/// One compared total: a provider's customer, meter and window.
public struct ReconcileRow: Sendable, Hashable {
    /// How the totals compare.
    public enum Status: String, Sendable, Hashable, Comparable, CaseIterable {
        /// Beyond the tolerance, in a settled window.
        case mismatch
        /// The provider could not be read for this customer (the note says why).
        case unreadable
        /// Disagrees, but the window is younger than the settle delay.
        case pending
        /// Within the tolerance.
        case match

        private var rank: Int { Self.allCases.firstIndex(of: self) ?? 0 }
        public static func < (a: Status, b: Status) -> Bool { a.rank < b.rank }
    }

    /// The provider's name in the config.
    public var provider: String
    /// Your customer ids whose events land on ``providerCustomer``.
    public var customers: [String]
    /// The provider's customer (or subscription) id.
    public var providerCustomer: String
    /// The provider's meter.
    public var meter: String
    /// The window (for a provider without windows: the whole range).
    public var start: Date
    public var end: Date
    /// Usage recorded in the spool for this provider (queued, delivered, duplicate or folded
    /// into a window; dead letters are not billed and not counted).
    public var recorded: Decimal
    /// Recorded events still queued for the provider (the lane is behind).
    public var queued: Int
    /// What the provider reports (nil when unreadable).
    public var reported: Decimal?
    /// The verdict.
    public var status: Status
    /// Why, in words: the lane is behind, a mapping collision, the read-back error.
    public var note: String

    /// `reported - recorded` (nil when unreadable).
    public var difference: Decimal? { reported.map { $0 - recorded } }

    /// A provider that cannot be read at all, over the whole range.
    static func unreadable(_ provider: String, _ options: ReconcileOptions, _ why: String) -> ReconcileRow {
        ReconcileRow(
            provider: provider, customers: [], providerCustomer: "", meter: "", start: options.from, end: options.to,
            recorded: 0, queued: 0, reported: nil, status: .unreadable, note: why)
    }
}

/// A correction as a reconciliation shows it: on one lane, with its state there.
public struct ReconcileCorrection: Sendable, Hashable {
    public var provider: String
    public var lane: String
    public var eventID: String
    public var kind: CorrectionKind
    /// An amend's new quantity.
    public var quantity: Decimal?
    public var reason: String
    public var state: CorrectionLaneState
    /// Why a dead correction is dead, and what to do by hand.
    public var note: String?

    public init(
        provider: String, lane: String, eventID: String, kind: CorrectionKind, quantity: Decimal?, reason: String,
        state: CorrectionLaneState, note: String?
    ) {
        self.provider = provider
        self.lane = lane
        self.eventID = eventID
        self.kind = kind
        self.quantity = quantity
        self.reason = reason
        self.state = state
        self.note = note
    }

    /// `void` or `amend to 7`.
    public var what: String { quantity.map { "\(kind.rawValue) to \(DecimalFormat.plain($0))" } ?? kind.rawValue }
}

/// The result of a reconciliation.
public struct ReconcileReport: Sendable {
    /// Every compared total, mismatches first, then unreadable, pending and matching ones.
    public var rows: [ReconcileRow]
    /// Customer-table mistakes found: several of your customers billed on one provider id.
    public var mappingProblems: [String]
    /// Per provider, the corrections recorded but not yet applied there, with their reasons: the
    /// provider still counts those events, so they show as a difference until corrected.
    public var pendingCorrections: [String] = []
    /// Every correction recorded for the providers compared, one per lane it touches: what the
    /// ledger nets out of the recorded totals, and where each stands at the provider.
    public var corrections: [ReconcileCorrection] = []
    /// Rows that disagree beyond the tolerance in settled windows.
    public var mismatches: [ReconcileRow] { rows.filter { $0.status == .mismatch } }
    /// Whether everything settled matches and every provider could be read.
    public var isClean: Bool {
        rows.allSatisfy { $0.status == .match || $0.status == .pending } && mappingProblems.isEmpty
    }
}

/// Compares what the spool recorded for each provider with what each provider reports through
/// its read-back API, per provider customer, meter and window.
///
/// ```swift
/// let report = try await Reconciler(config: config, spool: spool, client: http)
///     .run(ReconcileOptions(from: start, to: end, granularity: .day, providers: ["stripe", "orb"]))
/// precondition(report.isClean, "\(report.mismatches)")
/// ```
///
/// Windows follow each provider's rules: UTC hours and days for Stripe, Metronome, OpenMeter,
/// Chargebee and Recurly; the customer's own days for Orb; one total for the whole range for
/// Paddle. Lanes that bill per aggregation window count each window's value at its start, as
/// the provider stores it. Read-back calls are paced per provider and retried on 429/5xx.
public struct Reconciler: Sendable {
    let config: RoutingConfig
    let spool: any UsageLedger
    let router: Router
    let client: any HTTPClient
    let clock: any UsageClock

    /// A reconciler over `config`'s providers and `spool`'s ledger, reading back with `client`.
    public init(
        config: RoutingConfig, spool: any UsageLedger, client: any HTTPClient, clock: any UsageClock = SystemClock()
    ) throws {
        self.init(router: try Router(config: config, client: client, clock: clock), spool: spool, client: client)
    }

    /// A reconciler over the lanes `router` already built (shared with a worker in this process).
    public init(router: Router, spool: any UsageLedger, client: any HTTPClient) {
        self.config = router.config
        self.spool = spool
        self.router = router
        self.client = client
        self.clock = router.table.clock
    }

    private struct Bucket: Hashable { var names: ProviderNames; var start: Date }
    private struct Tally { var recorded: Decimal = 0; var queued = 0; var customers: Set<String> = []; var end: Date }

    /// Reconciles; throws only for bad options (unknown provider, empty range).
    public func run(_ options: ReconcileOptions) async throws -> ReconcileReport {
        guard options.from < options.to else {
            throw UsageBillingError(
                .invalidInput,
                "--from \(RFC3339.format(options.from)) is not before --to \(RFC3339.format(options.to))",
                fix: "give a range that ends after it starts", field: "from")
        }
        // The lanes the config has. A lane it no longer has is not read with another route's
        // mapping: its delivered history is out of scope, and its undelivered work is a problem.
        let recorded = try await spool.laneNames().compactMap(Lane.init(name:))
        let lanes = recorded.filter { router.table[$0] != nil }
        var problems = try await spool.orphanedLanes(known: Set(router.lanes.map(\.name))).map { orphan in
            "\(orphan) on a lane \(config.file) no longer has, so nothing delivers or reconciles it: move it with `usage-billing lanes reassign \(orphan.lane) <lane>` or dead-letter it with `lanes drop`"
        }
        if let wanted = options.providers {
            for name in wanted where config.providers[name] == nil {
                throw UsageBillingError(
                    .invalidInput, "no provider named '\(name)' in the config",
                    fix: "use one of \(config.providers.keys.sorted().joined(separator: ", "))", field: "providers")
            }
        }
        let providers = options.providers ?? Array(Set(recorded.map(\.provider))).sorted()
        let customerFilter = options.customers.map(Set.init)
        let corrections = try await spool.corrections(of: nil)
        var pending: [String] = []
        var listed: [ReconcileCorrection] = []
        var rows: [ReconcileRow] = []
        for provider in providers {
            guard let kind = config.providers[provider]?.kind else {
                rows.append(
                    .unreadable(
                        provider, options,
                        "the spool has lanes for '\(provider)', which the config no longer names; add it back to read its totals"
                    ))
                continue
            }
            let providerLanes = lanes.filter { $0.provider == provider }
            guard let first = providerLanes.first else { continue }
            for c in corrections {
                for lane in providerLanes {
                    guard let state = c.lanes[lane.name] else { continue }
                    listed.append(
                        ReconcileCorrection(
                            provider: provider, lane: lane.name, eventID: c.eventID, kind: c.kind,
                            quantity: c.quantity, reason: c.reason, state: state, note: c.notes[lane.name]))
                }
            }
            let waiting = corrections.filter { c in providerLanes.contains { c.lanes[$0.name] == .pending } }
            if !waiting.isEmpty {
                let reasons = Array(Set(waiting.map(\.reason))).sorted()
                pending.append(
                    "\(provider): \(waiting.count) void(s) pending (\(reasons.prefix(3).joined(separator: "; "))\(reasons.count > 3 ? "; …" : "")): "
                        + "\(kind.name) still bills those events until they are corrected there; `usage-billing corrections` lists them"
                )
            }
            let paced = PacedHTTPClient(client: client, clock: clock)
            // Names per lane (a route may rename), read-back calls through the first lane's settings.
            var namers: [Lane: any UsageReadBack] = [:]
            for lane in providerLanes {
                if let readBack = try kind.makeReadBack?(config.settings(for: lane), paced) { namers[lane] = readBack }
            }
            guard let readBack = namers[first] else {
                rows.append(
                    .unreadable(
                        provider, options,
                        "\(kind.name) has no read-back API for this mode; its totals cannot be checked"))
                continue
            }
            paced.limit(
                RateLimit(requestsPerSecond: readBack.requestsPerSecond, burst: max(1, Int(readBack.requestsPerSecond)))
            )

            let (providerRows, providerProblems) = try await reconcile(
                provider: provider, kind: kind, lanes: providerLanes, namers: namers,
                readBack: readBack, options: options, customerFilter: customerFilter,
                voided: Set(corrections.map(\.eventID)))
            rows += providerRows
            problems += providerProblems
        }
        rows.sort {
            ($0.status, $0.provider, $0.providerCustomer, $0.meter, $0.start) < (
                $1.status, $1.provider, $1.providerCustomer, $1.meter, $1.start
            )
        }
        return ReconcileReport(
            rows: rows, mappingProblems: problems, pendingCorrections: pending, corrections: listed)
    }

    /// One provider's rows and mapping problems: its ledger from the spool, folded into its
    /// window grid, against what its read-back reports.
    private func reconcile(
        provider: String, kind: ProviderKind, lanes providerLanes: [Lane], namers: [Lane: any UsageReadBack],
        readBack: any UsageReadBack, options: ReconcileOptions, customerFilter: Set<String>?, voided: Set<String>
    ) async throws -> ([ReconcileRow], [String]) {
        var rows: [ReconcileRow] = []
        var problems: [String] = []
        // The ledger, per provider customer and meter, before windowing.
        var events:
            [(
                ProviderNames, customer: String, at: Date, value: Decimal, queued: Bool, aggregation: AggregationSpec?,
                id: String
            )] = []
        // What the ledger says after corrections: a voided event counts nowhere, also where the
        // provider still has it (its correction pending there shows as the difference).
        for lane in providerLanes {
            guard let namer = namers[lane] else { continue }
            let aggregation = router.sink(for: lane)?.capabilities.aggregation
            try await spool.ledger(lane: lane.description) { event, state in
                guard state != .dead, !state.isVoided, !voided.contains(event.id),
                    customerFilter?.contains(event.customer) ?? true
                else { return }
                events.append(
                    (
                        namer.names(for: event), event.customer, event.timestamp, event.quantity, state == .queued,
                        aggregation, event.id
                    ))
            }
        }
        // Which of your customers land on each provider id: two on one id is a mapping bug.
        var owners: [String: Set<String>] = [:]
        for e in events { owners[e.0.customer, default: []].insert(e.customer) }
        for (id, ours) in owners.sorted(by: { $0.key < $1.key }) where ours.count > 1 {
            problems.append(
                "\(provider): your customers \(ours.sorted().joined(separator: " and ")) are all billed on \(kind.name) customer '\(id)'; "
                    + "check their ids in the customer table (column \(provider)) or the customers setting")
        }

        // Windowing per provider customer, and the range on that grid.
        var grids: [String: (ReadBackWindowing, from: Date, to: Date)] = [:]
        var unreadable: [String: String] = [:]
        for customer in Set(events.map(\.0.customer)).sorted() {
            do {
                let windowing = try await withRetries { try await readBack.windowing(customer: customer) }
                let (from, to) = Self.grid(windowing, options)
                grids[customer] = (windowing, from, to)
            } catch {
                unreadable[customer] = "\(error)"
            }
        }

        // Fold the ledger into windows.
        var tallies: [Bucket: Tally] = [:]
        var aggregated:
            [Bucket: (state: WindowState, formula: AggregationFormula, customers: Set<String>, queued: Int, at: Date)] =
                [:]
        for e in events {
            guard let grid = grids[e.0.customer] else {  // unreadable: one row for the range
                guard e.at >= options.from, e.at < options.to else { continue }
                var tally = tallies[Bucket(names: e.0, start: options.from)] ?? Tally(end: options.to)
                tally.recorded += e.value
                tally.customers.insert(e.customer)
                if e.queued { tally.queued += 1 }
                tallies[Bucket(names: e.0, start: options.from)] = tally
                continue
            }
            // A lane that bills per window stores each window's value at the window's start
            // (a provider without windows counts every event recorded in the range).
            let at =
                grid.0 == .wholeRange ? e.at : e.aggregation.map { $0.window.bounds(containing: e.at).start } ?? e.at
            guard at >= grid.from, at < grid.to else { continue }
            let window = Self.window(containing: at, grid.0, options, range: (grid.from, grid.to))
            let bucket = Bucket(names: e.0, start: window.start)
            if let spec = e.aggregation, spec.formula != .sum {
                let key = Bucket(names: e.0, start: at)
                var entry = aggregated[key] ?? (WindowState(end: 0), spec.formula, [], 0, window.start)
                WindowAggregator.fold(
                    UsageEvent(id: e.id, name: "", customer: e.customer, timestamp: e.at, quantity: e.value),
                    into: &entry.state, formula: spec.formula)
                entry.customers.insert(e.customer)
                if e.queued { entry.queued += 1 }
                aggregated[key] = entry
                tallies[bucket, default: Tally(end: window.end)].customers.insert(e.customer)
            } else {
                var tally = tallies[bucket] ?? Tally(end: window.end)
                tally.recorded += e.value
                tally.customers.insert(e.customer)
                if e.queued { tally.queued += 1 }
                tallies[bucket] = tally
            }
        }
        for (key, entry) in aggregated {
            let bucket = Bucket(names: key.names, start: entry.at)
            tallies[bucket]?.recorded += entry.state.value
            tallies[bucket]?.queued += entry.queued
        }

        // What the provider reports, per customer, for the meters the ledger names.
        var reported: [Bucket: Decimal] = [:]
        var readCustomers: Set<String> = []
        for (customer, grid) in grids.sorted(by: { $0.key < $1.key }) {
            let meters = Set(events.filter { $0.0.customer == customer }.map(\.0.meter)).sorted()
            do {
                let usage = try await withRetries {
                    try await readBack.usage(
                        customer: customer, meters: meters, from: grid.from, to: grid.to,
                        granularity: options.granularity)
                }
                for u in usage where u.start >= grid.from && u.start < grid.to || grid.0 == .wholeRange {
                    let window = Self.window(containing: u.start, grid.0, options, range: (grid.from, grid.to))
                    let bucket = Bucket(names: ProviderNames(customer: u.customer, meter: u.meter), start: window.start)
                    reported[bucket, default: 0] += u.value
                    // Read-backs answer every window of the range (Stripe's summaries, Orb's
                    // days), mostly 0: a window with nothing recorded and 0 reported is no row.
                    if tallies[bucket] == nil, u.value != 0 {
                        tallies[bucket] = Tally(customers: Set(owners[u.customer] ?? []), end: window.end)
                    }
                }
                readCustomers.insert(customer)
            } catch {
                unreadable[customer] = "\(error)"
            }
        }

        let settling = options.settle > .zero
        let settled = options.now.addingTimeInterval(-options.settle.seconds)
        for (bucket, tally) in tallies {
            let id = bucket.names.customer
            var notes: [String] = []
            if (owners[id]?.count ?? 0) > 1 {
                notes.append("several customers map here: \(owners[id, default: []].sorted().joined(separator: ", "))")
            }
            if tally.queued > 0 { notes.append("lane behind: \(tally.queued) event(s) still queued") }
            let status: ReconcileRow.Status
            var value: Decimal? = reported[bucket] ?? 0
            if let why = unreadable[id], !readCustomers.contains(id) {
                status = .unreadable
                value = nil
                notes.append(why)
            } else if let got = value, abs(got - tally.recorded) <= options.tolerance {
                status = .match
            } else if settling && tally.end > settled {
                status = .pending
                notes.append("window younger than the settle delay")
            } else {
                status = .mismatch
                if let got = value {
                    notes.append(
                        got < tally.recorded
                            ? "provider reports \(DecimalFormat.plain(tally.recorded - got)) less than recorded"
                            : "provider reports \(DecimalFormat.plain(got - tally.recorded)) more than recorded")
                }
            }
            rows.append(
                ReconcileRow(
                    provider: provider, customers: tally.customers.sorted(), providerCustomer: id,
                    meter: bucket.names.meter,
                    start: bucket.start, end: tally.end, recorded: tally.recorded, queued: tally.queued,
                    reported: value,
                    status: status, note: notes.joined(separator: "; ")))
        }
        return (rows, problems)
    }

    /// The range on a provider's grid: floor of `from` and ceiling of `to` to whole windows.
    static func grid(_ windowing: ReadBackWindowing, _ options: ReconcileOptions) -> (Date, Date) {
        guard case .aligned(let zone) = windowing else { return (options.from, options.to) }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let start = calendar.dateInterval(of: options.granularity.component, for: options.from)?.start ?? options.from
        guard
            let last = calendar.dateInterval(
                of: options.granularity.component, for: options.to.addingTimeInterval(-0.001))
        else { return (start, options.to) }
        return (start, last.end)
    }

    /// The window of `date` on a provider's grid.
    static func window(
        containing date: Date, _ windowing: ReadBackWindowing, _ options: ReconcileOptions, range: (Date, Date)
    ) -> DateInterval {
        guard case .aligned(let zone) = windowing else { return DateInterval(start: range.0, end: range.1) }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        return calendar.dateInterval(of: options.granularity.component, for: date)
            ?? DateInterval(start: date, duration: 0)
    }

    /// Retries read-back calls the provider answered with 429/5xx or that failed in transit
    /// (read-only calls: always safe), on the retry engine's curve (``readBackRetries``: full
    /// jitter, the provider's `Retry-After` honoured), at most 6 attempts.
    func withRetries<T: Sendable>(_ call: () async throws -> T) async throws -> T {
        var attempts = 0
        let started = ContinuousClock.now
        while true {
            do {
                return try await call()
            } catch let error as UsageBillingError where error.code == .transport || error.code == .timeout {
                attempts += 1
                guard
                    let wait = Self.readBackRetries.delay(
                        attemptsMade: attempts, elapsed: ContinuousClock.now - started, retryAfter: error.retryAfter)
                else {
                    throw error
                }
                try await clock.sleep(for: wait)
            }
        }
    }

    /// The read-back calls' retries: 6 attempts within 2 minutes, 0.2 s → 5 s.
    static let readBackRetries = RetryPolicy(
        baseDelay: .milliseconds(200), maxDelay: .seconds(5), maxAttempts: 6, maxElapsed: .seconds(120))
}

/// An HTTP client that paces every request through a token bucket (read-back limits).
final class PacedHTTPClient: HTTPClient, Sendable {
    private let client: any HTTPClient
    private let clock: any UsageClock
    private let limiter = Locked<RateLimiter?>(nil)

    init(client: any HTTPClient, clock: any UsageClock) {
        self.client = client
        self.clock = clock
    }

    func limit(_ limit: RateLimit) { limiter.with { $0 = RateLimiter(limit, clock: clock) } }

    func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        if let limiter = limiter.current { try await limiter.acquire() }
        return try await client.send(request)
    }
}
