import Foundation
import Logging
import Metrics
import ServiceLifecycle
import UsageBilling
import UsageRouting

/// Config → router → spool → worker, as one object: `record` returns once events are durable;
/// `flush` waits until everything recorded so far is delivered or dead-lettered.
public final class UsagePipeline: Sendable {
    /// The ledger: a SQLite spool, or a Postgres ledger shared with other processes.
    public let spool: any UsageLedger
    /// The router.
    public let router: Router
    /// The worker.
    public let worker: DeliveryWorker

    /// A pipeline over `config`, spooling to `spoolPath`, sending with `client`.
    public convenience init(
        config: RoutingConfig, spoolPath: String, client: any HTTPClient, durability: SpoolDurability = .normal,
        policy: RetryPolicy = .worker, clock: any UsageClock = SystemClock()
    ) throws {
        try self.init(
            config: config, ledger: try Spool(path: spoolPath, durability: durability), client: client, policy: policy,
            clock: clock)
    }

    /// A pipeline over `config`, recording into `ledger` (``openLedger(_:durability:)`` opens one
    /// by its location: a file or a `postgres://` URL).
    public init(
        config: RoutingConfig, ledger: any UsageLedger, client: any HTTPClient,
        policy: RetryPolicy = .worker, clock: any UsageClock = SystemClock()
    ) throws {
        spool = ledger
        router = try Router(config: config, client: client, clock: clock)
        worker = DeliveryWorker(spool: spool, router: router, policy: policy, clock: clock)
    }

    /// Records events durably, one row per destination. Under `unrouted: reject`, an event no
    /// route takes makes the call throw `.invalidInput` before anything is written; under
    /// `dead-letter` it is kept as a dead letter on the `unrouted` lane.
    public func record(_ events: [UsageEvent]) async throws {
        try await spool.record(try Self.entries(events, router: router))
    }

    /// The spool entries for `events`.
    public static func entries(_ events: [UsageEvent], router: Router) throws -> [RecordEntry] {
        try events.map { try entry($0, router: router) }
    }

    /// The spool entry for one event (throws as ``entries(_:router:)`` does for it alone).
    public static func entry(_ event: UsageEvent, router: Router) throws -> RecordEntry {
        if let d = router.destinations(for: event) {
            return RecordEntry(event: event, lanes: ([d.primary] + d.shadows).map(\.description))
        }
        guard case .rejected(let reason) = router.unroutedRejection(event) else {
            return RecordEntry(event: event, lanes: [])
        }
        if router.config.unrouted == .reject {
            throw UsageBillingError(
                .invalidInput, reason.message, fix: "add a route for '\(event.name)' or set unrouted: dead-letter",
                field: "name")
        }
        return RecordEntry(event: event, lanes: [], deadLetter: ("unrouted", reason))
    }

    /// Voids recorded events, with the reason: see ``LedgerStore/void(_:reason:now:)``. An id
    /// the ledger does not hold throws `.invalidInput` naming it, and nothing is voided.
    @discardableResult
    public func void(_ ids: [String], reason: String) async throws -> [VoidResult] {
        try await spool.void(ids, reason: reason, now: Date())
    }

    /// Amends a recorded event to `quantity`, with the reason: the event leaves its lanes as a
    /// void does, and its replacement (the correction's id, the new quantity) is recorded on the
    /// lanes the config routes it to. An amend after an amend supersedes it; amending again to
    /// the same quantity changes nothing (and records the replacement again, a no-op, so a call
    /// that died between the two finishes).
    @discardableResult
    public func amend(_ id: String, quantity: Decimal, reason: String) async throws -> AmendResult {
        let result = try await spool.amend(id, quantity: quantity, reason: reason, now: Date())
        try await record([result.replacement])
        return result
    }

    /// Delivers until every row recorded so far is final. Lanes that bill per window emit every
    /// window with new events first (`closingOpenWindows`, default), so everything recorded is
    /// billed; events arriving later for the same window go out as the window's next revision.
    /// Runs the worker, so it throws `.configuration` while another worker (a `DeliveryService`
    /// in this process, or `usage-billing worker`) delivers from the same spool.
    public func flush(closingOpenWindows: Bool = true) async throws {
        try await worker.run(untilEmpty: true, closeOpenWindows: closingOpenWindows)
    }
}
