import Foundation

/// A destination: one provider on one route (each route can give a provider its own settings).
public struct Lane: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The route's index.
    public var route: Int
    /// The provider's name in the config.
    public var provider: String

    /// Creates a lane.
    public init(route: Int, provider: String) {
        self.route = route
        self.provider = provider
    }

    public static func < (a: Lane, b: Lane) -> Bool { (a.provider, a.route) < (b.provider, b.route) }
    public var description: String { "\(provider)#\(route)" }
}

/// One event's delivery history at one destination.
public struct DestinationReport: Sendable, Hashable {
    /// Whether the destination was the primary or a shadow.
    public enum Role: String, Sendable { case primary, shadow }

    /// The event's id.
    public var eventID: String
    /// Where it went (nil when no route took it).
    public var lane: Lane?
    /// Primary or shadow.
    public var role: Role
    /// Every outcome, one per attempt; the last is final for this run.
    public var history: [DeliveryOutcome]
    /// Whether the event was folded into an aggregation window (its lane bills per window); the
    /// window's record is reported separately by ``Router/flushAggregates(policy:pace:)``.
    public var aggregated = false

    /// A report.
    public init(eventID: String, lane: Lane?, role: Role, history: [DeliveryOutcome], aggregated: Bool = false) {
        self.eventID = eventID
        self.lane = lane
        self.role = role
        self.history = history
        self.aggregated = aggregated
    }

    /// The last outcome.
    public var final: DeliveryOutcome { history.last ?? .possiblyDelivered }
}

/// A ``UsageSink`` that sends each event to the provider its route names, and a copy to each
/// shadow. Shadows run on their own: their failures never fail or delay the primary.
public final class Router: UsageSink, @unchecked Sendable {
    public let name = "router"
    /// The config it routes by.
    public let config: RoutingConfig
    private let sinks: [Lane: any UsageSink]
    /// One token bucket per lane, kept across calls so pacing holds over a long import.
    private let limiters: [Lane: RateLimiter]
    private let clock: any UsageClock
    private let lock = NSLock()
    private var shadowTasks: [Task<Void, Never>] = []
    private var shadowReports: [DestinationReport] = []
    /// Open windows of the lanes whose sinks bill per window, for paths without a spool.
    private var aggregators: [Lane: WindowAggregator] = [:]

    /// Builds a sink for every lane of `config`, all sharing `client`.
    public init(config: RoutingConfig, client: any HTTPClient, clock: any UsageClock = SystemClock()) throws {
        self.config = config
        self.clock = clock
        var sinks: [Lane: any UsageSink] = [:]
        for route in config.routes {
            for provider in [route.primary] + route.shadows {
                guard let kind = config.providers[provider]?.kind else { continue }
                sinks[Lane(route: route.index, provider: provider)] =
                    try kind.makeSink(config.settings(for: provider, route: route.index), client, clock, provider)
            }
        }
        self.sinks = sinks
        self.limiters = sinks.compactMapValues { sink in sink.capabilities.rateLimit.map { RateLimiter($0, clock: clock) } }
    }

    /// The router takes any batch and splits it per destination.
    public var capabilities: SinkCapabilities {
        SinkCapabilities(maxBatchSize: 1_000, idempotency: .providerDeduplicates(window: nil))
    }

    /// The sink behind a lane.
    public func sink(for lane: Lane) -> (any UsageSink)? { sinks[lane] }

    /// How many requests a lane keeps in flight: the provider's `max_in_flight` setting, or the
    /// adapter's own default (`SinkCapabilities.maxConcurrentRequests`).
    public func maxInFlight(for lane: Lane) -> Int {
        config.providers[lane.provider]?.maxInFlight ?? sinks[lane]?.capabilities.maxConcurrentRequests ?? 1
    }

    /// Every lane, sorted.
    public var lanes: [Lane] { sinks.keys.sorted() }

    /// Where `event` goes.
    public func destinations(for event: UsageEvent) -> (primary: Lane, shadows: [Lane])? {
        config.decide(event).map { d in (Lane(route: d.route, provider: d.primary), d.shadows.map { Lane(route: d.route, provider: $0) }) }
    }

    /// The rejection for an event no route takes.
    public func unroutedRejection(_ event: UsageEvent) -> DeliveryOutcome {
        let policy = config.unrouted == .deadLetter ? "kept as a dead letter" : "refused"
        return .rejected(.local("unrouted", field: "name",
            "no route takes '\(event.name)' for customer '\(event.customer)' at \(RFC3339.format(event.timestamp)) (\(policy)); add a route in \(config.file)"))
    }

    /// Delivers to the primaries (one attempt) and returns their outcomes in order; copies go to
    /// shadows in the background (see ``drainShadows()``).
    public func deliver(_ batch: [UsageEvent]) async throws -> [DeliveryOutcome] {
        var outcomes = [DeliveryOutcome?](repeating: nil, count: batch.count)
        var primary: [Lane: [Int]] = [:]
        var shadow: [Lane: [UsageEvent]] = [:]
        for (index, event) in batch.enumerated() {
            guard let d = destinations(for: event) else {
                outcomes[index] = unroutedRejection(event)
                continue
            }
            primary[d.primary, default: []].append(index)
            for lane in d.shadows { shadow[lane, default: []].append(event) }
        }
        if !shadow.isEmpty { startShadows(shadow) }
        try await withThrowingTaskGroup(of: [(Int, DeliveryOutcome)].self) { group in
            for (lane, indices) in primary {
                guard let sink = sinks[lane] else { continue }
                group.addTask {
                    var result: [(Int, DeliveryOutcome)] = []
                    if sink.capabilities.aggregation != nil {
                        let outcomes = try await self.deliverAggregated(indices.map { batch[$0] }, lane: lane, sink: sink)
                        return Array(zip(indices, outcomes))
                    }
                    for chunk in Batcher.batches(indices, maxBatchSize: sink.capabilities.maxBatchSize) {
                        result += zip(chunk, try await sink.deliver(chunk.map { batch[$0] })).map { ($0, $1) }
                    }
                    return result
                }
            }
            for try await part in group { for (i, o) in part { outcomes[i] = o } }
        }
        return outcomes.map { $0 ?? .possiblyDelivered }
    }

    private func startShadows(_ work: [Lane: [UsageEvent]]) {
        let sinks = self.sinks
        let task = Task {
            await withTaskGroup(of: [DestinationReport].self) { group in
                for (lane, events) in work {
                    guard let sink = sinks[lane] else { continue }
                    group.addTask {
                        var reports: [DestinationReport] = []
                        for chunk in Batcher.batches(events, maxBatchSize: sink.capabilities.maxBatchSize) {
                            let outcomes: [DeliveryOutcome]
                            do {
                                outcomes = try await sink.deliver(chunk)
                            } catch {
                                let reason = RejectionReason(code: (error as? UsageBillingError)?.shortDescription ?? "error",
                                                             message: "\(error)", origin: .local)
                                outcomes = chunk.map { _ in .rejected(reason) }
                            }
                            reports += zip(chunk, outcomes).map { DestinationReport(eventID: $0.id, lane: lane, role: .shadow, history: [$1]) }
                        }
                        return reports
                    }
                }
                for await part in group { self.record(part) }
            }
        }
        lock.withLock { shadowTasks.append(task) }
    }

    private func record(_ reports: [DestinationReport]) { lock.withLock { shadowReports += reports } }

    /// Waits for the shadow deliveries started so far and returns (and forgets) their reports.
    public func drainShadows() async -> [DestinationReport] {
        let tasks = lock.withLock { defer { shadowTasks.removeAll() }; return shadowTasks }
        for task in tasks { await task.value }
        return lock.withLock { defer { shadowReports.removeAll() }; return shadowReports }
    }

    /// Delivers `batch` to every destination — primaries and shadows concurrently, each lane
    /// through its own ``RetryingDeliverer`` — and reports every destination separately. A lane
    /// that throws (bad credentials) reports its events rejected with that error; others go on.
    public func deliverEverywhere(_ batch: [UsageEvent], policy: RetryPolicy, pace: Bool = true) async -> [DestinationReport] {
        var reports: [DestinationReport] = []
        var work: [Lane: [(UsageEvent, DestinationReport.Role)]] = [:]
        for event in batch {
            guard let d = destinations(for: event) else {
                reports.append(DestinationReport(eventID: event.id, lane: nil, role: .primary, history: [unroutedRejection(event)]))
                continue
            }
            work[d.primary, default: []].append((event, .primary))
            for lane in d.shadows { work[lane, default: []].append((event, .shadow)) }
        }
        let sinks = self.sinks, limiters = self.limiters, clock = self.clock
        for (lane, items) in work where sinks[lane]?.capabilities.aggregation != nil {
            fold(items.map(\.0), lane: lane)
            reports += items.map { DestinationReport(eventID: $0.0.id, lane: lane, role: $0.1, history: [], aggregated: true) }
            work[lane] = nil
        }
        await withTaskGroup(of: [DestinationReport].self) { group in
            for (lane, items) in work {
                guard let sink = sinks[lane] else { continue }
                group.addTask {
                    let deliverer = RetryingDeliverer(sink: sink, policy: policy, clock: clock, pace: pace, rateLimiter: limiters[lane])
                    do {
                        let results = try await deliverer.deliver(items.map(\.0))
                        return zip(items, results).map { DestinationReport(eventID: $0.0.id, lane: lane, role: $0.1, history: $1.history) }
                    } catch {
                        let reason = RejectionReason(code: (error as? UsageBillingError)?.shortDescription ?? "error", message: "\(error)", origin: .local)
                        return items.map { DestinationReport(eventID: $0.0.id, lane: lane, role: $0.1, history: [.rejected(reason)]) }
                    }
                }
            }
            for await part in group { reports += part }
        }
        return reports
    }

    // MARK: Aggregation without a spool

    /// Folds events into `lane`'s open windows (kept for the router's lifetime).
    private func fold(_ events: [UsageEvent], lane: Lane) {
        guard let spec = sinks[lane]?.capabilities.aggregation else { return }
        lock.withLock {
            var aggregator = aggregators[lane] ?? WindowAggregator(spec: spec, namespace: lane.description)
            for event in events { aggregator.add(event) }
            aggregators[lane] = aggregator
        }
    }

    /// Emits the records of every window with new events (open or not) and delivers them, each
    /// lane through its own ``RetryingDeliverer``. Call it once the input is read (``Importer``
    /// does): without a spool, windows live only as long as this router, so a window is billed
    /// once per run; use the spool to keep windows across runs.
    public func flushAggregates(policy: RetryPolicy, pace: Bool = true) async -> [DestinationReport] {
        let records: [Lane: [UsageEvent]] = lock.withLock {
            var out: [Lane: [UsageEvent]] = [:]
            for lane in aggregators.keys {
                guard var aggregator = aggregators[lane] else { continue }
                let emitted = aggregator.flush()
                aggregators[lane] = aggregator
                if !emitted.isEmpty { out[lane] = emitted }
            }
            return out
        }
        let sinks = self.sinks, limiters = self.limiters, clock = self.clock
        let role: (Lane) -> DestinationReport.Role = { lane in self.config.routes.first { $0.index == lane.route }?.primary == lane.provider ? .primary : .shadow }
        var reports: [DestinationReport] = []
        await withTaskGroup(of: [DestinationReport].self) { group in
            for (lane, events) in records {
                guard let sink = sinks[lane] else { continue }
                let laneRole = role(lane)
                group.addTask {
                    let deliverer = RetryingDeliverer(sink: sink, policy: policy, clock: clock, pace: pace, rateLimiter: limiters[lane])
                    do {
                        return try await deliverer.deliver(events).map { DestinationReport(eventID: $0.eventID, lane: lane, role: laneRole, history: $0.history) }
                    } catch {
                        let reason = RejectionReason(code: (error as? UsageBillingError)?.shortDescription ?? "error", message: "\(error)", origin: .local)
                        return events.map { DestinationReport(eventID: $0.id, lane: lane, role: laneRole, history: [.rejected(reason)]) }
                    }
                }
            }
            for await part in group { reports += part }
        }
        return reports
    }

    /// The primary path for a lane that bills per window: fold, emit the touched windows, send
    /// each record once; every event gets its window's outcome (`.accepted` when its window's
    /// value did not change).
    private func deliverAggregated(_ events: [UsageEvent], lane: Lane, sink: any UsageSink) async throws -> [DeliveryOutcome] {
        guard let spec = sink.capabilities.aggregation else { return try await sink.deliver(events) }
        let records: [UsageEvent] = lock.withLock {
            var aggregator = aggregators[lane] ?? WindowAggregator(spec: spec, namespace: lane.description)
            for event in events { aggregator.add(event) }
            let emitted = aggregator.flush()
            aggregators[lane] = aggregator
            return emitted
        }
        var byWindow: [String: DeliveryOutcome] = [:]
        for chunk in Batcher.batches(records, maxBatchSize: sink.capabilities.maxBatchSize) {
            for (record, outcome) in zip(chunk, try await sink.deliver(chunk)) {
                byWindow["\(record.customer)\u{1F}\(record.name)\u{1F}\(AggregateInfo(record).windowStart.timeIntervalSince1970)"] = outcome
            }
        }
        let aggregator = WindowAggregator(spec: spec, namespace: lane.description)
        return events.map { event in
            let start = Double(aggregator.key(for: event).0.start)
            return byWindow["\(event.customer)\u{1F}\(event.name)\u{1F}\(start)"] ?? .accepted
        }
    }
}
