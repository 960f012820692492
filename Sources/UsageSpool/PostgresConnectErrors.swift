import Logging
import UsageBilling

/// The pool's last failed connection attempt (the pool reports them only to its background
/// logger), shared by every copy of that logger's handler.
final class ConnectErrors: Sendable {
    private let state = Locked((last: String?.none, since: ContinuousClock.Instant?.none))

    var message: String? { state.current.last }
    /// When the attempts started failing, if the last one failed.
    var failingSince: ContinuousClock.Instant? { state.current.since }

    func note(_ message: Logger.Message, metadata: Logger.Metadata?) {
        if message.description == "Connection creation failed" {
            let error =
                metadata?["psql_error"] ?? metadata?["error"] ?? metadata?.first { $0.key.contains("error") }?.value
            state.with { s in
                s.last = error.map { "\($0)" } ?? message.description
                if s.since == nil { s.since = .now }
            }
        } else if message.description == "Connection established" {
            state.with { $0.since = nil }
        }
    }
}

/// The pool's background log handler. A value: the pool copies its logger into every
/// connection attempt and sets metadata on each copy concurrently, so the metadata must belong
/// to the copy (a shared reference here was a data race that crashed processes under
/// connection churn); only the errors it notes are shared, under a lock.
struct ConnectErrorsHandler: LogHandler {
    let errors: ConnectErrors
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .debug

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        errors.note(event.message, metadata: event.metadata)
    }

    func log(
        level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String,
        function: String, line: UInt
    ) {
        errors.note(message, metadata: metadata)
    }
}
