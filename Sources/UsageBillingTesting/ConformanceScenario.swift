/// The scenario catalogue every adapter runs (design §5). A provider that cannot do one declares
/// it with a reason in ``ConformanceSubject/unsupported``; it is then skipped with that reason,
/// never silently.
public enum ConformanceScenario: String, CaseIterable, Sendable, Codable, CustomStringConvertible {
    case singleEventAccepted = "single_event_accepted"
    case batchSplitAtProviderLimit = "batch_split_at_provider_limit"
    case rateLimitedWithRetryAfter = "rate_limited_with_retry_after"
    case rateLimitedWithoutRetryAfter = "rate_limited_without_retry_after"
    case serverErrorThenAccepted = "server_error_then_accepted"
    case connectionResetRetried = "connection_reset_retried"
    case timeoutIsPossiblyDelivered = "timeout_is_possibly_delivered"
    case badRequestRejected = "bad_request_rejected"
    case unauthorizedIsConfigurationError = "unauthorized_is_configuration_error"
    case unknownMeterOrCustomer = "unknown_meter_or_customer"
    case partialBatchFailure = "partial_batch_failure"
    case duplicateIsDuplicate = "duplicate_is_duplicate"
    case tooOldTimestampRejectedLocally = "too_old_timestamp_rejected_locally"
    case futureTimestampRejectedLocally = "future_timestamp_rejected_locally"
    case unsupportedValueRejectedLocally = "unsupported_value_rejected_locally"

    /// What the scenario proves.
    public var summary: String {
        switch self {
        case .singleEventAccepted: "one event is sent and accepted"
        case .batchSplitAtProviderLimit: "more events than the provider's batch limit are split into requests within it"
        case .rateLimitedWithRetryAfter:
            "429 with Retry-After is retryable after that delay, then accepted with the same keys"
        case .rateLimitedWithoutRetryAfter: "429 without Retry-After backs off, then accepted with the same keys"
        case .serverErrorThenAccepted: "5xx is retryable, then accepted with the same keys"
        case .connectionResetRetried: "a connection reset is retried with the same keys"
        case .timeoutIsPossiblyDelivered: "a timeout after sending is possiblyDelivered, retried with the same keys"
        case .badRequestRejected: "a 400 on an event rejects it with the provider's code and message"
        case .unauthorizedIsConfigurationError: "401 throws a configuration error (the whole sink is unusable)"
        case .unknownMeterOrCustomer: "an unknown meter, customer or subscription is rejected"
        case .partialBatchFailure: "a batch with some bad events is mapped per event"
        case .duplicateIsDuplicate: "the provider's 'already have it' answer is .duplicate (success)"
        case .tooOldTimestampRejectedLocally: "a too-old timestamp is rejected locally with no request"
        case .futureTimestampRejectedLocally: "a future timestamp is rejected locally with no request"
        case .unsupportedValueRejectedLocally: "a quantity or property the provider cannot take is rejected locally"
        }
    }

    /// Scenarios in which a failed request is retried (the retry must reuse the same keys).
    public var involvesRetry: Bool {
        switch self {
        case .rateLimitedWithRetryAfter, .rateLimitedWithoutRetryAfter, .serverErrorThenAccepted,
            .connectionResetRetried, .timeoutIsPossiblyDelivered:
            true
        default:
            false
        }
    }

    /// Scenarios that must make no request at all.
    public var isLocalRejection: Bool {
        switch self {
        case .tooOldTimestampRejectedLocally, .futureTimestampRejectedLocally, .unsupportedValueRejectedLocally: true
        default: false
        }
    }

    public var description: String { rawValue }
}
