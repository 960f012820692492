import Foundation

/// Event id generation. Ids are UUIDv7-style: 48 bits of Unix milliseconds, then random bits, so
/// ids sort by creation time (friendly to database indexes and to reading logs).
public enum EventID {
    /// A new lowercase UUIDv7 string, e.g. `019a8f3c-5b2e-7c41-9d3e-2f6a1b0c4d5e`.
    public static func generate(at date: Date = Date()) -> String {
        var rng = SystemJitter()
        return generate(at: date, using: &rng)
    }

    /// A UUIDv7 for `date`, with random bits from `rng` (deterministic in tests).
    public static func generate<R: RandomNumberGenerator>(at date: Date, using rng: inout R) -> String {
        let millis = UInt64(max(0, (date.timeIntervalSince1970 * 1000).rounded(.down)))
        var bytes = [UInt8](repeating: 0, count: 16)
        for i in 0..<6 { bytes[i] = UInt8(truncatingIfNeeded: millis >> (8 * (5 - i))) }
        let r1 = rng.next() as UInt64
        let r2 = rng.next() as UInt64
        for i in 6..<16 {
            let source = i < 11 ? r1 : r2
            bytes[i] = UInt8(truncatingIfNeeded: source >> (8 * (i % 8)))
        }
        bytes[6] = (bytes[6] & 0x0F) | 0x70  // version 7
        bytes[8] = (bytes[8] & 0x3F) | 0x80  // RFC 4122 variant
        // 8-4-4-4-12 lowercase hex digits, written straight into the string's bytes.
        let digits: StaticString = "0123456789abcdef"
        return String(unsafeUninitializedCapacity: 36) { out in
            var n = 0
            for (i, byte) in bytes.enumerated() {
                if i == 4 || i == 6 || i == 8 || i == 10 { out[n] = UInt8(ascii: "-"); n += 1 }
                out[n] = digits.utf8Start[Int(byte >> 4)]
                out[n + 1] = digits.utf8Start[Int(byte & 0x0F)]
                n += 2
            }
            return n
        }
    }

    /// A deterministic id from stable parts (e.g. provider, customer, meter, window start):
    /// `ub_` + the first 32 hex digits of SHA-256 over the parts joined with a separator that
    /// cannot occur in them. The same parts always give the same id, so a re-flush never bills twice.
    ///
    /// The separator is escaped byte by byte (U+001F is the single UTF-8 byte 0x1F, which no
    /// multi-byte sequence contains): Stripe stream batches derive their key from 100 ids, and
    /// Foundation's `replacingOccurrences` per part was a tenth of that adapter's delivery.
    public static func derived(from parts: [String]) -> String {
        var joined: [UInt8] = []
        joined.reserveCapacity(parts.reduce(parts.count) { $0 + $1.utf8.count })
        for (i, part) in parts.enumerated() {
            if i > 0 { joined.append(0x1F) }
            for byte in part.utf8 {
                joined.append(byte)
                if byte == 0x1F { joined.append(0x1F) }
            }
        }
        return "ub_" + String(SHA256.hex(joined).prefix(32))
    }

    /// The id of an event that came without one, from its content: name, customer, timestamp
    /// (to the millisecond), quantity, properties (sorted, typed) and `occurrence`, the event's
    /// 1-based number among identical events of the same file. Importing a file again gives
    /// every event the same id, so nothing bills twice; two identical lines in one file stay two
    /// events. `ub_c_` + 32 hex digits of SHA-256.
    public static func content(of event: UsageEvent, occurrence: Int) -> String {
        content(base: contentBase(of: event), occurrence: occurrence)
    }

    /// ``content(of:occurrence:)`` from the event's ``contentBase(of:)``, computed once.
    public static func content(base: String, occurrence: Int) -> String {
        "ub_c_" + String(base.dropFirst(3)) + (occurrence > 1 ? "_\(occurrence)" : "")
    }

    /// The occurrence-free part of ``content(of:occurrence:)``: equal for identical events.
    public static func contentBase(of event: UsageEvent) -> String {
        var parts = [
            "content", event.name, event.customer, RFC3339.format(event.timestamp, fractional: true),
            DecimalFormat.plain(event.quantity),
        ]
        for key in event.properties.keys.sorted() {
            parts.append(key)
            switch event.properties[key] {
            case .string(let s)?: parts.append("s" + s)
            case .number(let n)?: parts.append("n" + DecimalFormat.plain(n))
            case .bool(let b)?: parts.append(b ? "b1" : "b0")
            case nil: parts.append("")
            }
        }
        return derived(from: parts)
    }
}
