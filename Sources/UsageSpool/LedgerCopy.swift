import Foundation
import UsageBilling

/// One event with every row it has, as ``copyLedger(from:to:batch:progress:)`` moves it.
public struct LedgerEntry: Sendable {
    /// Its place in the source (export order).
    public var key: Int64
    public var event: UsageEvent
    public var recordedAt: Double
    public var rows: [Row]

    /// One destination's row, with everything the worker has written on it.
    public struct Row: Sendable, Hashable {
        public var lane: String
        public var state: Int
        public var attempts: Int
        public var nextAttemptAt: Double
        public var firstAttemptAt: Double?
        public var reasonCode: String?
        public var reasonMessage: String?
        public var windowRecord: Bool
        public var recordedAt: Double
        public var updatedAt: Double
    }
}

/// One aggregation window as stored (its state is the JSON `WindowState`).
public struct LedgerWindow: Sendable {
    public var lane: String
    public var key: WindowKey
    public var end: Int64
    public var dirty: Bool
    public var state: Data
}

/// One correction as stored, named by its event's id (event keys differ between ledgers), with
/// where it stands on each lane.
public struct LedgerCorrection: Sendable, Hashable {
    public var eventID: String
    public var number: Int
    public var kind: String
    public var reason: String
    public var recordedAt: Double
    public var quantity: String?
    public var lanes: [Lane]

    /// One lane of the correction, with everything the worker has written on it. The row it waits
    /// for is found again in the target: the event's raw row on that lane.
    public struct Lane: Sendable, Hashable {
        public var lane: String
        public var state: Int
        public var reasonCode: String?
        public var reasonMessage: String?
        public var updatedAt: Double
        public var attempts: Int
        public var nextAttemptAt: Double
    }
}

/// What a copy did.
public struct LedgerCopyReport: Sendable {
    /// Events read from the source.
    public var events = 0
    /// Of those, the ones the target did not have (copied with all their rows).
    public var copied = 0
    /// Windows the target did not have.
    public var windows = 0
    /// Corrections the target did not have.
    public var corrections = 0
}

/// Copies every event (with all its rows, in every state), every window and every correction
/// (with its lanes) of `source` into
/// `target`, `batch` events per transaction, in the source's order. An event the target has
/// already is left as it is, rows and all, so an interrupted copy is resumed by running it
/// again: nothing is lost or doubled. Refuses while a worker holds a lease on either ledger (run
/// it with the workers stopped), and holds the source's delivery lock (a spool's file lock)
/// while it copies.
public func copyLedger(
    from source: any UsageLedger, to target: any UsageLedger, batch: Int = 2_000,
    progress: (LedgerCopyReport) -> Void = { _ in }
) async throws -> LedgerCopyReport {
    guard source.location != target.location else {
        throw UsageBillingError(
            .invalidInput, "the source and the target are the same ledger (\(source.location))",
            fix: "name another target", field: "to")
    }
    for ledger in [source, target] {
        if let lease = try await ledger.leases().first {
            throw UsageBillingError(
                .configuration, "a worker (\(lease.owner)) is delivering lane \(lease.lane) from \(ledger.location)",
                fix: "stop every worker on both ledgers first, then copy")
        }
    }
    let lock = try await source.acquireDeliveryLock()
    defer { lock?.release() }
    var report = LedgerCopyReport()
    var after: Int64 = 0
    while true {
        let entries = try await source.exportEntries(afterKey: after, limit: max(1, batch))
        guard let last = entries.last else { break }
        report.events += entries.count
        report.copied += try await target.importEntries(entries)
        after = last.key
        progress(report)
    }
    report.windows = try await target.importWindows(try await source.exportWindows())
    report.corrections = try await target.importCorrections(try await source.exportCorrections())
    return report
}
