import Foundation

/// `application/x-www-form-urlencoded` encoding and decoding, with bracketed keys for nested
/// values (`payload[value]=5`) as Stripe-style APIs expect.
///
/// Encoding follows the HTML form rules (space → `+`, everything but `A-Z a-z 0-9 * - . _`
/// percent-encoded) except that `[` and `]` in keys are left literal, as the official SDKs send.
public enum FormEncoding {
    /// Encodes ordered `(key, value)` pairs.
    public static func encode(_ fields: [(String, String)]) -> String {
        fields.map { escape($0.0, keepBrackets: true) + "=" + escape($0.1, keepBrackets: false) }
            .joined(separator: "&")
    }

    /// Decodes a form body or query string into ordered pairs. Malformed escapes are kept as is.
    public static func decode(_ text: String) -> [(String, String)] {
        guard !text.isEmpty else { return [] }
        return text.split(separator: "&", omittingEmptySubsequences: true).map { part in
            let pieces = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = unescape(String(pieces[0]))
            let value = pieces.count > 1 ? unescape(String(pieces[1])) : ""
            return (key, value)
        }
    }

    private static let unreserved: Set<UInt8> = Set(
        Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789*-._".utf8))

    /// Percent-encodes one key or value.
    public static func escape(_ text: String, keepBrackets: Bool) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            if unreserved.contains(byte) || (keepBrackets && (byte == UInt8(ascii: "[") || byte == UInt8(ascii: "]"))) {
                out.unicodeScalars.append(UnicodeScalar(byte))
            } else if byte == UInt8(ascii: " ") {
                out.append("+")
            } else {
                out.append(String(format: "%%%02X", byte))
            }
        }
        return out
    }

    /// Reverses ``escape(_:keepBrackets:)`` (`+` → space, `%XX` → byte).
    public static func unescape(_ text: String) -> String {
        let plussed = text.replacingOccurrences(of: "+", with: " ")
        return plussed.removingPercentEncoding ?? plussed
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
