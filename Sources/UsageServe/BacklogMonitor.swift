import Foundation
import ServiceLifecycle
import UsageBilling
import UsageSpool

/// The spool's backlog, counted in the background (a count per request would cost more than the
/// request): `POST /v1/events` answers 503 above ``ServeSettings/maxBacklog``, and `/readyz`
/// reports whether the last count succeeded recently and which lanes lag past a bound.
public final class BacklogMonitor: Service, Sendable {
    let spool: any UsageLedger
    let every: Duration
    let lanes: [String]
    let maxLag: Duration
    private let state = Locked(
        (
            queued: 0, at: ContinuousClock.Instant?.none, error: String?.none, lagging: [String](),
            writeError: String?.none
        ))
    /// Per lane, its queued rows at every ``historyEvery``-th count, the latest last, at most
    /// ``historyPoints`` of them: the status page's backlog lines.
    private let samples = Locked((counts: [String: [Int]](), refreshes: 0))
    /// Counts between two history samples.
    public let historyEvery = 10
    /// Samples kept per lane.
    public let historyPoints = 90

    /// `every`: a count walks the queued rows' index, so a second between counts keeps it a
    /// small cost however large the backlog grows (the bound is a safety limit, not a quota).
    public init(
        spool: any UsageLedger, lanes: [String] = [], maxLag: Duration = .seconds(3600), every: Duration = .seconds(1)
    ) {
        self.spool = spool
        self.lanes = lanes
        self.maxLag = maxLag
        self.every = every
    }

    /// Queued rows at the last count.
    public var queued: Int { state.with { $0.queued } }

    /// Records how the last write of an ingest request went: a refused write makes the spool not
    /// ready until a later one succeeds.
    public func wrote(_ error: (any Error)?) {
        state.with { $0.writeError = error.map { "\($0)" } }
    }

    /// Why the spool is not ready (its last count failed or is older than 5 s, its last write
    /// was refused, or a lane lags past the bound), or nil.
    public var problem: String? {
        state.with { s in
            if let error = s.error { return "the spool cannot be read: \(error)" }
            if let error = s.writeError { return "the spool refused the last write: \(error)" }
            guard let at = s.at else { return "the spool has not been read yet" }
            if ContinuousClock.now - at > .seconds(5) {
                return "the spool was last read \(ContinuousClock.now - at) ago"
            }
            return s.lagging.isEmpty
                ? nil : "lanes behind by more than serve.max_lag: " + s.lagging.joined(separator: ", ")
        }
    }

    /// Counts once now.
    public func refresh() async {
        do {
            let n = try await spool.queuedCount(lane: nil)
            var lagging: [String] = []
            let now = Date()
            for lane in lanes {
                if let oldest = try await spool.oldestQueued(lane: lane), now.timeIntervalSince(oldest) > maxLag.seconds
                {
                    lagging.append("\(lane) (oldest undelivered recorded \(Int(now.timeIntervalSince(oldest))) s ago)")
                }
            }
            state.with { s in (s.queued, s.at, s.error, s.lagging) = (n, ContinuousClock.now, nil, lagging) }
            if samples.with({ s in
                defer { s.refreshes += 1 }; return s.refreshes % historyEvery == 0
            }) {
                var counts: [String: Int] = [:]
                for lane in lanes { counts[lane] = try await spool.queuedCount(lane: lane) }
                samples.with { s in
                    for (lane, count) in counts { s.counts[lane, default: []].append(count) }
                    for lane in counts.keys where (s.counts[lane]?.count ?? 0) > historyPoints {
                        s.counts[lane]?.removeFirst()
                    }
                }
            }
        } catch {
            state.with { $0.error = "\(error)" }
        }
    }

    /// The backlog samples per lane, oldest first.
    public var history: [String: [Int]] { samples.with { $0.counts } }

    /// What ``history`` covers, in words.
    public var historySpan: String {
        let seconds = Int(every.seconds) * historyEvery * historyPoints
        return "samples every \(Int(every.seconds) * historyEvery) s, up to \(seconds / 60) min"
    }

    /// Counts every ``every`` until the service group shuts down.
    public func run() async throws {
        await refresh()
        do {
            try await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    try await Task.sleep(for: self.every)
                    await self.refresh()
                }
            }
        } catch is CancellationError {
            // Shutting down: the sleep was cut short, which is the end of this service's work.
        }
    }
}
