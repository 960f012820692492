import Foundation
import UsageBilling

/// Finds real-looking credentials in text (fixtures, logs, CLI output). Placeholders contain
/// `REDACTED` and are allowed.
public enum SecretScanner {
    /// Patterns of provider credentials, each with a name.
    public static let patterns: [(name: String, regex: String)] = [
        ("Stripe secret/restricted key", #"\b(sk|rk)_(live|test)_[A-Za-z0-9]{10,}"#),
        ("Stripe webhook secret", #"\bwhsec_[A-Za-z0-9]{10,}"#),
        ("Stripe meter-event session token", #"\bmes_tok_[A-Za-z0-9]{10,}"#),
        ("OpenMeter/Orb/Metronome-style bearer token", #"Bearer\s+[A-Za-z0-9._~+/=-]{24,}"#),
        ("HTTP basic credentials", #"Basic\s+[A-Za-z0-9+/=]{16,}"#),
        ("Chargebee key", #"\b(live|test)_[A-Za-z0-9]{24,}"#),
        ("Paddle key", #"\bpdl_(live|sdbx)_apikey_[A-Za-z0-9_]{10,}"#),
    ]

    /// Every match in `text` that is not a placeholder, with the pattern's name.
    public static func findSecrets(in text: String) -> [(pattern: String, match: String)] {
        var found: [(String, String)] = []
        for (name, pattern) in patterns {
            guard let regex = try? NSRegularExpression(pattern: pattern) else { continue }
            let range = NSRange(text.startIndex..., in: text)
            for match in regex.matches(in: text, range: range) {
                guard let r = Range(match.range, in: text) else { continue }
                let value = String(text[r])
                if value.contains("REDACTED") { continue }
                if name == "HTTP basic credentials", isPlaceholderBasic(value) { continue }
                found.append((name, value))
            }
        }
        return found
    }

    /// Replaces every real-looking credential in `text` with a placeholder.
    public static func redactKnownPatterns(_ text: String) -> String {
        var out = text
        for (_, match) in findSecrets(in: text) {
            out = out.replacingOccurrences(of: match, with: Redaction.mask(match))
        }
        return out
    }

    private static func isPlaceholderBasic(_ value: String) -> Bool {
        let encoded = value.split(separator: " ").last.map(String.init) ?? ""
        guard let data = Data(base64Encoded: encoded) else { return false }
        return String(decoding: data, as: UTF8.self).contains("REDACTED")
    }
}
