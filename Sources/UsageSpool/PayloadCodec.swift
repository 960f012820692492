import Foundation
import UsageBilling

/// How the spool stores an event: a compact binary form, written and read by hand (a tag byte,
/// then length-prefixed UTF-8 strings, the timestamp's bits, the quantity as its exact decimal
/// text, and the typed properties). `JSONEncoder`/`JSONDecoder` cost tens of microseconds an
/// event on Linux and were the spool's largest per-event cost. Rows written by earlier versions
/// hold the event as JSON and still decode.
enum PayloadCodec {
    private static let binaryTag: UInt8 = 0x01

    static func encode(_ event: UsageEvent) -> Data {
        var out = [UInt8]()
        out.reserveCapacity(
            64 + event.id.utf8.count + event.name.utf8.count + event.customer.utf8.count + event.properties.count * 24)
        out.append(binaryTag)
        write(event.id, &out)
        write(event.name, &out)
        write(event.customer, &out)
        var bits = event.timestamp.timeIntervalSince1970.bitPattern
        for _ in 0..<8 { out.append(UInt8(truncatingIfNeeded: bits)); bits >>= 8 }
        write(DecimalFormat.plain(event.quantity), &out)
        writeLength(event.properties.count, &out)
        for key in event.properties.keys.sorted() {
            write(key, &out)
            switch event.properties[key] {
            case .string(let s)?: out.append(0); write(s, &out)
            case .number(let d)?: out.append(1); write(DecimalFormat.plain(d), &out)
            case .bool(let b)?: out.append(b ? 3 : 2)
            case nil: out.append(2)
            }
        }
        return Data(out)
    }

    static func decode(_ data: Data) throws -> UsageEvent {
        guard data.first == binaryTag else { return try JSONDecoder().decode(UsageEvent.self, from: data) }
        return try data.withUnsafeBytes { raw -> UsageEvent in
            var reader = Reader(bytes: raw, at: 1)
            let id = try reader.string(), name = try reader.string(), customer = try reader.string()
            let seconds = Double(bitPattern: try reader.uint64())
            let quantity = try reader.decimal()
            var properties: [String: UsageValue] = [:]
            let count = try reader.length()
            properties.reserveCapacity(count)
            for _ in 0..<count {
                let key = try reader.string()
                switch try reader.byte() {
                case 0: properties[key] = .string(try reader.string())
                case 1: properties[key] = .number(try reader.decimal())
                case 2: properties[key] = .bool(false)
                case 3: properties[key] = .bool(true)
                default: throw Reader.damaged
                }
            }
            return UsageEvent(
                id: id, name: name, customer: customer, timestamp: Date(timeIntervalSince1970: seconds),
                quantity: quantity, properties: properties)
        }
    }

    private static func write(_ s: String, _ out: inout [UInt8]) {
        var s = s
        s.withUTF8 { utf8 in
            writeLength(utf8.count, &out)
            out.append(contentsOf: utf8)
        }
    }

    private static func writeLength(_ n: Int, _ out: inout [UInt8]) {
        var v = UInt(n)
        while v >= 0x80 { out.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        out.append(UInt8(v))
    }

    private struct Reader {
        static let damaged = UsageBillingError(
            .unexpectedResponse, "a spooled event is damaged",
            fix: "stop the worker and check the spool with `sqlite3 FILE 'PRAGMA integrity_check'`")
        let bytes: UnsafeRawBufferPointer
        var at: Int

        mutating func byte() throws -> UInt8 {
            guard at < bytes.count else { throw Self.damaged }
            defer { at += 1 }
            return bytes[at]
        }

        mutating func length() throws -> Int {
            var value: UInt = 0, shift: UInt = 0
            while true {
                let b = try byte()
                value |= UInt(b & 0x7F) << shift
                if b < 0x80 { break }
                shift += 7
                guard shift < 63 else { throw Self.damaged }
            }
            guard value <= UInt(bytes.count - at) else { throw Self.damaged }
            return Int(value)
        }

        mutating func string() throws -> String {
            let n = try length()
            defer { at += n }
            return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[at..<at + n]), as: UTF8.self)
        }

        mutating func uint64() throws -> UInt64 {
            guard bytes.count - at >= 8 else { throw Self.damaged }
            var v: UInt64 = 0
            for i in 0..<8 { v |= UInt64(bytes[at + i]) << (8 * UInt64(i)) }
            at += 8
            return v
        }

        mutating func decimal() throws -> Decimal {
            guard let d = DecimalFormat.parse(try string()) else { throw Self.damaged }
            return d
        }
    }
}
