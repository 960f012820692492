import Foundation

/// A credential. Its `description` never shows the value, so it cannot leak through string
/// interpolation into logs or errors; read ``Secret/exposedValue`` only where it goes on the wire.
public struct Secret: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible,
    ExpressibleByStringLiteral, Codable
{
    /// The raw value: for the request that needs it, nowhere else.
    public let exposedValue: String

    /// Wraps a credential.
    public init(_ value: String) { self.exposedValue = value }
    /// Wraps a credential written as a literal (tests, placeholders).
    public init(stringLiteral value: String) { self.exposedValue = value }
    /// Decodes a credential from a JSON string.
    public init(from decoder: any Decoder) throws {
        self.exposedValue = try decoder.singleValueContainer().decode(String.self)
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(Redaction.mask(exposedValue))
    }

    /// A masked form such as `sk_test_…(redacted)`.
    public var description: String { Redaction.mask(exposedValue) }
    public var debugDescription: String { description }
}

extension Secret: CustomReflectable {
    /// No children: `dump`, debuggers and reflection see the masked form only (without this,
    /// `dump(settings)` printed the raw value).
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}

/// Masking of credentials for logs, errors, fixtures and the spool.
public enum Redaction {
    /// Header names whose values are credentials.
    public static let sensitiveHeaders: Set<String> = [
        "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key",
    ]

    /// Whether a header carries a credential.
    public static func isSensitiveHeader(_ name: String) -> Bool { sensitiveHeaders.contains(name.lowercased()) }

    /// Keeps a recognisable prefix (`sk_test_`, `Bearer `, `Basic `) and hides the rest.
    public static func mask(_ value: String) -> String {
        for scheme in ["Bearer ", "Basic "] where value.hasPrefix(scheme) {
            return scheme + mask(String(value.dropFirst(scheme.count)))
        }
        if let range = value.range(of: "_", options: .backwards),
            value.distance(from: value.startIndex, to: range.upperBound) <= 9
        {
            return String(value[..<range.upperBound]) + "REDACTED"
        }
        return "REDACTED"
    }

    /// A URL with its password, if any, replaced by `REDACTED` (`postgres://u:REDACTED@host/db`).
    public static func maskURLPassword(_ url: String) -> String {
        guard let scheme = url.range(of: "://"), let at = url[scheme.upperBound...].lastIndex(of: "@"),
            let colon = url[scheme.upperBound..<at].firstIndex(of: ":")
        else { return url }
        return String(url[..<url.index(after: colon)]) + "REDACTED" + String(url[at...])
    }
}

extension Secret {
    /// `Basic base64(value:)`: HTTP basic auth with this key as the user name and an empty
    /// password, as Chargebee and Recurly expect.
    public var basicAuthorization: String {
        "Basic " + Data((exposedValue + ":").utf8).base64EncodedString()
    }
}
