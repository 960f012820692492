import Foundation
import UsageBilling

/// Keeps one lane's lease while a worker delivers it: renews it every third of its time and
/// ends the delivery with ``LeaseLostError`` when a renewal finds it taken (the worker stalled
/// past it and another took the lane); gives it up when the delivery ends, however it ends, so
/// another worker can take the lane at once.
struct LeaseKeeper: Sendable {
    let ledger: any UsageLedger
    let lease: LaneLease
    let ttl: Duration

    /// Runs `deliver` while the lease is kept.
    func holding(_ deliver: @escaping @Sendable () async throws -> Void) async throws {
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await deliver() }
                // A lease that never expires (a ledger one worker holds) needs no renewal.
                if lease.expiresAt != .distantFuture { group.addTask { try await self.renew() } }
                _ = try await group.next()  // the lane finished, or the renewal found the lease gone
                group.cancelAll()
            }
            try? await ledger.releaseLease(lease)
        } catch {
            try? await ledger.releaseLease(lease)
            throw error
        }
    }

    private func renew() async throws {
        while true {
            try await Task.sleep(for: ttl / 3)
            guard try await ledger.renewLease(lease, ttl: ttl) else {
                throw LeaseLostError(lane: lease.lane, token: lease.token)
            }
        }
    }
}
