import Foundation
import UsageBilling

/// The marks of a lane's finished batches, held to be written together. A Stripe v1 lane
/// finishes a batch (one event) per request: writing each batch's marks before its slot and
/// concurrency keys came free made every request wait for a transaction of about ten marks, and
/// those transactions were a tenth of the delivery's CPU.
///
/// Held only on lanes that keep several requests in flight to a provider that drops a repeated
/// id: a crash loses the held marks, so those rows (about ``rows`` at most, or ``age`` worth) go
/// again with the same ids, as rows in flight at a crash always have. Everything held is written
/// before the lane starts a new pass, sleeps, stops or returns.
struct MarkHold {
    /// Written once this many are held...
    static let rows = 256
    /// ... or the oldest was held this long, by the time the lane's machine is given (so a test
    /// that controls the clock decides when age alone writes them).
    static let age: Duration = .milliseconds(20)
    private var marks: [(seq: Int64, mark: DeliveryMark)] = []
    /// When the first of the held marks was seen by ``take(force:now:)``; nil until then.
    private var since: Date?

    var isEmpty: Bool { marks.isEmpty }

    mutating func add(_ more: [(seq: Int64, mark: DeliveryMark)]) {
        guard !more.isEmpty else { return }
        if marks.isEmpty { since = nil }
        marks += more
    }

    /// The held marks, if it is time to write them at `now` (or `force`), and holds none after.
    /// A clock that went back writes them at once: early is safe, late is not.
    mutating func take(force: Bool, now: Date) -> [(seq: Int64, mark: DeliveryMark)]? {
        guard !marks.isEmpty else { return nil }
        let held = since ?? now
        since = held
        let waited = now.timeIntervalSince(held)
        guard force || marks.count >= Self.rows || waited >= Self.age.seconds || waited < 0 else { return nil }
        defer {
            marks = []
            since = nil
        }
        return marks
    }
}
