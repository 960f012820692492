/// A delivery sent again, with the same events (so the same ids and idempotency keys), when the
/// first attempt has not answered within a delay: for providers that drop a repeated id, where a
/// second copy is harmless and a hung request would otherwise hold its slot until it times out.
public enum Hedged {
    /// What came of a hedged delivery.
    public struct Answer: Sendable {
        /// One outcome per event: for each, a final outcome from either attempt if one had it,
        /// else the last answer's.
        public var outcomes: [DeliveryOutcome]
        /// Whether the second attempt was sent.
        public var hedged: Bool
        /// Whether the second attempt's answer settled the batch.
        public var hedgeWon: Bool
    }

    private enum Attempt: Sendable {
        case answer(first: Bool, [DeliveryOutcome])
        case timer
    }

    /// Runs `send`; if it has not answered after `delay` (nil: never) of real time (like the
    /// request timeout it stands in front of, whatever clock the caller paces by), runs it again
    /// beside the first. Returns once an answer settles every event, both attempts answered, or
    /// the second attempt answered (the first is then taken for hung), cancelling the other
    /// attempt: the first attempt's answer that leaves events retryable waits for the second.
    /// `pace` runs before the second attempt (the lane's rate limiter: a hedge is a request like
    /// any other). `mayHedge` is asked when the delay has passed, before the second attempt is
    /// sent: false keeps waiting for the first (a lane's hedge budget, spent only on hedges that
    /// are sent). Throws what `send` throws (the sink is unusable).
    public static func deliver(
        after delay: Duration?, pace: (@Sendable () async throws -> Void)? = nil,
        mayHedge: (@Sendable () -> Bool)? = nil,
        _ send: @escaping @Sendable () async throws -> [DeliveryOutcome]
    ) async throws -> Answer {
        guard let delay else { return Answer(outcomes: try await send(), hedged: false, hedgeWon: false) }
        return try await withThrowingTaskGroup(of: Attempt.self) { group in
            group.addTask { .answer(first: true, try await send()) }
            group.addTask {
                try await Task.sleep(for: delay)
                return .timer
            }
            var running = 1, hedged = false
            var best: [DeliveryOutcome]?
            while let attempt = try await group.next() {
                switch attempt {
                case .timer:
                    guard running > 0, mayHedge?() ?? true else { continue }
                    hedged = true
                    running += 1
                    group.addTask {
                        try await pace?()
                        return .answer(first: false, try await send())
                    }
                case .answer(let first, let outcomes):
                    running -= 1
                    let merged = best.map { merge($0, outcomes) } ?? outcomes
                    best = merged
                    // The hedge's answer ends the wait even when it leaves events retryable: the
                    // first attempt has already waited past the delay and is taken for hung, and
                    // waiting for its timeout would hold the batch's slot (and keys) that long. Its
                    // events go again with the same ids, which the provider drops if it had them.
                    if merged.allSatisfy(\.isFinal) || running == 0 || !first {
                        group.cancelAll()
                        return Answer(outcomes: merged, hedged: hedged, hedgeWon: hedged && !first)
                    }
                }
            }
            return Answer(outcomes: best ?? [], hedged: hedged, hedgeWon: false)
        }
    }

    /// Per event, a final outcome from either answer, else the later answer's.
    static func merge(_ earlier: [DeliveryOutcome], _ later: [DeliveryOutcome]) -> [DeliveryOutcome] {
        guard earlier.count == later.count else { return later }
        return zip(earlier, later).map { a, b in b.isFinal || !a.isFinal ? b : a }
    }
}
