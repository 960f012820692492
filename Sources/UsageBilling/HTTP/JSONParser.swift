import Foundation

/// A strict JSON (RFC 8259) parser into ``JSONValue``, written by hand: every provider answer and,
/// in the emulator, every request body goes through it, and `JSONDecoder` over the recursive
/// enum (a `try?` per candidate type at every value) cost several times more. Nesting is
/// limited (512 levels) so a hostile body cannot exhaust the stack.
struct JSONParser {
    private let bytes: UnsafeRawBufferPointer
    private var at = 0
    private var depth = 0
    private static let maxDepth = 512

    private struct Invalid: Error {}

    /// The value of `data`, or nil when it is not exactly one JSON value (whitespace around it allowed).
    static func parse(_ data: Data) -> JSONValue? {
        data.withUnsafeBytes { raw -> JSONValue? in
            var parser = JSONParser(bytes: raw)
            guard let value = try? parser.value() else { return nil }
            parser.skipWhitespace()
            return parser.at == raw.count ? value : nil
        }
    }

    private init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    private mutating func skipWhitespace() {
        while at < bytes.count {
            switch bytes[at] {
            case 0x20, 0x09, 0x0A, 0x0D: at += 1
            default: return
            }
        }
    }

    private mutating func value() throws -> JSONValue {
        skipWhitespace()
        guard at < bytes.count else { throw Invalid() }
        switch bytes[at] {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        default: return .number(try number())
        }
    }

    private mutating func literal(_ word: StaticString) throws {
        let n = word.utf8CodeUnitCount
        guard bytes.count - at >= n else { throw Invalid() }
        let same = word.withUTF8Buffer { w in (0..<n).allSatisfy { bytes[at + $0] == w[$0] } }
        guard same else { throw Invalid() }
        at += n
    }

    private mutating func enter() throws {
        depth += 1
        guard depth <= Self.maxDepth else { throw Invalid() }
    }

    private mutating func object() throws -> JSONValue {
        try enter()
        defer { depth -= 1 }
        at += 1
        skipWhitespace()
        if at < bytes.count, bytes[at] == UInt8(ascii: "}") { at += 1; return .object([:]) }
        // Room for a typical object up front: growing a dictionary rehashes every key each time.
        var out = [String: JSONValue](minimumCapacity: 8)
        while true {
            skipWhitespace()
            guard at < bytes.count, bytes[at] == UInt8(ascii: "\"") else { throw Invalid() }
            let key = try string()
            skipWhitespace()
            guard at < bytes.count, bytes[at] == UInt8(ascii: ":") else { throw Invalid() }
            at += 1
            let item = try value()
            // A repeated key: the first wins, as with JSONDecoder (one hash for the usual new key).
            if let first = out.updateValue(item, forKey: key) { out[key] = first }
            skipWhitespace()
            guard at < bytes.count else { throw Invalid() }
            if bytes[at] == UInt8(ascii: ",") { at += 1; continue }
            if bytes[at] == UInt8(ascii: "}") { at += 1; return .object(out) }
            throw Invalid()
        }
    }

    private mutating func array() throws -> JSONValue {
        try enter()
        defer { depth -= 1 }
        at += 1
        var out: [JSONValue] = []
        skipWhitespace()
        if at < bytes.count, bytes[at] == UInt8(ascii: "]") { at += 1; return .array(out) }
        while true {
            out.append(try value())
            skipWhitespace()
            guard at < bytes.count else { throw Invalid() }
            if bytes[at] == UInt8(ascii: ",") { at += 1; continue }
            if bytes[at] == UInt8(ascii: "]") { at += 1; return .array(out) }
            throw Invalid()
        }
    }

    private mutating func string() throws -> String {
        at += 1  // the opening quote
        let start = at
        var ascii = true
        // Fast path: no escapes (and, for ASCII, nothing to validate).
        while at < bytes.count {
            let b = bytes[at]
            if b == UInt8(ascii: "\"") {
                defer { at += 1 }
                let raw = UnsafeRawBufferPointer(rebasing: bytes[start..<at])
                return ascii ? String(decoding: raw, as: UTF8.self) : try Self.utf8(raw)
            }
            if b == UInt8(ascii: "\\") { break }
            guard b >= 0x20 else { throw Invalid() }
            if b >= 0x80 { ascii = false }
            at += 1
        }
        var out = [UInt8](UnsafeRawBufferPointer(rebasing: bytes[start..<at]))
        while at < bytes.count {
            let b = bytes[at]
            at += 1
            switch b {
            case UInt8(ascii: "\""): return try Self.utf8(out)
            case UInt8(ascii: "\\"):
                guard at < bytes.count else { throw Invalid() }
                let e = bytes[at]
                at += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800..<0xDC00).contains(scalar) {  // a surrogate pair
                        guard bytes.count - at >= 6, bytes[at] == UInt8(ascii: "\\"), bytes[at + 1] == UInt8(ascii: "u")
                        else { throw Invalid() }
                        at += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw Invalid() }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(scalar) {
                        throw Invalid()
                    }
                    guard let u = Unicode.Scalar(scalar) else { throw Invalid() }
                    out.append(contentsOf: Array(String(Character(u)).utf8))
                default: throw Invalid()
                }
            default:
                guard b >= 0x20 else { throw Invalid() }
                out.append(b)
            }
        }
        throw Invalid()
    }

    private mutating func hex4() throws -> UInt32 {
        guard bytes.count - at >= 4 else { throw Invalid() }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[at]
            at += 1
            let d: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
            default: throw Invalid()
            }
            v = v << 4 | UInt32(d)
        }
        return v
    }

    private static func utf8<C: Collection>(_ bytes: C) throws -> String where C.Element == UInt8 {
        guard let s = String(validating: bytes, as: UTF8.self) else { throw Invalid() }
        return s
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, as a finite Double.
    private mutating func number() throws -> Double {
        let start = at
        func digits() -> Int {
            let from = at
            while at < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[at]) { at += 1 }
            return at - from
        }
        if at < bytes.count, bytes[at] == UInt8(ascii: "-") { at += 1 }
        guard at < bytes.count else { throw Invalid() }
        if bytes[at] == UInt8(ascii: "0") { at += 1 } else if digits() == 0 { throw Invalid() }
        if at < bytes.count, bytes[at] == UInt8(ascii: ".") {
            at += 1
            guard digits() > 0 else { throw Invalid() }
        }
        if at < bytes.count, bytes[at] == UInt8(ascii: "e") || bytes[at] == UInt8(ascii: "E") {
            at += 1
            if at < bytes.count, bytes[at] == UInt8(ascii: "+") || bytes[at] == UInt8(ascii: "-") { at += 1 }
            guard digits() > 0 else { throw Invalid() }
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<at]), as: UTF8.self)
        guard let n = Double(text), n.isFinite else { throw Invalid() }
        return n
    }
}
