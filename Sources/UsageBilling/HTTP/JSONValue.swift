import Foundation

/// Any JSON value, for provider bodies whose shape we only partly model and for comparing
/// bodies by value (object key order and number spelling do not matter).
public enum JSONValue: Sendable, Hashable, Codable, CustomStringConvertible {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// Decodes any JSON value.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let n = try? c.decode(Double.self) {
            self = .number(n)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let a = try? c.decode([JSONValue].self) {
            self = .array(a)
        } else {
            self = .object(try c.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let n):
            if n.rounded() == n, abs(n) < 1e15 { try c.encode(Int64(n)) } else { try c.encode(n) }
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    /// Parses `data` as JSON (strict RFC 8259, one value), or `nil` if it is not JSON.
    public static func parse(_ data: Data) -> JSONValue? {
        guard !data.isEmpty else { return nil }
        return JSONParser.parse(data)
    }

    /// Canonical bytes: sorted keys, no whitespace, no escaped slashes. Written by hand: every
    /// request body of the JSON adapters goes through here, and `JSONEncoder` over a recursive
    /// enum costs several times more.
    public func encoded() -> Data {
        var out = [UInt8]()
        out.reserveCapacity(256)
        write(into: &out)
        return Data(out)
    }

    func write(into out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .number(let n): out.append(contentsOf: Self.numberText(n).utf8)
        case .string(let s): Self.writeString(s, into: &out)
        case .array(let a):
            out.append(UInt8(ascii: "["))
            for (i, element) in a.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                element.write(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            out.append(UInt8(ascii: "{"))
            // Keys in UTF-8 byte order (code point order): cheaper than String's Unicode-aware
            // comparison, and the same for the ASCII keys providers use.
            for (i, entry) in o.sorted(by: { Self.bytesPrecede($0.key, $1.key) }).enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                Self.writeString(entry.key, into: &out)
                out.append(UInt8(ascii: ":"))
                entry.value.write(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// The canonical bytes of an object with these members, the same bytes as
    /// `JSONValue.object(Dictionary(members)).encoded()`, without building the dictionary (a
    /// batching adapter writes one object per event; hashing its keys into a dictionary only to
    /// sort them again cost more than the writing). Members given in key byte order are written
    /// as they are; others are sorted first. Of members with the same key the last one counts,
    /// as a dictionary would keep it.
    public static func encodeObject(_ members: [(key: String, value: JSONValue)]) -> EncodedJSON {
        var members = members
        var ordered = true
        for i in members.indices.dropFirst() where !bytesPrecede(members[i - 1].key, members[i].key) {
            ordered = false
            break
        }
        if !ordered {
            // A stable sort keeps equal keys in the order given, so the last of them is kept below.
            members.sort { bytesPrecede($0.key, $1.key) }
        }
        var out = [UInt8]()
        out.reserveCapacity(256)
        out.append(UInt8(ascii: "{"))
        var first = true
        for (i, member) in members.enumerated() {
            if i + 1 < members.count, members[i + 1].key == member.key { continue }
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            writeString(member.key, into: &out)
            out.append(UInt8(ascii: ":"))
            member.value.write(into: &out)
        }
        out.append(UInt8(ascii: "}"))
        return EncodedJSON(bytes: out)
    }

    /// The bytes of a JSON array of already encoded values.
    public static func encodeArray(_ elements: [EncodedJSON]) -> Data {
        Data(arrayBytes(elements, prefix: [UInt8](), suffix: ""))
    }

    /// The bytes of an object whose one member `key` is an array of already encoded values
    /// (`{"events":[…]}`, the body of Orb's ingest and Stripe's meter event stream).
    public static func encodeObject(key: String, array elements: [EncodedJSON]) -> Data {
        var prefix = [UInt8(ascii: "{")]
        writeString(key, into: &prefix)
        prefix.append(UInt8(ascii: ":"))
        return Data(arrayBytes(elements, prefix: prefix, suffix: "}"))
    }

    private static func arrayBytes(_ elements: [EncodedJSON], prefix: some Collection<UInt8>, suffix: String) -> [UInt8]
    {
        var out = [UInt8]()
        out.reserveCapacity(elements.reduce(prefix.count + 2 + suffix.utf8.count) { $0 + $1.bytes.count + 1 })
        out.append(contentsOf: prefix)
        out.append(UInt8(ascii: "["))
        for (i, element) in elements.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: element.bytes)
        }
        out.append(UInt8(ascii: "]"))
        out.append(contentsOf: suffix.utf8)
        return out
    }

    /// Integers without a fraction (up to 2^53), others in Swift's shortest round-trip form;
    /// non-finite values (not JSON) as `null`.
    static func numberText(_ n: Double) -> String {
        guard n.isFinite else { return "null" }
        if n.rounded() == n, abs(n) < 9_007_199_254_740_992 { return String(Int64(n)) }
        return "\(n)"
    }

    private static let hex = Array("0123456789abcdef".utf8)

    /// Whether `a` sorts before `b` in UTF-8 byte order, compared with `memcmp`.
    static func bytesPrecede(_ a: String, _ b: String) -> Bool {
        var a = a, b = b  // withUTF8 may make a bridged string contiguous; native ones are not copied
        return a.withUTF8 { x in
            b.withUTF8 { y in
                let n = min(x.count, y.count)
                if n > 0, let xa = x.baseAddress, let ya = y.baseAddress {
                    let c = memcmp(xa, ya, n)
                    if c != 0 { return c < 0 }
                }
                return x.count < y.count
            }
        }
    }

    static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        // Most strings need no escape: scan the contiguous bytes once and copy them whole.
        let copied = s.utf8.withContiguousStorageIfAvailable { bytes -> Bool in
            for b in bytes where b < 0x20 || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") { return false }
            out.append(contentsOf: bytes)
            return true
        }
        if copied == true {
            out.append(UInt8(ascii: "\""))
            return
        }
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [92, 34])
            case UInt8(ascii: "\\"): out.append(contentsOf: [92, 92])
            case 0x0A: out.append(contentsOf: [92, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [92, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [92, UInt8(ascii: "t")])
            case 0x00..<0x20:
                out.append(contentsOf: [92, UInt8(ascii: "u"), 48, 48, hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// `object[key]`, or `nil` for other values.
    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    /// The string value, if this is a string.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The number value, if this is a number.
    public var numberValue: Double? {
        if case .number(let n) = self { return n }
        return nil
    }

    /// The bool value, if this is a bool.
    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    /// The elements, if this is an array.
    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// Compact JSON text.
    public var description: String { String(decoding: encoded(), as: UTF8.self) }
}

extension JSONValue {
    /// Decodes `T` from this value.
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONDecoder().decode(T.self, from: encoded())
    }

    /// Converts any `Encodable` into a ``JSONValue``.
    public static func from<T: Encodable>(_ value: T) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(value))
    }
}

/// JSON already written in canonical form (``JSONValue/encodeObject(_:)``), ready to go into a
/// request body or an array of such values (``JSONValue/encodeArray(_:)``).
public struct EncodedJSON: Sendable, Hashable {
    /// The UTF-8 bytes.
    public let bytes: [UInt8]

    /// Wraps bytes that are one JSON value.
    public init(bytes: [UInt8]) { self.bytes = bytes }

    /// The bytes as `Data` (a request body).
    public var data: Data { Data(bytes) }
}
