import Foundation
import UsageBilling

/// A correction pending on one lane whose event's row there has settled: what the worker applies.
public struct DueCorrection: Sendable {
    /// The event's key in the ledger, and the correction's number.
    public var eventKey: Int64
    public var number: Int
    public var kind: CorrectionKind
    /// The event as it was recorded.
    public var event: UsageEvent
    /// Where the event's row on the lane stands: delivered or duplicate (the provider has it),
    /// aggregated (folded into a window), or dead (nothing to correct).
    public var rowState: DeliveryState
    /// When the row was last marked: for a delivered row, on or after the provider got it.
    public var rowUpdatedAt: Date
    /// Attempts at the provider so far, and when the correction was recorded.
    public var attempts: Int
    public var recordedAt: Date

    /// The correction's own id (``CorrectionRecord/id``).
    public var id: String { CorrectionRecord.id(eventID: event.id, number: number) }
}

/// What came of a correction on one lane, for the ledger to write.
public struct CorrectionSettlement: Sendable, Hashable {
    public var eventKey: Int64
    public var number: Int
    /// Applied, dead or not needed; `pending` with ``retryAt`` for another attempt.
    public var state: CorrectionLaneState
    public var reason: RejectionReason?
    public var retryAt: Date?
    /// Whether this settlement counts an attempt at the provider.
    public var attempted: Bool
}

/// What the worker does with one due correction: decided by ``LedgerEngine/step(for:lane:)``.
enum CorrectionStep: Sendable, Equatable {
    /// Send it through the lane's ``CorrectionSink``.
    case send
    /// Fold it into the event's window (the lane bills per window): the window's next revision
    /// carries it.
    case fold
    /// Write this outcome without any request.
    case settle(CorrectionLaneState, RejectionReason?)
}

/// What a lane can do with a void, read from its sink once.
struct LaneCorrections: Sendable {
    /// The lane's window formula, when it bills per window.
    var formula: AggregationFormula?
    /// Whether its sink takes voids (``CorrectionSink``).
    var sends: Bool
    /// The provider's name, for the manual fix.
    var provider: String
}

extension LedgerEngine {
    /// The step for `due` on a lane: a dead row needs nothing; a row folded into a window folds
    /// the void there (sum and count windows subtract it; a max or last window cannot be
    /// recomputed without its other events, so that void is dead with the manual fix); a row the
    /// provider has goes through the sink, or is dead where the provider has no way to void.
    static func step(for due: DueCorrection, lane: LaneCorrections) -> CorrectionStep {
        switch due.rowState {
        case .dead, .voided, .voidedUnconfirmed: return .settle(.notNeeded, nil)
        case .queued: return .settle(.pending, nil)  // not due: the ledger reads settled rows only
        case .aggregated:
            switch lane.formula {
            case .sum?, .count?: return .fold
            case let formula?:
                return .settle(
                    .dead,
                    .local(
                        "window_not_revisable", field: "aggregate.formula",
                        "a \(formula.rawValue) window cannot drop one event without its others; '\(due.event.id)' stays in its window at \(lane.provider). By hand: correct that window's record at \(lane.provider)"
                    ))
            case nil: return lane.sends ? .send : noWayToVoid(due, lane)
            }
        case .delivered, .duplicate:
            return lane.sends ? .send : noWayToVoid(due, lane)
        }
    }

    private static func noWayToVoid(_ due: DueCorrection, _ lane: LaneCorrections) -> CorrectionStep {
        .settle(
            .dead,
            .local(
                "void_not_supported", field: nil,
                "\(lane.provider) has no way to take back '\(due.event.id)' that this lane can send. By hand: credit the customer at \(lane.provider) for \(DecimalFormat.plain(due.event.quantity)) of \(due.event.name)"
            ))
    }

    /// The settlement of a correction the provider answered with `outcome`, by the retry engine:
    /// applied, dead with the reason, or pending until the retry's time.
    static func settlement(
        of due: DueCorrection, outcome: DeliveryOutcome, policy: RetryPolicy, now: Date
    ) -> CorrectionSettlement {
        var rng = SystemJitter()
        let elapsed = Duration.seconds(max(0, now.timeIntervalSince(due.recordedAt)))
        var settled = CorrectionSettlement(
            eventKey: due.eventKey, number: due.number, state: .applied, reason: nil, retryAt: nil, attempted: true)
        switch policy.decide(outcome, attemptsMade: due.attempts + 1, elapsed: elapsed, using: &rng) {
        case .delivered: break
        case .rejected(let reason), .gaveUp(let reason):
            settled.state = .dead
            settled.reason = reason
        case .retry(let wait, let reason):
            settled.state = .pending
            settled.reason = RejectionReason(code: "retrying", message: reason, origin: .local)
            settled.retryAt = now.addingTimeInterval(wait.seconds)
        }
        return settled
    }
}

extension WindowAggregator {
    /// Takes `event` back out of the window it was folded into, under `formula`: a sum loses its
    /// quantity, a count one event. Nil for max and last, which cannot drop one event without
    /// the others.
    static func unfold(_ event: UsageEvent, from state: WindowState, formula: AggregationFormula) -> WindowState? {
        var state = state
        switch formula {
        case .sum: state.value -= event.quantity
        case .count: state.value -= 1
        case .max, .last: return nil
        }
        state.events = max(0, state.events - 1)
        state.dirty = true
        return state
    }
}

/// One correction of one event, as the ledger keys it.
struct CorrectionRef: Sendable, Hashable {
    var eventKey: Int64
    var number: Int
}

extension LedgerStore {
    /// Folds the voids `due` (on a lane that bills per window, each of an event folded into a
    /// window there) out of their windows and settles them applied, in one transaction: a void
    /// is folded once, and only while still pending. The windows become dirty, so their next
    /// revision carries the change; a window not yet billed simply has a new total.
    func foldVoids(_ due: [DueCorrection], lane: String, spec: AggregationSpec, now: Date) async throws {
        guard !due.isEmpty else { return }
        let aggregator = WindowAggregator(spec: spec, namespace: lane)
        var keys: [WindowKey] = [], seen = Set<WindowKey>(), keyed: [(DueCorrection, WindowKey)] = []
        for correction in due {
            let (key, _) = aggregator.key(for: correction.event)
            if seen.insert(key).inserted { keys.append(key) }
            keyed.append((correction, key))
        }
        let folding = keyed, formula = spec.formula
        _ = try await windowTransaction(
            lane: lane,
            reading: .keys(
                keys, rows: [], corrections: due.map { CorrectionRef(eventKey: $0.eventKey, number: $0.number) }),
            now: now, exclusive: false
        ) { snapshot in
            var states = Dictionary(snapshot.windows.map { ($0.key, $0.state) }, uniquingKeysWith: { a, _ in a })
            var changes = WindowChanges(dirty: true)
            var touched: [WindowKey] = [], seen = Set<WindowKey>()
            for (correction, key) in folding
            where snapshot.pendingCorrections.contains(
                CorrectionRef(eventKey: correction.eventKey, number: correction.number))
            {
                var settlement = CorrectionSettlement(
                    eventKey: correction.eventKey, number: correction.number, state: .applied, reason: nil,
                    retryAt: nil,
                    attempted: false)
                if let state = states[key],
                    let unfolded = WindowAggregator.unfold(correction.event, from: state, formula: formula)
                {
                    states[key] = unfolded
                    if seen.insert(key).inserted { touched.append(key) }
                    // Applied in the ledger; the provider sees it as the window's next revision,
                    // which may still be refused there (a dead letter then says what to do).
                    settlement.reason = .local(
                        "folded", field: nil,
                        "folded out of its window (\(key.meter) from \(RFC3339.format(Date(timeIntervalSince1970: TimeInterval(key.start))))); the window's next revision carries it to the provider, and `usage-billing dlq list` shows it if the provider refuses that revision"
                    )
                } else {
                    settlement.state = .dead
                    settlement.reason = .local(
                        "window_not_revisable", field: nil,
                        "the window '\(correction.event.id)' was folded into is gone from the ledger or cannot drop one event. By hand: correct that window's record at the provider"
                    )
                }
                changes.settle.append(settlement)
            }
            changes.save = touched.compactMap { key in states[key].map { (key, $0) } }
            return changes
        }
    }
}
