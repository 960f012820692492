import Foundation

/// A sink that can take back an event it delivered, the provider's own way: a cancel by
/// identifier, a deprecation, or a compensating event with the opposite quantity. The delivery
/// worker calls it for each void pending on the sink's lane once the event's row there has
/// settled (delivered, or answered as a duplicate), with the same discipline as events: retried
/// by the retry policy, and dead-lettered with the reason when the provider cannot take it.
///
/// A sink that bills per window (``SinkCapabilities/aggregation``) needs none of this: the
/// ledger folds a void into the event's window, and the window's next revision carries it.
public protocol CorrectionSink: UsageSink {
    /// How the provider takes a void, in a few words (`corrections` and docs show it), e.g.
    /// "a meter event adjustment (cancel), within 24 hours of receipt".
    var voidMethod: String { get }

    /// Voids `event`, which this sink delivered (the ledger marked it delivered at `deliveredAt`;
    /// the provider received it at or before then). `correctionID` is the correction's own id,
    /// the same on every retry: sent as the provider's idempotency key, or as the compensating
    /// event's id, so a retry after an ambiguous answer is applied once.
    ///
    /// Answers as ``UsageSink/deliver(_:)`` does: `.accepted` (applied), `.duplicate` (applied
    /// before), `.rejected` (the provider cannot take it: the reason's message says what to do
    /// by hand), `.retryable` or `.possiblyDelivered`. Throws only when the sink is unusable
    /// (``UsageBillingError/Code/configuration``).
    func void(_ event: UsageEvent, deliveredAt: Date?, correctionID: String) async throws -> DeliveryOutcome
}

extension DeliveryOutcome {
    /// The outcome of a correction made by a management call that threw `error`: a refusal
    /// (`.rejected`, `.notFound`, `.invalidInput`) is final with the error's message and fix; a
    /// failure that may have reached the provider is `.possiblyDelivered`; any other is
    /// retryable after the provider's `Retry-After`. A `.configuration` error is rethrown: the
    /// whole sink is unusable.
    public static func ofCorrection(failingWith error: any Error) throws -> DeliveryOutcome {
        guard let error = error as? UsageBillingError else {
            return .retryable(.init(.transport, message: "\(error)"), retryAfter: nil)
        }
        switch error.code {
        case .configuration, .cancelled: throw error
        case .rejected, .notFound, .invalidInput, .unexpectedResponse, .fixtureMismatch:
            var message = error.message
            if let fix = error.fix { message += "; by hand: \(fix)" }
            return .rejected(
                RejectionReason(
                    code: error.httpStatus.map { "http_\($0)" } ?? error.code.description, message: message,
                    field: error.field, origin: error.httpStatus == nil ? .local : .provider,
                    providerRequestID: error.providerRequestID, httpStatus: error.httpStatus))
        default:
            if error.mayHaveReachedServer && error.httpStatus == nil { return .possiblyDelivered }
            let kind: RetryableReason.Kind =
                switch error.httpStatus {
                case 429?: .rateLimited
                case 409?: .conflict
                case (500...)?: .serverError
                default: error.code == .timeout ? .timeout : .transport
                }
            return .retryable(
                RetryableReason(
                    kind, httpStatus: error.httpStatus, message: error.message,
                    providerRequestID: error.providerRequestID),
                retryAfter: error.retryAfter)
        }
    }
}

extension UsageEvent {
    /// The event that cancels this one where a provider sums what it gets and deletes nothing:
    /// the same customer, name, timestamp (so it lands in the same billing period) and
    /// properties (so it lands in the same groups), the opposite quantity, and the correction's
    /// id, which the provider dedupes like any event id.
    public func compensating(id correctionID: String) -> UsageEvent {
        UsageEvent(
            id: correctionID, name: name, customer: customer, timestamp: timestamp, quantity: -quantity,
            properties: properties)
    }
}
