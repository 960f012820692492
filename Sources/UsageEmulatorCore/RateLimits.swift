import Foundation

/// A provider's documented rate limit as the emulator enforces it: a token bucket of `capacity`
/// refilled at `perSecond`, a write taking `cost` tokens (1 per request, or its events for
/// Orb's events-per-minute limit). A write that finds too few tokens is answered 429, as the
/// provider would, so the adapters' pacing is tested against the rules and not only against
/// their own limiter.
public struct EmulatedRateLimit: Sendable, Hashable {
    /// The bucket's name: writes naming the same bucket share it (`stripe.test`, `orb.ingest.events`).
    public var bucket: String
    public var capacity: Double
    public var perSecond: Double
    public var cost: Double

    public init(bucket: String, capacity: Double, perSecond: Double, cost: Double) {
        self.bucket = bucket
        self.capacity = capacity
        self.perSecond = perSecond
        self.cost = cost
    }
}

/// The buckets of every limit, on real time.
struct RateBuckets: Sendable {
    private var levels: [String: (tokens: Double, at: ContinuousClock.Instant)] = [:]

    /// Takes every limit's cost if each has enough tokens; otherwise takes nothing and names the
    /// first limit that refused.
    mutating func take(_ limits: [EmulatedRateLimit], now: ContinuousClock.Instant) -> EmulatedRateLimit? {
        var updated: [(String, Double)] = []
        for limit in limits {
            let level = levels[limit.bucket] ?? (limit.capacity, now)
            let tokens = min(limit.capacity, level.tokens + (now - level.at).seconds * limit.perSecond)
            guard tokens >= limit.cost else { return limit }
            updated.append((limit.bucket, tokens - limit.cost))
        }
        for (bucket, tokens) in updated { levels[bucket] = (tokens, now) }
        return nil
    }

    mutating func reset() { levels = [:] }
}
