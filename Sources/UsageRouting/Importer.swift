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

    /// Whether any event ended rejected (unrouted included).
    public var anyRejected: Bool { counts.values.contains { $0.keys.contains { $0.hasPrefix("rejected") } } }
    /// Whether any event was still retryable or possibly delivered when retries ran out.
    public var anyUndelivered: Bool { counts.values.contains { $0.keys.contains { $0 == "retryable" || $0 == "possibly_delivered" } } }

    mutating func add(_ report: DestinationReport, record: Bool = false) {
        var lane = report.lane.map { "\($0.name) (\(report.role.rawValue))" } ?? "unrouted"
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
        return await run(reading: {
            defer { rest = rest.dropFirst(batchSize) }
            return rest.prefix(batchSize).map { .success($0) }
        }, progress: nil)
    }

    /// Reads batches from `next` until it gives none.
    private func run(reading next: () -> [Result<UsageEvent, EventReader.BadLine>], progress: (@Sendable (Int) -> Void)?) async -> ImportSummary {
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
            for report in await router.deliverEverywhere(events, policy: policy, pace: pace) { summary.add(report) }
            progress?(summary.events)
        }
        for report in await router.flushAggregates(policy: policy, pace: pace) { summary.add(report, record: true) }
        return summary
    }
}
