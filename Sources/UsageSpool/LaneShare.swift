import Foundation
import Logging
import UsageBilling

/// How many lanes one worker of a fleet holds on a shared ledger: its fair share, the lanes
/// divided by the workers alive (rounded up), so that with 20 lanes and 5 workers none holds
/// more than 4. A worker takes a lane only below its share; when workers join and the share
/// shrinks, it hands off the lanes it took last, each after its batches in flight are marked.
/// A dead worker stops its heartbeat: the share of the others grows, and they take its lanes as
/// its leases lapse. Leases and their fencing tokens stay the guarantee that one worker
/// delivers a lane; this only decides which worker asks for which.
///
/// A value with no I/O and no clock: the worker feeds it the live count from its heartbeat and
/// the lanes it takes and gives back.
struct LaneShare: Sendable, Hashable {
    /// The lanes of the config.
    let lanes: Int
    /// Workers alive, this one included (from the last heartbeat).
    private(set) var live = 1
    /// Lanes this worker holds, in the order it took them.
    private(set) var held: [String] = []
    /// Held lanes asked to stop for another worker.
    private(set) var handingOff: Set<String> = []

    init(lanes: Int) {
        self.lanes = lanes
    }

    /// Lanes per worker: the lanes over the live workers, rounded up.
    var share: Int { max(1, (lanes + live - 1) / max(1, live)) }

    /// The heartbeat saw `workers` alive: the lanes to hand off now (the last taken beyond the
    /// share, not already handing off).
    mutating func workersAlive(_ workers: Int) -> [String] {
        live = max(1, workers)
        let keeping = held.filter { !handingOff.contains($0) }
        guard keeping.count > share else { return [] }
        let extra = Array(keeping.suffix(keeping.count - share))
        handingOff.formUnion(extra)
        return extra
    }

    /// Whether this worker may ask for `lane` now (below its share); if so it counts as held
    /// until ``released(_:)``.
    mutating func take(_ lane: String) -> Bool {
        guard held.count < share, !held.contains(lane) else { return false }
        held.append(lane)
        return true
    }

    /// `lane` is no longer held (its lease was released or not granted).
    mutating func released(_ lane: String) {
        held.removeAll { $0 == lane }
        handingOff.remove(lane)
    }
}

/// A worker's ``LaneShare`` for one run on a shared ledger, used by its lane tasks (take, give
/// back) and its heartbeat (workers alive, hand-offs), with the flag each held lane stops on
/// when it is handed off.
final class FleetShare: Sendable {
    private let state: Locked<(share: LaneShare, handoffs: [String: StopFlag])>

    init(lanes: Int) {
        state = Locked((LaneShare(lanes: lanes), [:]))
    }

    /// The flag `lane` stops on if it is handed off, when this worker may ask for it now; nil
    /// when it holds its share.
    func take(_ lane: String) -> StopFlag? {
        state.with { s in
            guard s.share.take(lane) else { return nil }
            let flag = StopFlag()
            s.handoffs[lane] = flag
            return flag
        }
    }

    /// `lane` is no longer held.
    func released(_ lane: String) {
        state.with { s in
            s.share.released(lane)
            s.handoffs[lane] = nil
        }
    }

    /// The heartbeat saw `workers` alive: the lanes beyond the share are told to stop (each
    /// finishes and marks its batches in flight, then gives its lease back). Returns them.
    @discardableResult
    func workersAlive(_ workers: Int) -> [String] {
        state.with { s in
            let extra = s.share.workersAlive(workers)
            for lane in extra { s.handoffs[lane]?.set() }
            return extra
        }
    }

    /// Lanes per worker now.
    var share: Int { state.with { $0.share.share } }
}

extension DeliveryWorker {
    /// The fleet heartbeat: every third of the lease time, tells the ledger this worker is alive
    /// and learns how many are; lanes beyond the new share are handed off. Ends when cancelled.
    func beat(_ fleet: FleetShare) async {
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: leaseTTL / 3)
            } catch {
                return
            }
            do {
                let alive = try await spool.heartbeat(owner: owner, ttl: leaseTTL)
                let handed = fleet.workersAlive(alive)
                if !handed.isEmpty {
                    logger.info(
                        "handing lanes off to the fleet",
                        metadata: [
                            "workers": "\(alive)", "share": "\(fleet.share)",
                            "lanes": "\(handed.joined(separator: ", "))",
                        ])
                }
            } catch {
                logger.warning("the fleet heartbeat failed; trying again", metadata: ["error": "\(error)"])
            }
        }
    }
}

/// A flag set once, read from any task (a worker's stop, a ledger's finished migration).
final class StopFlag: Sendable {
    private let value = Locked(false)
    func set() { value.with { $0 = true } }
    var isSet: Bool { value.current }
}
