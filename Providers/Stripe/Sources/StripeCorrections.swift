import Foundation
import UsageBilling

/// Voids: a meter event adjustment of type `cancel` by the event's identifier (stripe.md §5.4,
/// §6), on v1's form endpoint or v2's JSON one as the lane sends events. Stripe cancels only
/// events it received within the last 24 hours. A void the ledger knows to be later than that is
/// refused here, before any request; one Stripe refuses (it received the event earlier than the
/// ledger's delivery mark says, as when the mark records a duplicate answer) is refused the same
/// way. Both are final, with the manual fix.
extension StripeSink: CorrectionSink {
    /// How long after receiving an event Stripe still cancels it.
    public static let cancelWindow: Duration = .seconds(24 * 3600)

    public var voidMethod: String { "a meter event adjustment (cancel by identifier), within 24 hours of receipt" }

    public func void(_ event: UsageEvent, deliveredAt: Date?, correctionID: String) async throws -> DeliveryOutcome {
        if let deliveredAt, clock.now().timeIntervalSince(deliveredAt) > Self.cancelWindow.seconds {
            return .rejected(
                Self.cancelWindowPassed(
                    event, why: "'\(event.id)' was delivered \(RFC3339.format(deliveredAt))", origin: .local))
        }
        do {
            _ = try await StripeClient(settings: settings, client: client).cancelMeterEvent(
                eventName: stripeEventName(for: event), identifier: event.id, idempotencyKey: correctionID)
            return .accepted
        } catch let error as UsageBillingError
            where error.httpStatus == 400 && error.message.contains("invalid_cancel_configuration")
        {
            var reason = Self.cancelWindowPassed(
                event, why: "Stripe refused the cancel: \(error.message)", origin: .provider)
            reason.providerRequestID = error.providerRequestID
            reason.httpStatus = error.httpStatus
            return .rejected(reason)
        } catch {
            return try DeliveryOutcome.ofCorrection(failingWith: error)
        }
    }

    /// The refusal of a cancel past Stripe's window, with what to do by hand.
    static func cancelWindowPassed(_ event: UsageEvent, why: String, origin: RejectionReason.Origin) -> RejectionReason
    {
        RejectionReason(
            code: "cancel_window_passed",
            message:
                "Stripe cancels a meter event only within 24 hours of receiving it; \(why). By hand: credit the customer for it (a credit note on the invoice that billed it, or a customer balance adjustment)",
            field: "id", origin: origin)
    }
}
