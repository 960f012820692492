import Foundation
import UsageBilling

/// Voids: Metronome deletes no ingested event; a void is a compensating event (the opposite
/// quantity, the correction's id as `transaction_id`, which Metronome dedupes for 34 days) with
/// the original's timestamp, so it lands in the same period. Metronome takes events backdated up
/// to 34 days: an older void is refused before sending, and Metronome's operations team corrects
/// older usage (metronome.md).
extension MetronomeSink: CorrectionSink {
    public var voidMethod: String { "a compensating event with the opposite quantity, within 34 days of the event" }

    public func void(_ event: UsageEvent, deliveredAt: Date?, correctionID: String) async throws -> DeliveryOutcome {
        let outcome = try await deliver([event.compensating(id: correctionID)]).first ?? .possiblyDelivered
        // Refused before sending (older than 34 days by this clock) or by Metronome (a 4xx: by
        // its clock, or for any reason the event itself once passed): final, with the fix.
        guard case .rejected(var reason) = outcome else { return outcome }
        reason.message +=
            "; the void cannot be sent as a compensating event. By hand: ask Metronome to correct the usage, or credit the customer's invoice"
        return .rejected(reason)
    }
}
