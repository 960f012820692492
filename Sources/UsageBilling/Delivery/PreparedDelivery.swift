/// The delivery shape most adapters share: prepare each event (a local rejection, or its wire
/// form), send the prepared ones in requests of at most `maxPerRequest`, and give each event the
/// outcome of the request that carried it.
public enum PreparedDelivery {
    /// One outcome per event of `batch`, in order.
    /// - Parameters:
    ///   - batch: the events, in order.
    ///   - maxPerRequest: the most events one request carries.
    ///   - prepare: validates and maps one event; a failure is a local rejection (no request).
    ///   - send: sends one request (never empty) and returns the outcome for all its events;
    ///     throws only when the whole sink is unusable.
    public static func deliver<Prepared>(
        _ batch: [UsageEvent], maxPerRequest: Int,
        prepare: (UsageEvent) -> Result<Prepared, RejectionReason>,
        send: ([Prepared]) async throws -> DeliveryOutcome
    ) async throws -> [DeliveryOutcome] {
        try await deliver(batch, maxPerRequest: maxPerRequest, prepare: prepare) { chunk in
            Array(repeating: try await send(chunk), count: chunk.count)
        }
    }

    /// ``deliver(_:maxPerRequest:prepare:send:)`` for providers that answer each event of a
    /// request: `sendEach` returns one outcome per prepared event it was given, in order.
    public static func deliver<Prepared>(
        _ batch: [UsageEvent], maxPerRequest: Int,
        prepare: (UsageEvent) -> Result<Prepared, RejectionReason>,
        sendEach: ([Prepared]) async throws -> [DeliveryOutcome]
    ) async throws -> [DeliveryOutcome] {
        var outcomes = [DeliveryOutcome?](repeating: nil, count: batch.count)
        var ready: [(index: Int, prepared: Prepared)] = []
        for (index, event) in batch.enumerated() {
            switch prepare(event) {
            case .failure(let reason): outcomes[index] = .rejected(reason)
            case .success(let prepared): ready.append((index, prepared))
            }
        }
        // Slices of `ready`, not a copy cut into arrays: this runs once per request.
        let size = max(1, maxPerRequest)
        var start = 0
        while start < ready.count {
            let chunk = ready[start..<min(ready.count, start + size)]
            let answers = try await sendEach(chunk.map { $0.prepared })
            for (item, outcome) in zip(chunk, answers) { outcomes[item.index] = outcome }
            start = chunk.endIndex
        }
        return outcomes.map { $0 ?? .possiblyDelivered }
    }
}
