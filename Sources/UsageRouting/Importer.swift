import Foundation

/// What an import did, per destination and outcome.
public struct ImportSummary: Sendable {
    /// Events read (valid lines).
    public var events = 0
    /// Lines that were not valid events.
    public var badLines = 0
    /// The first bad lines, to show.
    public var firstBadLines: [EventReader.BadLine] = []
    /// Per destination (`stripe/api_request (primary)`), per outcome (`accepted`, `rejected: code`) → count.
    public var counts: [String: [String: Int]] = [:]

    /// An event that was not final when retries ran out: where, why, after how many attempts and
    /// how long, and whether resending it with the same id is safe at that provider.
    public struct Unfinished: Sendable {
        public var eventID: String
        public var destination: String
        /// Its last outcome (retryable or possibly delivered).
        public var outcome: DeliveryOutcome
        public var attempts: Int
        public var elapsed: Duration
        /// Whether the provider drops a repeated id (so a resend with the same id bills once).
        public var providerDedupes: Bool

        /// One line: the event, the last reason, attempts and time, and what a resend does.
        public var description: String {
            let seconds = String(format: "%.1f", elapsed.seconds)
            let why: String =
                switch outcome {
                case .retryable(let reason, _): "still failing (\(reason))"
                default: "possibly delivered: the provider may already have it (the answer was lost)"
                }
            let resend =
                providerDedupes
                ? "resending it with the same id is safe: the provider drops a repeated id"
                : "the provider keeps no idempotency: look it up there before resending, or resend through the spool (`import --spool`), whose worker looks it up first"
            return "\(eventID) → \(destination): \(why); \(attempts) attempt(s) over \(seconds) s; \(resend)"
        }
    }
    /// The first unfinished events (at most ``unfinishedShown``) and how many there were.
    public var unfinished: [Unfinished] = []
    public var unfinishedCount = 0
    static let unfinishedShown = 20

    /// Whether any event ended rejected (unrouted included).
    public var anyRejected: Bool { counts.values.contains { $0.keys.contains { $0.hasPrefix("rejected") } } }
    /// Whether any event was still retryable or possibly delivered when retries ran out.
    public var anyUndelivered: Bool {
        counts.values.contains { $0.keys.contains { $0 == "retryable" || $0 == "possibly_delivered" } }
    }

    mutating func add(
        _ report: DestinationReport, record: Bool = false, elapsed: Duration = .zero, dedupes: Bool = true
    ) {
        var lane = report.lane.map { "\($0.name) (\(report.role.rawValue))" } ?? "unrouted"
        if !report.aggregated, report.lane != nil, !report.final.isFinal {
            unfinishedCount += 1
            if unfinished.count < Self.unfinishedShown {
                unfinished.append(
                    Unfinished(
                        eventID: report.eventID, destination: lane, outcome: report.final,
                        attempts: report.history.count,
                        elapsed: elapsed, providerDedupes: dedupes))
            }
        }
        if record { lane += " window records" }
        let key: String
        if report.aggregated {
            key = "aggregated"
        } else if case .rejected(let reason) = report.final {
            key = "rejected: \(reason.code)"
        } else {
            key = report.final.label
        }
        counts[lane, default: [:]][key, default: 0] += 1
    }

    /// A table of the counts.
    public func describe() -> String {
        var lines = ["Read \(events) events" + (badLines > 0 ? ", \(badLines) bad lines" : "") + "."]
        for line in firstBadLines { lines.append("  bad \(line)") }
        if badLines > firstBadLines.count { lines.append("  … \(badLines - firstBadLines.count) more bad lines") }
        for lane in counts.keys.sorted() {
            let parts = (counts[lane] ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
            lines.append("  \(lane): \(parts.joined(separator: ", "))")
        }
        if !unfinished.isEmpty { lines.append("Not delivered when retries ran out:") }
        for event in unfinished { lines.append("  \(event.description)") }
        if unfinishedCount > unfinished.count { lines.append("  … \(unfinishedCount - unfinished.count) more") }
        return lines.joined(separator: "\n")
    }
}

/// Streams events from a reader through a router in batches, with constant memory.
public struct Importer: Sendable {
    /// The router.
    public let router: Router
    /// Retry policy per destination.
    public let policy: RetryPolicy
    /// Whether to pace by the providers' rate limits (off for dry runs).
    public let pace: Bool
    /// Events read per step.
    public let batchSize: Int

    /// An importer.
    public init(router: Router, policy: RetryPolicy = .default, pace: Bool = true, batchSize: Int = 1_000) {
        self.router = router
        self.policy = policy
        self.pace = pace
        self.batchSize = max(1, batchSize)
    }

    /// Reads everything from `reader`; `progress` gets the running count of events read.
    public func run(_ reader: EventReader, progress: (@Sendable (Int) -> Void)? = nil) async -> ImportSummary {
        await run(reading: { reader.next(max: batchSize) }, progress: progress)
    }

    /// Sends events already in memory (`send`'s one event), in batches of ``batchSize``.
    public func run(_ events: [UsageEvent]) async -> ImportSummary {
        var rest = events[...]
        return await run(
            reading: {
                defer { rest = rest.dropFirst(batchSize) }
                return rest.prefix(batchSize).map { .success($0) }
            }, progress: nil)
    }

    /// Reads batches from `next` until it gives none.
    private func run(
        reading next: () -> [Result<UsageEvent, EventReader.BadLine>], progress: (@Sendable (Int) -> Void)?
    ) async -> ImportSummary {
        var summary = ImportSummary()
        while true {
            let items = next()
            if items.isEmpty { break }
            var events: [UsageEvent] = []
            events.reserveCapacity(items.count)
            for item in items {
                switch item {
                case .success(let event): events.append(event)
                case .failure(let bad):
                    summary.badLines += 1
                    if summary.firstBadLines.count < 10 { summary.firstBadLines.append(bad) }
                }
            }
            summary.events += events.count
            let started = ContinuousClock.now
            let reports = await router.deliverEverywhere(events, policy: policy, pace: pace)
            let elapsed = ContinuousClock.now - started  // the batch's: every event of it waited as long
            for report in reports { summary.add(report, elapsed: elapsed, dedupes: dedupes(report.lane)) }
            progress?(summary.events)
        }
        let started = ContinuousClock.now
        let records = await router.flushAggregates(policy: policy, pace: pace)
        for report in records {
            summary.add(report, record: true, elapsed: ContinuousClock.now - started, dedupes: dedupes(report.lane))
        }
        return summary
    }

    private func dedupes(_ lane: Lane?) -> Bool {
        guard let lane, let sink = router.sink(for: lane) else { return true }
        if case .providerDeduplicates = sink.capabilities.idempotency { return true }
        return false
    }
}
