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
