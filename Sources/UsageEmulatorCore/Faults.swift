import Foundation
import UsageBilling

/// Failures the emulator injects into one provider's write requests (and its reads too with
/// `reads=1`), as rates in 0…1. Seeded, so a run with the same seed and the same request order
/// fails the same way.
public struct FaultPlan: Sendable, Hashable {
    /// 429 with `Retry-After` (1 s).
    public var rateLimited: Double = 0
    /// 429 without `Retry-After`.
    public var rateLimitedNoRetryAfter: Double = 0
    /// 500.
    public var serverError: Double = 0
    /// 503.
    public var unavailable: Double = 0
    /// The connection is reset before any answer (the request is not applied).
    public var reset: Double = 0
    /// The request is applied, then no answer ever comes (the client times out).
    public var timeoutAfterAccept: Double = 0
    /// A delay before answering, applied to `delayRate` of requests.
    public var delay: Duration = .zero
    public var delayRate: Double = 0
    /// Whether reads (read-back queries) fail too, not only writes.
    public var includesReads = false

    /// No faults.
    public init() {}

    /// Every failure rate summed (the chance that a write fails).
    public var failureRate: Double {
        rateLimited + rateLimitedNoRetryAfter + serverError + unavailable + reset + timeoutAfterAccept
    }

    /// A plan failing `total` of writes, spread over every kind (timeouts kept rare: each costs
    /// the client its whole timeout).
    public static func mixed(_ total: Double, timeouts: Double = 0.005) -> FaultPlan {
        var plan = FaultPlan()
        let rest = max(0, total - timeouts)
        plan.rateLimited = rest * 0.25
        plan.rateLimitedNoRetryAfter = rest * 0.15
        plan.serverError = rest * 0.25
        plan.unavailable = rest * 0.15
        plan.reset = rest * 0.2
        plan.timeoutAfterAccept = timeouts
        return plan
    }

    /// Parses `429=0.1,429-bare=0.05,500=0.05,503=0.02,reset=0.02,timeout=0.01,delay=50ms@0.2`
    /// (and `reads=1` to fail read-back queries as well).
    /// - Throws: `.invalidInput` naming the bad entry.
    public static func parse(_ text: String) throws -> FaultPlan {
        var plan = FaultPlan()
        for entry in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !entry.isEmpty {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw bad(entry) }
            if parts[0] == "delay" {
                let d = parts[1].split(separator: "@").map(String.init)
                guard let ms = d.first.flatMap({ Int($0.replacingOccurrences(of: "ms", with: "")) }), d.count <= 2
                else { throw bad(entry) }
                plan.delay = .milliseconds(ms)
                plan.delayRate = d.count == 2 ? (Double(d[1]) ?? -1) : 1
                guard (0...1).contains(plan.delayRate) else { throw bad(entry) }
                continue
            }
            if parts[0] == "reads" {
                guard ["0", "1"].contains(parts[1]) else { throw bad(entry) }
                plan.includesReads = parts[1] == "1"
                continue
            }
            guard let rate = Double(parts[1]), (0...1).contains(rate) else { throw bad(entry) }
            switch parts[0] {
            case "429": plan.rateLimited = rate
            case "429-bare": plan.rateLimitedNoRetryAfter = rate
            case "500": plan.serverError = rate
            case "503": plan.unavailable = rate
            case "reset": plan.reset = rate
            case "timeout": plan.timeoutAfterAccept = rate
            default: throw bad(entry)
            }
        }
        guard plan.failureRate <= 1 else {
            throw UsageBillingError(
                .invalidInput, "fault rates add up to more than 1 in '\(text)'", fix: "lower them", field: "faults")
        }
        return plan
    }

    private static func bad(_ entry: String) -> UsageBillingError {
        UsageBillingError(
            .invalidInput, "fault '\(entry)' is not understood",
            fix:
                "write kind=rate with kind one of 429, 429-bare, 500, 503, reset, timeout (rate 0…1), delay=50ms@0.2, or reads=1",
            field: "faults")
    }

    /// What happens to one request.
    enum Decision: Equatable {
        case pass, rateLimited(retryAfter: Bool), serverError(Int), reset, timeoutAfterAccept

        /// The name the fault spec gives it (`429`, `429-bare`, `500`, `503`, `reset`, `timeout`).
        var specName: String {
            switch self {
            case .pass: "pass"
            case .rateLimited(let retryAfter): retryAfter ? "429" : "429-bare"
            case .serverError(let status): String(status)
            case .reset: "reset"
            case .timeoutAfterAccept: "timeout"
            }
        }
    }

    func decide(_ roll: Double) -> Decision {
        var edge = rateLimited
        if roll < edge { return .rateLimited(retryAfter: true) }
        edge += rateLimitedNoRetryAfter
        if roll < edge { return .rateLimited(retryAfter: false) }
        edge += serverError
        if roll < edge { return .serverError(500) }
        edge += unavailable
        if roll < edge { return .serverError(503) }
        edge += reset
        if roll < edge { return .reset }
        edge += timeoutAfterAccept
        if roll < edge { return .timeoutAfterAccept }
        return .pass
    }
}
