import Foundation

/// A destination: one provider on one route, named `<provider>/<route id>` (`stripe/api_request`,
/// `orb/api-requests`). The name is what the spool, logs, metrics and reports know a lane by, so
/// it comes from what the route is (its `id:`, or its event patterns and cohort) and never from
/// where the route sits in the file: reordering routes, inserting one, adding a cutover or editing
/// a route's mapping leaves every lane's name, and the rows queued on it, where they were.
public struct Lane: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The provider's name in the config.
    public var provider: String
    /// The route's identity (``RoutingConfig/Route/id``).
    public var route: String

    /// Creates a lane.
    public init(provider: String, route: String) {
        self.provider = provider
        self.route = route
    }

    /// The lane named `name` (`<provider>/<route id>`), or nil when it is not such a name (the
    /// `unrouted` dead letters, or a positional name of a spool from before lanes had names).
    public init?(name: String) {
        guard let slash = name.firstIndex(of: "/"), slash != name.startIndex, name.index(after: slash) != name.endIndex
        else { return nil }
        self.init(provider: String(name[..<slash]), route: String(name[name.index(after: slash)...]))
    }

    /// `<provider>/<route id>`.
    public var name: String { provider + "/" + route }
    public var description: String { name }
    public static func < (a: Lane, b: Lane) -> Bool { a.name < b.name }

    /// A lane name from before lanes had identities: `<provider>#<route index>` (`stripe#0`).
    public static func legacyPosition(_ name: String) -> (provider: String, index: Int)? {
        guard let hash = name.lastIndex(of: "#"), hash != name.startIndex,
            let index = Int(name[name.index(after: hash)...]), index >= 0
        else { return nil }
        return (String(name[..<hash]), index)
    }

    /// What is wrong with `text` as a provider name or route id (`what` says which), or nil:
    /// 1–64 characters, letters, digits, `_ . -`, starting with a letter or digit.
    public static func problem(inName text: String, of what: String) -> String? {
        if text.isEmpty { return "\(what) is empty" }
        if text.count > 64 { return "\(what) '\(text.prefix(20))…' is longer than 64 characters" }
        if let first = text.first, !(first.isLetter || first.isNumber) {
            return "\(what) '\(text)' must start with a letter or digit"
        }
        if let bad = text.first(where: { !($0.isLetter || $0.isNumber || "_.-".contains($0)) }) {
            return "\(what) '\(text)' has '\(bad)'; use letters, digits, _ . -"
        }
        return nil
    }
}

/// A short hash that is the same in every process and release (Swift's `hashValue` is seeded per
/// process): FNV-1a over the UTF-8 bytes, 40 bits as 10 hex digits.
public enum StableHash {
    public static func hex(_ text: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        let hex = String(hash >> 24, radix: 16)
        return String(repeating: "0", count: max(0, 10 - hex.count)) + hex
    }
}

/// The lanes of one config, built once per process and shared by whatever records into or
/// delivers from a spool (`import --spool`, the worker, `UsagePipeline`, the reconciler): each
/// lane's route, role, sink (the provider's settings with the route's overrides and its column
/// of the customer table), requests in flight and rate limiter.
public final class LaneTable: Sendable {
    /// One lane.
    public struct Entry: Sendable {
        public let lane: Lane
        /// Its route in the config (the first, when routes that send to it the same way share it:
        /// a cutover that turns a primary into a shadow).
        public let route: RoutingConfig.Route
        /// Primary or shadow on that route.
        public let role: DestinationReport.Role
        public let sink: any UsageSink
        /// How many requests it keeps in flight: the provider's `max_in_flight`, or the
        /// adapter's default (`SinkCapabilities.maxConcurrentRequests`).
        public let maxInFlight: Int
        /// One token bucket per lane, kept for the table's life so pacing holds over a long import.
        public let limiter: RateLimiter?
        /// How long one request may wait for its answer: the provider's `timeout`, or its kind's
        /// default (``ProviderKind/requestTimeout``).
        public let timeout: Duration
    }

    /// The config.
    public let config: RoutingConfig
    /// The clock the sinks were built with.
    public let clock: any UsageClock
    private let entries: [Lane: Entry]
    /// Every lane, sorted by name.
    public let lanes: [Lane]

    /// Builds a sink for every lane of `config`, all sharing `client`.
    public init(config: RoutingConfig, client: any HTTPClient, clock: any UsageClock = SystemClock()) throws {
        self.config = config
        self.clock = clock
        var entries: [Lane: Entry] = [:]
        for route in config.routes {
            for provider in route.providers {
                guard let kind = config.providers[provider]?.kind else { continue }
                let lane = route.lane(provider)
                guard entries[lane] == nil else { continue }  // a later route sending to it the same way (validated)
                let timeout = config.providers[provider]?.timeout ?? kind.requestTimeout
                let sink = try kind.makeSink(
                    config.settings(for: provider, route: route.index), TimeoutHTTPClient(client, timeout: timeout),
                    clock, provider)
                entries[lane] = Entry(
                    lane: lane, route: route, role: provider == route.primary ? .primary : .shadow, sink: sink,
                    maxInFlight: config.providers[provider]?.maxInFlight ?? sink.capabilities.maxConcurrentRequests,
                    limiter: sink.capabilities.rateLimit.map { RateLimiter($0, clock: clock) }, timeout: timeout)
            }
        }
        self.entries = entries
        self.lanes = entries.keys.sorted()
    }

    /// The lane named `name`, if the config has it.
    public subscript(name: String) -> Entry? { Lane(name: name).flatMap { entries[$0] } }
    /// The lane, if the config has it.
    public subscript(lane: Lane) -> Entry? { entries[lane] }

    /// Where `event` goes.
    public func destinations(for event: UsageEvent) -> (primary: Lane, shadows: [Lane])? {
        guard let d = config.decide(event), config.routes.indices.contains(d.route) else { return nil }
        let route = config.routes[d.route]
        return (route.lane(d.primary), d.shadows.map(route.lane))
    }
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
public final class Router: UsageSink, Sendable {
    public let name = "router"
    /// The lanes it routes to.
    public let table: LaneTable
    /// The config it routes by.
    public var config: RoutingConfig { table.config }
    private let clock: any UsageClock
    /// Shadow deliveries in flight and the reports of those that finished.
    private let shadows = Locked((tasks: [Task<Void, Never>](), reports: [DestinationReport]()))
    /// Open windows of the lanes whose sinks bill per window, for paths without a spool.
    private let aggregators = Locked([Lane: WindowAggregator]())

    /// Builds a sink for every lane of `config`, all sharing `client`.
    public convenience init(config: RoutingConfig, client: any HTTPClient, clock: any UsageClock = SystemClock()) throws
    {
        self.init(table: try LaneTable(config: config, client: client, clock: clock))
    }

    /// A router over lanes already built (shared with a worker or a reconciler).
    public init(table: LaneTable) {
        self.table = table
        self.clock = table.clock
    }

    /// The router takes any batch and splits it per destination.
    public var capabilities: SinkCapabilities {
        SinkCapabilities(maxBatchSize: 1_000, idempotency: .providerDeduplicates(window: nil))
    }

    /// The sink behind a lane.
    public func sink(for lane: Lane) -> (any UsageSink)? { table[lane]?.sink }

    /// How many requests a lane keeps in flight: the provider's `max_in_flight` setting, or the
    /// adapter's own default (`SinkCapabilities.maxConcurrentRequests`).
    public func maxInFlight(for lane: Lane) -> Int { table[lane]?.maxInFlight ?? 1 }

    /// How long one of a lane's requests may wait for its answer (see ``LaneTable/Entry/timeout``).
    public func timeout(for lane: String) -> Duration? { table[lane]?.timeout }

    /// The answer time the lane's provider kind expects (``ProviderKind/answerTime``).
    public func answerTime(for lane: String) -> Duration? {
        table[lane].flatMap { table.config.providers[$0.lane.provider]?.kind.answerTime }
    }

    /// Whether the lane's provider may get a slow batch a second time (``RoutingConfig/Provider/hedges``);
    /// the worker also needs the provider to drop repeated ids.
    public func hedges(_ lane: String) -> Bool {
        table[lane].map { table.config.providers[$0.lane.provider]?.hedges ?? true } ?? false
    }

    /// Every lane, sorted.
    public var lanes: [Lane] { table.lanes }

    /// Where `event` goes.
    public func destinations(for event: UsageEvent) -> (primary: Lane, shadows: [Lane])? {
        table.destinations(for: event)
    }

    /// The rejection for an event no route takes.
    public func unroutedRejection(_ event: UsageEvent) -> DeliveryOutcome {
        let policy = config.unrouted == .deadLetter ? "kept as a dead letter" : "refused"
        return .rejected(
            .local(
                "unrouted", field: "name",
                "no route takes '\(event.name)' for customer '\(event.customer)' at \(RFC3339.format(event.timestamp)) (\(policy)); add a route in \(config.file)"
            ))
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
                guard let sink = table[lane]?.sink else { continue }
                group.addTask {
                    var result: [(Int, DeliveryOutcome)] = []
                    if sink.capabilities.aggregation != nil {
                        let outcomes = try await self.deliverAggregated(
                            indices.map { batch[$0] }, lane: lane, sink: sink)
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
        let table = self.table
        let task = Task {
            await withTaskGroup(of: [DestinationReport].self) { group in
                for (lane, events) in work {
                    guard let sink = table[lane]?.sink else { continue }
                    group.addTask {
                        var reports: [DestinationReport] = []
                        for chunk in Batcher.batches(events, maxBatchSize: sink.capabilities.maxBatchSize) {
                            let outcomes: [DeliveryOutcome]
                            do {
                                outcomes = try await sink.deliver(chunk)
                            } catch {
                                let reason = RejectionReason(
                                    code: (error as? UsageBillingError)?.shortDescription ?? "error",
                                    message: "\(error)", origin: .local)
                                outcomes = chunk.map { _ in .rejected(reason) }
                            }
                            reports += zip(chunk, outcomes).map {
                                DestinationReport(eventID: $0.id, lane: lane, role: .shadow, history: [$1])
                            }
                        }
                        return reports
                    }
                }
                for await part in group { self.record(part) }
            }
        }
        shadows.with { $0.tasks.append(task) }
    }

    private func record(_ reports: [DestinationReport]) { shadows.with { $0.reports += reports } }

    /// Waits for the shadow deliveries started so far and returns (and forgets) their reports.
    public func drainShadows() async -> [DestinationReport] {
        let tasks = shadows.with { s in
            defer { s.tasks.removeAll() }; return s.tasks
        }
        for task in tasks { await task.value }
        return shadows.with { s in
            defer { s.reports.removeAll() }; return s.reports
        }
    }

    /// Delivers `batch` to every destination — primaries and shadows concurrently, each lane
    /// through its own ``RetryingDeliverer`` — and reports every destination separately. A lane
    /// that throws (bad credentials) reports its events rejected with that error; others go on.
    public func deliverEverywhere(_ batch: [UsageEvent], policy: RetryPolicy, pace: Bool = true) async
        -> [DestinationReport]
    {
        var reports: [DestinationReport] = []
        var work: [Lane: [(UsageEvent, DestinationReport.Role)]] = [:]
        for event in batch {
            guard let d = destinations(for: event) else {
                reports.append(
                    DestinationReport(eventID: event.id, lane: nil, role: .primary, history: [unroutedRejection(event)])
                )
                continue
            }
            work[d.primary, default: []].append((event, .primary))
            for lane in d.shadows { work[lane, default: []].append((event, .shadow)) }
        }
        let table = self.table, clock = self.clock
        for (lane, items) in work where table[lane]?.sink.capabilities.aggregation != nil {
            fold(items.map(\.0), lane: lane)
            reports += items.map {
                DestinationReport(eventID: $0.0.id, lane: lane, role: $0.1, history: [], aggregated: true)
            }
            work[lane] = nil
        }
        await withTaskGroup(of: [DestinationReport].self) { group in
            for (lane, items) in work {
                guard let sink = table[lane]?.sink else { continue }
                group.addTask {
                    let deliverer = RetryingDeliverer(
                        sink: sink, policy: policy, clock: clock, pace: pace, rateLimiter: table[lane]?.limiter)
                    do {
                        let results = try await deliverer.deliver(items.map(\.0))
                        return zip(items, results).map {
                            DestinationReport(eventID: $0.0.id, lane: lane, role: $0.1, history: $1.history)
                        }
                    } catch {
                        let reason = RejectionReason(
                            code: (error as? UsageBillingError)?.shortDescription ?? "error", message: "\(error)",
                            origin: .local)
                        return items.map {
                            DestinationReport(eventID: $0.0.id, lane: lane, role: $0.1, history: [.rejected(reason)])
                        }
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
        guard let spec = table[lane]?.sink.capabilities.aggregation else { return }
        aggregators.with { aggregators in
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
        let records: [Lane: [UsageEvent]] = aggregators.with { aggregators in
            var out: [Lane: [UsageEvent]] = [:]
            for lane in aggregators.keys {
                guard var aggregator = aggregators[lane] else { continue }
                let emitted = aggregator.flush()
                aggregators[lane] = aggregator
                if !emitted.isEmpty { out[lane] = emitted }
            }
            return out
        }
        let table = self.table, clock = self.clock
        let role: (Lane) -> DestinationReport.Role = { lane in table[lane]?.role ?? .primary }
        var reports: [DestinationReport] = []
        await withTaskGroup(of: [DestinationReport].self) { group in
            for (lane, events) in records {
                guard let sink = table[lane]?.sink else { continue }
                let laneRole = role(lane)
                group.addTask {
                    let deliverer = RetryingDeliverer(
                        sink: sink, policy: policy, clock: clock, pace: pace, rateLimiter: table[lane]?.limiter)
                    do {
                        return try await deliverer.deliver(events).map {
                            DestinationReport(eventID: $0.eventID, lane: lane, role: laneRole, history: $0.history)
                        }
                    } catch {
                        let reason = RejectionReason(
                            code: (error as? UsageBillingError)?.shortDescription ?? "error", message: "\(error)",
                            origin: .local)
                        return events.map {
                            DestinationReport(eventID: $0.id, lane: lane, role: laneRole, history: [.rejected(reason)])
                        }
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
    private func deliverAggregated(_ events: [UsageEvent], lane: Lane, sink: any UsageSink) async throws
        -> [DeliveryOutcome]
    {
        guard let spec = sink.capabilities.aggregation else { return try await sink.deliver(events) }
        let records: [UsageEvent] = aggregators.with { aggregators in
            var aggregator = aggregators[lane] ?? WindowAggregator(spec: spec, namespace: lane.description)
            for event in events { aggregator.add(event) }
            let emitted = aggregator.flush()
            aggregators[lane] = aggregator
            return emitted
        }
        var byWindow: [String: DeliveryOutcome] = [:]
        for chunk in Batcher.batches(records, maxBatchSize: sink.capabilities.maxBatchSize) {
            for (record, outcome) in zip(chunk, try await sink.deliver(chunk)) {
                byWindow[
                    "\(record.customer)\u{1F}\(record.name)\u{1F}\(AggregateInfo(record).windowStart.timeIntervalSince1970)"
                ] = outcome
            }
        }
        let aggregator = WindowAggregator(spec: spec, namespace: lane.description)
        return events.map { event in
            let start = Double(aggregator.key(for: event).0.start)
            return byWindow["\(event.customer)\u{1F}\(event.name)\u{1F}\(start)"] ?? .accepted
        }
    }
}
