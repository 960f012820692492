import Foundation
import UsageBilling

/// Voids: a meter event adjustment of type `cancel` by the event's identifier (stripe.md §5.4,
/// §6), on v1's form endpoint or v2's JSON one as the lane sends events. Stripe cancels only
/// events it received within the last 24 hours, and answers `pending` either way (a late cancel
/// fails later, out of band), so a void the ledger knows to be later than that is refused here,
/// before any request, with the manual fix.
extension StripeSink: CorrectionSink {
    /// How long after receiving an event Stripe still cancels it.
    public static let cancelWindow: Duration = .seconds(24 * 3600)

    public var voidMethod: String { "a meter event adjustment (cancel by identifier), within 24 hours of receipt" }

    public func void(_ event: UsageEvent, deliveredAt: Date?, correctionID: String) async throws -> DeliveryOutcome {
        let now = clock.now()
        if let deliveredAt, now.timeIntervalSince(deliveredAt) > Self.cancelWindow.seconds {
            return .rejected(
                .local(
                    "cancel_window_passed", field: "id",
                    "Stripe cancels a meter event only within 24 hours of receiving it; '\(event.id)' was delivered \(RFC3339.format(deliveredAt)). By hand: credit the customer for it (a credit note on the invoice that billed it, or a customer balance adjustment), then `usage-billing corrections \(event.id)` shows this lane as dead"
                ))
        }
        do {
            _ = try await StripeClient(settings: settings, client: client).cancelMeterEvent(
                eventName: stripeEventName(for: event), identifier: event.id, idempotencyKey: correctionID)
            return .accepted
        } catch {
            return try DeliveryOutcome.ofCorrection(failingWith: error)
        }
    }
}
