import UsageBilling

/// How many hedges a lane may still send: one per tenth of a batch answered, ten at most, so a
/// provider that is slow for everyone gets at most about a tenth more requests, not twice as
/// many. Spent when a hedge is sent, not when a batch is armed with a hedge delay: every batch
/// in flight is armed, so whichever of them hangs is resent (a budget spent on arming ran out
/// with ten batches in flight, and a hung request among the others waited for its timeout).
public final class HedgeBudget: Sendable {
    /// Hedges the budget holds when full (a fresh lane starts full).
    public static let burst = 10.0
    /// Hedges earned per batch answered.
    public static let perBatch = 0.1
    /// Kept in tenths of a hedge, whole numbers: ten answered batches make exactly one hedge.
    private let tenths = Locked(100)

    public init() {}

    /// Takes a hedge if one is left.
    public func take() -> Bool {
        tenths.with { tenths in
            guard tenths >= 10 else { return false }
            tenths -= 10
            return true
        }
    }

    /// A batch answered: it earns a tenth of a hedge.
    public func batchAnswered() {
        tenths.with { $0 = min(100, $0 + 1) }
    }

    /// Hedges left now.
    public var available: Double { Double(tenths.current) / 10 }
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
