import Foundation
import UsageBilling

/// Voids: OpenMeter deletes no event, and its SUM meters add negative values, so a void is a
/// compensating event (the opposite quantity, the correction's id as the CloudEvent id, which
/// OpenMeter dedupes by (source, id) like any other). A COUNT meter counts it as one more event:
/// void on such a meter by hand (see the provider's README).
extension OpenMeterSink: CorrectionSink {
    public var voidMethod: String { "a compensating event with the opposite quantity (SUM meters)" }

    public func void(_ event: UsageEvent, deliveredAt: Date?, correctionID: String) async throws -> DeliveryOutcome {
        try await deliver([event.compensating(id: correctionID)]).first ?? .possiblyDelivered
    }
}
