import Foundation

/// `application/x-www-form-urlencoded` encoding and decoding, with bracketed keys for nested
/// values (`payload[value]=5`) as Stripe-style APIs expect.
///
/// Encoding follows the HTML form rules (space → `+`, everything but `A-Z a-z 0-9 * - . _`
/// percent-encoded) except that `[` and `]` in keys are left literal, as the official SDKs send.
public enum FormEncoding {
    /// Encodes ordered `(key, value)` pairs.
    public static func encode(_ fields: [(String, String)]) -> String {
        String(decoding: encodedBytes(fields), as: UTF8.self)
    }

    /// ``encode(_:)`` as UTF-8 bytes, written into one buffer with no String per key or value:
    /// every Stripe v1 request is form-encoded, so this is on the hot path.
    public static func encodedBytes(_ fields: [(String, String)]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(fields.reduce(0) { $0 + $1.0.utf8.count + $1.1.utf8.count + 2 } + 16)
        for (i, (key, value)) in fields.enumerated() {
            if i > 0 { out.append(UInt8(ascii: "&")) }
            append(key, keepBrackets: true, to: &out)
            out.append(UInt8(ascii: "="))
            append(value, keepBrackets: false, to: &out)
        }
        return out
    }

    /// Decodes a form body or query string into ordered pairs. Malformed escapes are kept as is.
    public static func decode(_ text: String) -> [(String, String)] {
        guard !text.isEmpty else { return [] }
        // Over the UTF-8 bytes: splitting the String by Characters was a fifth of the emulator's
        // time per Stripe v1 request.
        var text = text
        return text.withUTF8(decode(bytes:))
    }

    /// The pairs of a form body as it arrived (UTF-8 bytes), without making it a String first.
    public static func decode(_ body: Data) -> [(String, String)] {
        body.withUnsafeBytes { decode(bytes: $0.bindMemory(to: UInt8.self), strict: false) } ?? []
    }

    /// ``decode(_:)-(Data)`` for a body that must be well formed (an API request's): nil when an
    /// escape is broken or decodes to invalid UTF-8, where `decode` keeps such text as it came.
    public static func decodeStrict(_ body: Data) -> [(String, String)]? {
        body.withUnsafeBytes { decode(bytes: $0.bindMemory(to: UInt8.self), strict: true) }
    }

    private static func decode(bytes: UnsafeBufferPointer<UInt8>) -> [(String, String)] {
        decode(bytes: bytes, strict: false) ?? []
    }

    private static func decode(bytes: UnsafeBufferPointer<UInt8>, strict: Bool) -> [(String, String)]? {
        func component(_ part: UnsafeBufferPointer<UInt8>) -> String? { strict ? strictUnescape(part) : unescape(part) }
        var pairs: [(String, String)] = []
        var start = 0
        while start <= bytes.count {
            var end = start
            while end < bytes.count, bytes[end] != UInt8(ascii: "&") { end += 1 }
            if end > start {
                let part = UnsafeBufferPointer(rebasing: bytes[start..<end])
                let eq = part.firstIndex(of: UInt8(ascii: "=")) ?? part.endIndex
                guard let key = component(UnsafeBufferPointer(rebasing: part[..<eq])),
                    let value = component(
                        eq < part.endIndex
                            ? UnsafeBufferPointer(rebasing: part[(eq + 1)...])
                            : UnsafeBufferPointer(rebasing: part[eq...]))
                else { return nil }
                pairs.append((key, value))
            }
            start = end + 1
        }
        return pairs
    }

    /// One component (`+` a space, `%XX` a byte), or nil when an escape is broken or the bytes
    /// are not UTF-8.
    private static func strictUnescape(_ bytes: UnsafeBufferPointer<UInt8>) -> String? {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            switch bytes[i] {
            case UInt8(ascii: "+"): out.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                guard i + 2 < bytes.count, let high = hexValue(bytes[i + 1]), let low = hexValue(bytes[i + 2]) else {
                    return nil
                }
                out.append(high << 4 | low)
                i += 2
            default: out.append(bytes[i])
            }
            i += 1
        }
        return String(validating: out, as: UTF8.self)
    }

    private static func unescape(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
        guard bytes.contains(where: { $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "%") }) else {
            return String(decoding: bytes, as: UTF8.self)
        }
        return unescape(String(decoding: bytes, as: UTF8.self))
    }

    /// Bytes sent as they are: `A-Z a-z 0-9 * - . _` (a table: this runs for every byte of every
    /// form body).
    private static let unreserved: [Bool] = {
        var table = [Bool](repeating: false, count: 256)
        for byte in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789*-._".utf8 {
            table[Int(byte)] = true
        }
        return table
    }()
    private static let hexDigits = Array("0123456789ABCDEF".utf8)

    /// Percent-encodes one key or value.
    public static func escape(_ text: String, keepBrackets: Bool) -> String {
        var out = [UInt8]()
        out.reserveCapacity(text.utf8.count + 8)
        append(text, keepBrackets: keepBrackets, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    private static func append(_ text: String, keepBrackets: Bool, to out: inout [UInt8]) {
        for byte in text.utf8 {
            if unreserved[Int(byte)] || (keepBrackets && (byte == UInt8(ascii: "[") || byte == UInt8(ascii: "]"))) {
                out.append(byte)
            } else if byte == UInt8(ascii: " ") {
                out.append(UInt8(ascii: "+"))
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 0xF)])
            }
        }
    }

    /// Reverses ``escape(_:keepBrackets:)`` (`+` → space, `%XX` → byte). A malformed escape, or
    /// escapes that decode to invalid UTF-8, leave the text as it is (with `+` as space).
    public static func unescape(_ text: String) -> String {
        let utf8 = text.utf8
        guard utf8.contains(where: { $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "%") }) else { return text }
        var out = [UInt8]()
        out.reserveCapacity(utf8.count)
        var plussed = [UInt8]()  // the fallback: only `+` replaced
        plussed.reserveCapacity(utf8.count)
        var malformed = false
        var it = utf8.makeIterator()
        while let byte = it.next() {
            switch byte {
            case UInt8(ascii: "+"):
                out.append(UInt8(ascii: " "))
                plussed.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                plussed.append(byte)
                guard let high = it.next() else { malformed = true; continue }
                plussed.append(high)
                guard let low = it.next() else { malformed = true; continue }
                plussed.append(low)
                if let h = hexValue(high), let l = hexValue(low) { out.append(h << 4 | l) } else { malformed = true }
            default:
                out.append(byte)
                plussed.append(byte)
            }
        }
        if !malformed, let decoded = String(validating: out, as: UTF8.self) { return decoded }
        return String(decoding: plussed, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// URL building without Foundation's URL normalisation surprises.
public enum URLBuilder {
    /// `base` (no trailing slash needed) + `path` + an encoded query from `query` pairs.
    public static func url(base: String, path: String, query: [(String, String)] = []) -> String {
        var root = base
        while root.hasSuffix("/") { root.removeLast() }
        var url = root + (path.hasPrefix("/") ? path : "/" + path)
        if !query.isEmpty { url += "?" + FormEncoding.encode(query) }
        return url
    }

    /// A path segment percent-encoded for use inside a URL path.
    public static func pathSegment(_ text: String) -> String {
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "/?#")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }
}
