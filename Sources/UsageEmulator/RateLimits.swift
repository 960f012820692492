import Foundation

/// A provider's documented rate limit as the emulator enforces it: a token bucket of `capacity`
/// refilled at `perSecond`, a write taking `cost` tokens (1 per request, or its events for
/// Orb's events-per-minute limit). A write that finds too few tokens is answered 429, as the
/// provider would, so the adapters' pacing is tested against the rules and not only against
/// their own limiter.
struct EmulatedRateLimit: Sendable, Hashable {
    /// The bucket's name: writes naming the same bucket share it (`stripe.test`, `orb.ingest.events`).
    var bucket: String
    var capacity: Double
    var perSecond: Double
    var cost: Double
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

extension StripeEmulation {
    /// Stripe's documented limits (stripe.md §1.9): live meter events (v1 and v2) have a limiter
    /// of their own; test-mode keys count toward the sandbox's basic limit; the v2 stream has its
    /// own (its session token does not tell the mode: live assumed). The values are the
    /// provider's, written here rather than read from the adapter, which paces under them.
    func rateLimits(for r: EmulatedRequest) -> [EmulatedRateLimit] {
        guard r.method == "POST" else { return [] }
        let auth = r.headers["Authorization"] ?? ""
        if r.path.hasSuffix("/v2/billing/meter_event_stream") {
            return [EmulatedRateLimit(bucket: "stripe.stream", capacity: 10_000, perSecond: 10_000, cost: 1)]
        }
        guard r.path.hasSuffix("/billing/meter_events") else { return [] }
        return auth.contains("_test_")
            ? [EmulatedRateLimit(bucket: "stripe.test", capacity: 25, perSecond: 25, cost: 1)]
            : [EmulatedRateLimit(bucket: "stripe.meter_events", capacity: 1_000, perSecond: 1_000, cost: 1)]
    }
}

extension OrbEmulation {
    /// Orb's documented live-mode ingest limits (orb.md, rate limits): one bucket of requests and
    /// one of events per minute, a request costing its events.
    func rateLimits(for r: EmulatedRequest) -> [EmulatedRateLimit] {
        guard r.method == "POST", r.path == "/v1/ingest" else { return [] }
        let events = Double(r.json?["events"]?.arrayValue?.count ?? 1)
        return [EmulatedRateLimit(bucket: "orb.ingest.requests", capacity: 100, perSecond: 100, cost: 1),
                EmulatedRateLimit(bucket: "orb.ingest.events", capacity: 10_000, perSecond: 10_000 / 60, cost: events)]
    }
}
