import UsageBilling

/// The ledger cannot be reached now (the server is down or restarting, the network dropped).
/// A call that failed this way either was written whole or not at all (each is one
/// transaction), so retrying it with the same ids is safe: an id recorded before changes nothing.
public struct LedgerUnavailableError: Error, CustomStringConvertible {
    public var location: String
    public var reason: String
    public var description: String {
        "unavailable: the ledger \(location) cannot be reached (\(reason)). Fix: retry with the same event ids once the database is back; each call is written whole or not at all, and an id recorded before changes nothing"
    }

    /// How long to wait before trying the ledger again after `outages` failures in a row (the
    /// retry engine's curve: full jitter from 0.25 s up to 5 s, so a fleet that lost its
    /// database together does not reconnect in step), or nil once `elapsed` passes `giveUpAfter`.
    public static func wait(outages: Int, elapsed: Duration = .zero, giveUpAfter: Duration = .seconds(365 * 86_400))
        -> Duration?
    {
        RetryPolicy(baseDelay: .milliseconds(250), maxDelay: .seconds(5), maxAttempts: .max, maxElapsed: giveUpAfter)
            .delay(attemptsMade: max(1, outages), elapsed: elapsed, retryAfter: nil)
    }
}
