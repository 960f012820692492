import Foundation
import UsageBilling

/// A lane's rows read from the spool and not yet handed to a batch, in seq order, each with the
/// sink's concurrency key as a ``KeyToken``.
struct ReadAhead {
    /// A concurrency key's hash. Taking a row looks its key up among the busy keys for every
    /// row it passes (up to 64 for a Stripe lane, per request), and hashing the key's text each
    /// time was a fifth of the lane's time; two keys with one hash (no more likely than any
    /// 64-bit collision) would only wait for each other.
    typealias KeyToken = Int

    let sink: any UsageSink
    let capacity: Int
    private var rows: [QueuedDelivery] = []
    private var keys: [KeyToken?] = []  // parallel to `rows`

    init(sink: any UsageSink, capacity: Int) {
        self.sink = sink
        self.capacity = capacity
    }

    /// How many more rows fit.
    var room: Int { capacity - rows.count }
    /// How far past ``capacity`` the lane reads when every row held waits for a key in flight
    /// (one customer's request hangs while its rows pile up): other keys' rows go on meanwhile.
    var overflowLimit: Int { 4 * capacity }
    /// Rows held.
    var count: Int { rows.count }
    /// Whether no row is waiting.
    var isEmpty: Bool { rows.isEmpty }

    mutating func append(_ more: [QueuedDelivery]) {
        rows.append(contentsOf: more)
        keys.append(contentsOf: more.map { sink.concurrencyKey(for: $0.event)?.hashValue })
    }

    mutating func removeAll() {
        rows.removeAll(keepingCapacity: true)
        keys.removeAll(keepingCapacity: true)
    }

    /// Up to `limit` rows, oldest first, leaving in place those whose key a batch in flight holds.
    mutating func take(_ limit: Int, busy: BusyKeys) -> [(row: QueuedDelivery, key: KeyToken?)] {
        guard !rows.isEmpty else { return [] }
        if busy.isEmpty || !keys.contains(where: { $0 != nil }) {
            let n = min(limit, rows.count)
            defer {
                rows.removeFirst(n)
                keys.removeFirst(n)
            }
            return (0..<n).map { (rows[$0], keys[$0]) }
        }
        // Only the taken rows move (copying every kept row cost a retain and release each), and
        // one taken row (a Stripe v1 request) is a plain `remove(at:)`: the generic
        // `removeSubranges` cost more than the scan.
        var picked: [Int] = []
        for i in keys.indices where picked.count < limit {
            if keys[i].map({ !busy.contains($0) }) ?? true { picked.append(i) }
        }
        let taken = picked.map { (row: rows[$0], key: keys[$0]) }
        if picked.count == 1 {
            rows.remove(at: picked[0])
            keys.remove(at: picked[0])
        } else if !picked.isEmpty {
            let ranges = RangeSet(picked, within: keys)
            rows.removeSubranges(ranges)
            keys.removeSubranges(ranges)
        }
        return taken
    }
}

/// The concurrency keys the batches in flight hold, each with how many hold it: a table of key
/// tokens (already hashes) with open addressing. `ReadAhead.take` looks up the key of every row
/// it passes, up to 64 per Stripe v1 request; a `Dictionary` hashed each token again (SipHash),
/// a twentieth of the lane's time.
struct BusyKeys: ExpressibleByDictionaryLiteral {
    private var tokens: [ReadAhead.KeyToken]
    private var holders: [Int]  // 0: the slot is free
    private var shift: Int  // 64 − log2(slots)
    /// How many distinct keys are held.
    private(set) var count = 0

    init() { self.init(slots: 64) }

    private init(slots: Int) {
        tokens = [ReadAhead.KeyToken](repeating: 0, count: slots)
        holders = [Int](repeating: 0, count: slots)
        shift = 64 - slots.trailingZeroBitCount
    }

    /// Keys with their holder counts (tests).
    init(dictionaryLiteral elements: (ReadAhead.KeyToken, Int)...) {
        self.init()
        for (token, n) in elements { for _ in 0..<n { hold(token) } }
    }

    var isEmpty: Bool { count == 0 }

    /// The token's home slot (Fibonacci hashing: the multiply spreads any bits into the top ones).
    private func home(_ token: ReadAhead.KeyToken) -> Int {
        Int(truncatingIfNeeded: (UInt64(UInt(bitPattern: token)) &* 0x9E37_79B9_7F4A_7C15) >> UInt64(shift))
    }

    /// The slot holding `token`, or the free slot where it would go.
    private func find(_ token: ReadAhead.KeyToken) -> (slot: Int, found: Bool) {
        let mask = holders.count - 1
        var i = home(token)
        while holders[i] != 0 {
            if tokens[i] == token { return (i, true) }
            i = (i + 1) & mask
        }
        return (i, false)
    }

    func contains(_ token: ReadAhead.KeyToken) -> Bool { count > 0 && find(token).found }

    /// One more batch holds `token`.
    mutating func hold(_ token: ReadAhead.KeyToken) {
        if (count + 1) * 2 > holders.count { grow() }
        let (slot, found) = find(token)
        if !found {
            tokens[slot] = token
            count += 1
        }
        holders[slot] += 1
    }

    /// A batch holding `token` finished; the key is free once no batch holds it.
    mutating func release(_ token: ReadAhead.KeyToken) {
        var (hole, found) = find(token)
        guard found else { return }
        holders[hole] -= 1
        guard holders[hole] == 0 else { return }
        count -= 1
        // Backward-shift deletion: move up each later entry of the run that may sit in the hole
        // (its home is not between the hole and it), so every lookup's probe stays unbroken.
        let mask = holders.count - 1
        var j = (hole + 1) & mask
        while holders[j] != 0 {
            if (j - home(tokens[j])) & mask >= (j - hole) & mask {
                tokens[hole] = tokens[j]
                holders[hole] = holders[j]
                holders[j] = 0
                hole = j
            }
            j = (j + 1) & mask
        }
    }

    private mutating func grow() {
        var bigger = BusyKeys(slots: holders.count * 2)
        for i in holders.indices where holders[i] != 0 {
            let (slot, _) = bigger.find(tokens[i])
            bigger.tokens[slot] = tokens[i]
            bigger.holders[slot] = holders[i]
            bigger.count += 1
        }
        self = bigger
    }
}
