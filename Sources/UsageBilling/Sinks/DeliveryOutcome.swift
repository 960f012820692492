/// What happened to one event in one delivery attempt.
public enum DeliveryOutcome: Sendable, Hashable {
    /// The provider took the event.
    case accepted
    /// The provider already had this id. Success, not failure (rule 2).
    case duplicate
    /// Permanent: retrying cannot help. Goes to dead letters with the reason.
    case rejected(RejectionReason)
    /// Temporary: retry later with the same id, no sooner than `retryAfter` if given.
    case retryable(RetryableReason, retryAfter: Duration?)
    /// The request may have reached the provider (timeout or reset after sending):
    /// retry with the same id and idempotency key; the provider's dedup absorbs a repeat.
    case possiblyDelivered

    /// Whether the event needs no further delivery (accepted, duplicate or rejected).
    public var isFinal: Bool {
        switch self {
        case .accepted, .duplicate, .rejected: return true
        case .retryable, .possiblyDelivered: return false
        }
    }

    /// A low-cardinality label for metrics and summaries: `accepted`, `duplicate`, `rejected`,
    /// `retryable` or `possibly_delivered`.
    public var label: String {
        switch self {
        case .accepted: return "accepted"
        case .duplicate: return "duplicate"
        case .rejected: return "rejected"
        case .retryable: return "retryable"
        case .possiblyDelivered: return "possibly_delivered"
        }
    }
}

/// Why an event was rejected, with the provider's own words where it gave any.
public struct RejectionReason: Error, Sendable, Hashable, CustomStringConvertible {
    /// Where the rejection was decided.
    public enum Origin: String, Sendable, Hashable {
        /// Checked locally before sending; no request was made.
        case local
        /// The provider answered with an error for this event.
        case provider
    }

    /// A stable code: the provider's error code (`parameter_invalid`) or ours (`timestamp_too_old`).
    public var code: String
    /// A human explanation that says what to change.
    public var message: String
    /// The event field or provider parameter at fault, if known (`timestamp`, `payload[value]`).
    public var field: String?
    /// Where it was decided.
    public var origin: Origin
    /// The provider's request id (e.g. Stripe's `Request-Id`), to quote to its support.
    public var providerRequestID: String?
    /// The HTTP status of the provider's answer, if any.
    public var httpStatus: Int?

    /// A reason: the provider's (or local validation's) code and message, and where it came from.
    public init(
        code: String, message: String, field: String? = nil, origin: Origin,
        providerRequestID: String? = nil, httpStatus: Int? = nil
    ) {
        self.code = code
        self.message = message
        self.field = field
        self.origin = origin
        self.providerRequestID = providerRequestID
        self.httpStatus = httpStatus
    }

    /// A rejection decided locally, before any request.
    public static func local(_ code: String, field: String?, _ message: String) -> RejectionReason {
        RejectionReason(code: code, message: message, field: field, origin: .local)
    }

    public var description: String {
        var text = "\(code): \(message)"
        if let field { text += " [field: \(field)]" }
        if let providerRequestID { text += " [request: \(providerRequestID)]" }
        return text
    }
}

/// Why a delivery should be retried.
public struct RetryableReason: Sendable, Hashable, CustomStringConvertible {
    /// The kind of temporary failure.
    public enum Kind: String, Sendable, Hashable {
        case rateLimited = "rate_limited"
        case serverError = "server_error"
        case conflict
        case transport
        case timeout
        case sessionExpired = "session_expired"
    }

    /// The kind of temporary failure.
    public var kind: Kind
    /// The HTTP status, if the provider answered.
    public var httpStatus: Int?
    /// The provider's code or our explanation.
    public var message: String
    /// The provider's request id, if any.
    public var providerRequestID: String?

    /// A retryable reason.
    public init(_ kind: Kind, httpStatus: Int? = nil, message: String, providerRequestID: String? = nil) {
        self.kind = kind
        self.httpStatus = httpStatus
        self.message = message
        self.providerRequestID = providerRequestID
    }

    public var description: String {
        var text = kind.rawValue
        if let httpStatus { text += " (HTTP \(httpStatus))" }
        text += ": \(message)"
        if let providerRequestID { text += " [request: \(providerRequestID)]" }
        return text
    }
}

extension DeliveryOutcome {
    /// The outcome for events whose request failed without a response: `.possiblyDelivered`
    /// when the request may have reached the provider (retry with the same keys), `.retryable`
    /// when it certainly did not. `nil` for errors that are not transport failures (they must
    /// propagate: configuration, cancellation, ...).
    public static func forTransportFailure(_ error: any Error) -> DeliveryOutcome? {
        guard let error = error as? UsageBillingError else { return nil }
        switch error.code {
        case .timeout, .transport:
            if error.mayHaveReachedServer { return .possiblyDelivered }
            return .retryable(
                RetryableReason(error.code == .timeout ? .timeout : .transport, message: error.message),
                retryAfter: nil)
        default:
            return nil
        }
    }
}

extension DeliveryOutcome {
    /// Whether the attempt that ended so may have been applied by the provider: a timeout or
    /// broken connection after sending, or a server error (the provider may have applied the
    /// request before failing). A 429 or a conflict was refused before it was applied.
    public var mayHaveReachedProvider: Bool {
        switch self {
        case .possiblyDelivered: true
        case .retryable(let reason, _): [.serverError, .timeout, .transport].contains(reason.kind)
        default: false
        }
    }
}
