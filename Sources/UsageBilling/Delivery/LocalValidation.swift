import Foundation

/// Checks shared by adapters before they send (rule 6).
public enum LocalValidation {
    /// A rejection if `event.timestamp` is outside `window` around `now`, else `nil`.
    /// Codes: `timestamp_too_old`, `timestamp_in_future`.
    public static func checkTimestamp(
        _ event: UsageEvent, window: AcceptedTimeWindow?, now: Date, provider: String
    ) -> RejectionReason? {
        guard let window else { return nil }
        let age = now.timeIntervalSince(event.timestamp)
        if age > window.maxAge.seconds {
            let days = (window.maxAge.seconds / 86_400 * 10).rounded() / 10
            return .local(
                "timestamp_too_old", field: "timestamp",
                "\(provider) accepts events at most \(days.formatted()) days old; this one is from \(RFC3339.format(event.timestamp)). Send it to a provider with backfill support or drop it"
            )
        }
        if -age > window.maxFutureSkew.seconds {
            return .local(
                "timestamp_in_future", field: "timestamp",
                "\(provider) accepts events at most \(Int(window.maxFutureSkew.seconds)) s in the future; this one is at \(RFC3339.format(event.timestamp)). Check the sender's clock"
            )
        }
        return nil
    }

    /// A rejection if `value` is longer than `max` characters.
    public static func checkLength(_ value: String, max: Int, field: String) -> RejectionReason? {
        if value.isEmpty {
            return .local("\(field)_missing", field: field, "\(field) is empty; it is required")
        }
        if value.count > max {
            return .local(
                "\(field)_too_long", field: field, "\(field) is \(value.count) characters; the limit is \(max)")
        }
        return nil
    }
}
