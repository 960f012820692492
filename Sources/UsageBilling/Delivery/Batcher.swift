/// Splits events into batches a sink can take.
public enum Batcher {
    /// `events` in order, cut into batches of at most `maxBatchSize` (at least 1).
    public static func batches<C: Collection>(_ events: C, maxBatchSize: Int) -> [[C.Element]] {
        let size = max(1, maxBatchSize)
        var result: [[C.Element]] = []
        result.reserveCapacity((events.count + size - 1) / size)
        var current: [C.Element] = []
        current.reserveCapacity(min(size, events.count))
        for event in events {
            current.append(event)
            if current.count == size {
                result.append(current)
                current = []
                current.reserveCapacity(size)
            }
        }
        if !current.isEmpty { result.append(current) }
        return result
    }

    /// `events` cut by the sink's declared maximum batch size.
    public static func batches(_ events: [UsageEvent], for sink: some UsageSink) -> [[UsageEvent]] {
        batches(events, maxBatchSize: sink.capabilities.maxBatchSize)
    }
}
