import Foundation
import UsageBilling

/// Voids: `PUT /v1/events/{id}/deprecate`, the id being the `idempotency_key` the event was
/// ingested with. Orb keeps the event and bills it no more; deprecating it again answers the
/// same, so a retry is safe without a key. Orb refuses it outside the customer's current billing
/// period (and the previous one's grace period) and past 100 corrections per customer in 100
/// days: that refusal is final, with the manual fix (a backfill with
/// `replace_existing_events`, or a credit).
extension OrbSink: CorrectionSink {
    public var voidMethod: String { "deprecating the event, in the current billing period or its grace period" }

    public func void(_ event: UsageEvent, deliveredAt: Date?, correctionID: String) async throws -> DeliveryOutcome {
        do {
            _ = try await orb.deprecateEvent(id: event.id)
            return .accepted
        } catch {
            return try DeliveryOutcome.ofCorrection(failingWith: error)
        }
    }
}
