import Foundation

/// What came of one ingest request.
public enum DeliveryAttempt: Sendable {
    /// The provider answered (any status).
    case response(HTTPResponse)
    /// No answer: the outcome for every event the request carried.
    case failed(DeliveryOutcome)
}

extension HTTPClient {
    /// Sends an ingest request; a transport failure or timeout becomes the outcome for its events
    /// (``DeliveryOutcome/forTransportFailure(_:)``) instead of an error. Other errors propagate.
    public func sendForDelivery(_ request: HTTPRequest) async throws -> DeliveryAttempt {
        do {
            return .response(try await send(request))
        } catch {
            if let outcome = DeliveryOutcome.forTransportFailure(error) { return .failed(outcome) }
            throw error
        }
    }
}

extension HTTPResponse {
    /// The common reading of a status that means "try again later": 408, 409, 429 and 5xx are
    /// retryable (429 as `rate_limited`), with `Retry-After` (or `retry-after-ms`); an
    /// `x-should-retry` header overrides the status either way. `nil` for anything else.
    public func standardRetryableOutcome(
        now: Date, message: @autoclosure () -> String,
        requestID: String? = nil
    ) -> DeliveryOutcome? {
        let advice = headers["x-should-retry"]?.lowercased()
        let byStatus = status == 408 || status == 409 || status == 429 || status >= 500
        guard advice == "true" || (byStatus && advice != "false") else { return nil }
        let kind: RetryableReason.Kind =
            switch status {
            case 429: .rateLimited
            case 409: .conflict
            case 408: .timeout
            default: .serverError
            }
        var after = retryAfter(now: now)
        if let ms = headers["retry-after-ms"].flatMap(Double.init), ms >= 0 { after = .milliseconds(Int64(ms)) }
        return .retryable(
            RetryableReason(kind, httpStatus: status, message: message(), providerRequestID: requestID),
            retryAfter: after)
    }
}
