/// An event-name pattern: an exact name, or a glob where `*` matches any run of characters and
/// `?` one character.
public struct EventPattern: Sendable, Hashable, CustomStringConvertible {
    /// The pattern as written.
    public let text: String

    /// Characters allowed in a pattern: letters, digits and `_ . - : /`, plus `*` and `?`.
    static func problem(in text: String) -> String? {
        if text.isEmpty { return "an event pattern is empty" }
        if text.contains("**") { return "'\(text)' has `**`; one `*` already matches any run of characters" }
        if let bad = text.first(where: { !($0.isLetter || $0.isNumber || "_.-:/*?".contains($0)) }) {
            return "'\(text)' has '\(bad)', which cannot be in an event name"
        }
        return nil
    }

    /// A pattern, or `nil` when ``problem(in:)`` finds one.
    public init?(_ text: String) {
        guard Self.problem(in: text) == nil else { return nil }
        self.text = text
        // Worked out once: every routed event asks.
        self.isExact = !text.utf8.contains { $0 == UInt8(ascii: "*") || $0 == UInt8(ascii: "?") }
        self.specificity = isExact ? Int.max : text.filter { $0 != "*" && $0 != "?" }.count
    }

    /// Whether the pattern has no wildcard.
    public let isExact: Bool

    /// How specific the pattern is: exact names first, then more literal characters.
    public let specificity: Int

    /// Whether `name` matches.
    public func matches(_ name: String) -> Bool {
        if isExact { return name == text }
        let p = Array(text), s = Array(name)
        var pi = 0, si = 0, star = -1, mark = 0
        while si < s.count {
            if pi < p.count, p[pi] == "?" || p[pi] == s[si] {
                pi += 1
                si += 1
            } else if pi < p.count, p[pi] == "*" {
                star = pi
                mark = si
                pi += 1
            } else if star >= 0 {
                pi = star + 1
                mark += 1
                si = mark
            } else {
                return false
            }
        }
        while pi < p.count, p[pi] == "*" { pi += 1 }
        return pi == p.count
    }

    public var description: String { text }
}
