import Foundation
import UsageBilling

/// Group commit for a ledger whose every write is a round trip and a commit (PostgreSQL):
/// concurrent `record` calls of one process share one statement. A caller that finds fewer than
/// ``maxWriters`` writes in flight leads: it writes everything queued, then whatever queued
/// meanwhile, until nothing is left (two writers keep the server busy while the next group
/// gathers). Each caller is answered only once its own entries are committed; a failed
/// write fails every caller in it, and the single statement leaves nothing half-written.
///
/// One id in two callers' entries is recorded by the first of them (in queue order); the other
/// gets it back among the ids recorded before, as if its call had come second.
final class RecordGroup: Sendable {
    /// Writes `entries` in one statement recorded at `now`; returns the ids it inserted.
    typealias Write = @Sendable (_ entries: [RecordEntry], _ now: Date) async throws -> Set<String>

    private struct Waiter {
        let entries: [RecordEntry]
        let now: Date
        let continuation: CheckedContinuation<[String], any Error>
    }
    private struct State {
        var pending: [Waiter] = []
        var writers = 0
    }
    private let state = Locked(State())
    private let write: Write
    /// The most entries one statement carries (a caller's own entries are never split).
    private let maxEntries: Int
    /// Statements in flight at once.
    private let maxWriters: Int

    init(maxEntries: Int = 5_000, maxWriters: Int = 2, write: @escaping Write) {
        self.maxEntries = maxEntries
        self.maxWriters = maxWriters
        self.write = write
    }

    /// Records `entries` with whatever else is queued; returns the ids recorded before.
    func record(_ entries: [RecordEntry], now: Date) async throws -> [String] {
        try await withCheckedThrowingContinuation { continuation in
            let leads = state.with { s -> Bool in
                s.pending.append(Waiter(entries: entries, now: now, continuation: continuation))
                guard s.writers < maxWriters else { return false }
                s.writers += 1
                return true
            }
            if leads { Task { await self.drain() } }
        }
    }

    /// Writes groups until nothing is queued.
    private func drain() async {
        while true {
            let group = state.with { s -> [Waiter] in
                guard !s.pending.isEmpty else {
                    s.writers -= 1
                    return []
                }
                var taken = 0, count = 0
                while taken < s.pending.count, taken == 0 || count + s.pending[taken].entries.count <= maxEntries {
                    count += s.pending[taken].entries.count
                    taken += 1
                }
                defer { s.pending.removeFirst(taken) }
                return Array(s.pending[..<taken])
            }
            guard !group.isEmpty else { return }
            do {
                let inserted = try await write(group.flatMap(\.entries), group.map(\.now).max() ?? Date())
                var first = Set<String>()
                for waiter in group {
                    let known = waiter.entries.compactMap { entry in
                        inserted.contains(entry.event.id) && first.insert(entry.event.id).inserted
                            ? nil : entry.event.id
                    }
                    waiter.continuation.resume(returning: known)
                }
            } catch {
                for waiter in group { waiter.continuation.resume(throwing: error) }
            }
        }
    }
}
