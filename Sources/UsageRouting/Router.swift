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
}
