import Foundation

/// Event id generation. Ids are UUIDv7-style: 48 bits of Unix milliseconds, then random bits, so
/// ids sort by creation time (friendly to database indexes and to reading logs).
public enum EventID {
    /// A new lowercase UUIDv7 string, e.g. `019a8f3c-5b2e-7c41-9d3e-2f6a1b0c4d5e`.
    public static func generate(at date: Date = Date()) -> String {
        var rng = SystemRandomNumberGenerator()
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
        let hex = bytes.map { String(format: "%02x", $0) }.joined()
        let parts = [hex.prefix(8), hex.dropFirst(8).prefix(4), hex.dropFirst(12).prefix(4),
                     hex.dropFirst(16).prefix(4), hex.dropFirst(20)]
        return parts.joined(separator: "-")
    }

    /// A deterministic id from stable parts (e.g. provider, customer, meter, window start):
    /// `ub_` + the first 32 hex digits of SHA-256 over the parts joined with a separator that
    /// cannot occur in them. The same parts always give the same id, so a re-flush never bills twice.
    public static func derived(from parts: [String]) -> String {
        let joined = parts.map { $0.replacingOccurrences(of: "\u{1F}", with: "\u{1F}\u{1F}") }
            .joined(separator: "\u{1F}")
        return "ub_" + String(SHA256.hex(Array(joined.utf8)).prefix(32))
    }
}
