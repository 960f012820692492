import Foundation
import UsageBilling

/// Stripe's error body, v1 (`{"error":{"type","code","message","param"}}`) and v2
/// (`{"error":{"type","code","message"}}`). Every field is optional and open.
public struct StripeErrorBody: Sendable, Hashable {
    /// The error `type` (`invalid_request_error`, `api_error`, ...).
    public var type: String?
    /// The error `code`, if any.
    public var code: String?
    /// Stripe's message.
    public var message: String?
    /// The parameter at fault, if any.
    public var param: String?

    /// Parses `body`; an unparseable body gives all-nil fields.
    public init(_ body: Data) {
        let error = JSONValue.parse(body)?["error"]
        type = error?["type"]?.stringValue
        code = error?["code"]?.stringValue
        message = error?["message"]?.stringValue
        param = error?["param"]?.stringValue
    }

    /// Whether this is Stripe's "this identifier was already used" answer: v2's code
    /// `duplicate_meter_event`, or v1's `invalid_request_error` whose message says an event
    /// already exists with the identifier. Never decided on the status alone.
    public var isDuplicateIdentifier: Bool {
        if code == "duplicate_meter_event" { return true }
        guard let text = message?.lowercased() else { return false }
        return text.contains("identifier")
            && (text.contains("already exists") || text.contains("already been")
                || text.contains("duplicate"))
    }
}

/// How a Stripe answer is read.
enum StripeAnswer {
    case success
    case outcome(DeliveryOutcome)
    case sessionExpired
    case configuration(UsageBillingError)

    /// Maps a response to what it means for the events it carried (stripe.md §1.7–1.8, §8.3).
    static func classify(_ response: HTTPResponse, now: Date) -> StripeAnswer {
        let status = response.status
        if (200..<300).contains(status) { return .success }
        let requestID = response.headers["Request-Id"]
        let error = StripeErrorBody(response.body)
        let shouldRetry = response.headers["Stripe-Should-Retry"]?.lowercased()
        let detail = [error.code, error.message].compactMap { $0 }.joined(separator: ": ")
        let described = detail.isEmpty ? "HTTP \(status)" : detail

        if error.isDuplicateIdentifier { return .outcome(.duplicate) }
        if status == 401,
            error.code == "billing_meter_event_session_expired" || error.type == "temporary_session_expired"
        {
            return .sessionExpired
        }
        if status == 401 {
            return .configuration(
                UsageBillingError(
                    .configuration, "Stripe rejected the credentials (401 \(described))",
                    fix: "check secret_key: it is missing, revoked, or from another account or mode",
                    field: "secret_key", providerRequestID: requestID))
        }
        if status == 403 {
            return .configuration(
                UsageBillingError(
                    .configuration, "Stripe refused access (403 \(described))",
                    fix: "use a secret key, or give the restricted key write access to Billing Meters",
                    field: "secret_key", providerRequestID: requestID))
        }
        let rateLimited = status == 429 || (status == 400 && error.code == "rate_limit")
        let retryByStatus = rateLimited || status == 409 || status >= 500
        if shouldRetry == "true" || (retryByStatus && shouldRetry != "false") {
            let kind: RetryableReason.Kind = rateLimited ? .rateLimited : status == 409 ? .conflict : .serverError
            return .outcome(
                .retryable(
                    RetryableReason(kind, httpStatus: status, message: described, providerRequestID: requestID),
                    retryAfter: response.retryAfter(now: now)))
        }
        let code = error.code ?? (status == 404 ? "resource_missing" : "http_\(status)")
        var message = error.message ?? "Stripe answered HTTP \(status)"
        if retryByStatus { message += " (Stripe-Should-Retry: false, so it is not retried)" }
        return .outcome(
            .rejected(
                RejectionReason(
                    code: code, message: message, field: error.param, origin: .provider,
                    providerRequestID: requestID, httpStatus: status)))
    }
}
