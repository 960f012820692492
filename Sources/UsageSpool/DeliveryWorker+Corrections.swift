import Foundation
import Logging
import Metrics
import UsageBilling
import UsageRouting

extension DeliveryWorker {
    /// `usage_billing_corrections_total` (counter; dimensions `lane`, `outcome`: applied, dead,
    /// not_needed, retrying): corrections the worker settled.
    public static let correctionsMetric = "usage_billing_corrections_total"

    /// Applies up to `limit` corrections due on `lane` (``LaneStateMachine/Action/applyCorrections(limit:)``),
    /// each by its ``CorrectionStep``, and writes what came of them. Returns whether the limit
    /// was reached and whether voids were folded into windows.
    func applyCorrections(
        lane: String, sink: any UsageSink, limit: Int, lease: LaneLease?, logger: Logger
    ) async throws -> (more: Bool, windowsChanged: Bool) {
        let due = try await spool.dueCorrections(lane: lane, now: clock.now(), limit: limit)
        guard !due.isEmpty else { return (false, false) }
        let spec = sink.capabilities.aggregation
        let provider = Lane(name: lane).flatMap { router.config.kindName(ofProvider: $0.provider) } ?? sink.name
        let corrector = sink as? any CorrectionSink
        let corrections = LaneCorrections(formula: spec?.formula, sends: corrector != nil, provider: provider)
        var folds: [DueCorrection] = [], settled: [CorrectionSettlement] = []
        for correction in due {
            switch LedgerEngine.step(for: correction, lane: corrections) {
            case .fold: folds.append(correction)
            case .settle(let state, let reason):
                settled.append(
                    CorrectionSettlement(
                        eventKey: correction.eventKey, number: correction.number, state: state, reason: reason,
                        retryAt: nil, attempted: false))
            case .send:
                guard let corrector else { continue }  // `step` sends only where there is one
                let outcome: DeliveryOutcome
                do {
                    outcome = try await corrector.void(
                        correction.event, deliveredAt: correction.rowUpdatedAt, correctionID: correction.id)
                } catch is CancellationError {
                    break
                } catch {
                    // The whole sink is unusable (credentials): the correction waits, like events do.
                    logger.error(
                        "the lane's sink failed a correction; it stays pending", metadata: ["error": "\(error)"])
                    let at = clock.now().addingTimeInterval(60)
                    settled.append(
                        CorrectionSettlement(
                            eventKey: correction.eventKey, number: correction.number, state: .pending,
                            reason: .local("lane_error", field: nil, "\(error)"), retryAt: at, attempted: true))
                    continue
                }
                settled.append(
                    LedgerEngine.settlement(of: correction, outcome: outcome, policy: policy, now: clock.now()))
            }
        }
        if let spec, !folds.isEmpty {
            try await (spool as? any LedgerStore)?.foldVoids(folds, lane: lane, spec: spec, now: clock.now())
            for _ in folds { Self.correctionCounter(lane: lane, outcome: "applied").increment() }
        }
        try await spool.settleCorrections(settled, lane: lane, now: clock.now(), lease: lease)
        let ids = Dictionary(due.map { ($0.eventKey, $0.event.id) }, uniquingKeysWith: { a, _ in a })
        for settlement in settled {
            let outcome =
                settlement.state == .pending
                ? "retrying" : settlement.state.label.replacingOccurrences(of: " ", with: "_")
            Self.correctionCounter(lane: lane, outcome: outcome).increment()
            if settlement.state == .dead, let reason = settlement.reason {
                logger.warning(
                    "correction dead",
                    metadata: [
                        "event": "\(ids[settlement.eventKey] ?? "")", "reason": "\(reason.code)",
                        "message": "\(reason.message)",
                    ])
            }
        }
        return (due.count >= limit, !folds.isEmpty)
    }

    static func correctionCounter(lane: String, outcome: String) -> Counter {
        Counter(label: correctionsMetric, dimensions: [("lane", lane), ("outcome", outcome)])
    }
}
