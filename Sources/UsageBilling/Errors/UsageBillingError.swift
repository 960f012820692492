/// The one error type of UsageBilling. Match on ``code``; read ``message`` and ``fix``.
///
/// Messages never contain secrets: adapters build them from provider error bodies and request
/// ids, never from headers or credentials.
public struct UsageBillingError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure this is. Compare with `==` against the static members.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case invalidInput = "invalid_input"
            case configuration
            case transport
            case timeout
            case cancelled
            case unexpectedResponse = "unexpected_response"
            case notFound = "not_found"
            case rejected
            case fixtureMismatch = "fixture_mismatch"
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// Bad input from the caller: an event field, a config value, a query parameter.
        public static let invalidInput = Code(.invalidInput)
        /// The sink cannot work as configured: bad or missing credentials, missing permission.
        public static let configuration = Code(.configuration)
        /// The network failed (connect, reset, TLS). See ``UsageBillingError/mayHaveReachedServer``.
        public static let transport = Code(.transport)
        /// No complete answer in time. See ``UsageBillingError/mayHaveReachedServer``.
        public static let timeout = Code(.timeout)
        /// The caller's task was cancelled.
        public static let cancelled = Code(.cancelled)
        /// The provider answered something we cannot interpret.
        public static let unexpectedResponse = Code(.unexpectedResponse)
        /// The provider says the addressed object (meter, customer, ...) does not exist.
        public static let notFound = Code(.notFound)
        /// The provider refused the request permanently (a management call, not an event).
        public static let rejected = Code(.rejected)
        /// A replayed fixture did not match the request (tests only).
        public static let fixtureMismatch = Code(.fixtureMismatch)

        /// A label-safe name (`transport`, `invalid_input`, ...): low cardinality, no user data.
        public var description: String { base.rawValue }
    }

    /// The kind of failure.
    public let code: Code
    /// What went wrong, in words.
    public let message: String
    /// What to do next, if we know.
    public let fix: String?
    /// The field or parameter at fault, if any.
    public let field: String?
    /// The provider's request id, if it answered.
    public let providerRequestID: String?
    /// For transport failures and timeouts: whether the request may have reached the server
    /// (bytes were sent). `false` means it certainly did not and a retry is entirely safe.
    public let mayHaveReachedServer: Bool
    /// The provider's HTTP status, when it answered (a 429 stays a 429 for whoever retries).
    public let httpStatus: Int?
    /// How long the provider asked to wait (`Retry-After`), when it did: a retry waits at least
    /// that long (``RetryPolicy``).
    public let retryAfter: Duration?

    /// An error of `code`; `fix` says what to do next, `field` names the input at fault.
    public init(
        _ code: Code, _ message: String, fix: String? = nil, field: String? = nil,
        providerRequestID: String? = nil, mayHaveReachedServer: Bool = false, httpStatus: Int? = nil,
        retryAfter: Duration? = nil
    ) {
        self.code = code
        self.message = message
        self.fix = fix
        self.field = field
        self.providerRequestID = providerRequestID
        self.mayHaveReachedServer = mayHaveReachedServer
        self.httpStatus = httpStatus
        self.retryAfter = retryAfter
    }

    /// A label-safe short description (the code), for metrics labels and log keys.
    public var shortDescription: String { code.description }

    public var description: String {
        var text = "\(code): \(message)"
        if let field { text += " (field: \(field))" }
        if let fix { text += ". Fix: \(fix)" }
        if let providerRequestID { text += " [request: \(providerRequestID)]" }
        return text
    }
}

extension UsageBillingError {
    /// The error for a failed management or read-back call (not event delivery, whose answers
    /// become per-event outcomes): 401/403 → `.configuration` (the credential, `credentialField`);
    /// 404 → `.notFound`; 408/409/429/5xx → `.transport` that may have reached the server (retry
    /// later, after `retryAfter` when the provider sent one); anything else → `.rejected`.
    /// `message` says what was asked and what came back; the status is kept on the error.
    public static func forFailedCall(
        status: Int, message: String, credentialField: String, notFoundFix: String = "check the id",
        field: String? = nil, providerRequestID: String? = nil, retryAfter: Duration? = nil
    ) -> UsageBillingError {
        switch status {
        case 401, 403:
            return UsageBillingError(
                .configuration, message, fix: "check \(credentialField) and its permissions", field: credentialField,
                providerRequestID: providerRequestID, httpStatus: status)
        case 404:
            return UsageBillingError(
                .notFound, message, fix: notFoundFix, field: field, providerRequestID: providerRequestID,
                httpStatus: status)
        case 408, 409, 429, 500...:
            return UsageBillingError(
                .transport, message, fix: "retry later", providerRequestID: providerRequestID,
                mayHaveReachedServer: true,
                httpStatus: status, retryAfter: retryAfter)
        default:
            return UsageBillingError(
                .rejected, message, fix: field.map { "fix \($0)" }, field: field, providerRequestID: providerRequestID,
                httpStatus: status)
        }
    }

    /// ``forFailedCall(status:message:credentialField:notFoundFix:field:providerRequestID:retryAfter:)``
    /// for `response`: its status and its `Retry-After`.
    public static func forFailedCall(
        _ response: HTTPResponse, message: String, credentialField: String, notFoundFix: String = "check the id",
        field: String? = nil, providerRequestID: String? = nil
    ) -> UsageBillingError {
        forFailedCall(
            status: response.status, message: message, credentialField: credentialField, notFoundFix: notFoundFix,
            field: field,
            providerRequestID: providerRequestID, retryAfter: response.retryAfter())
    }
}
