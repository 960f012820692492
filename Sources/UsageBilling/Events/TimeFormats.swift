import Foundation

/// RFC 3339 parsing and formatting, always in UTC with a `Z` suffix.
public enum RFC3339 {
    /// Formats `date` as `2026-11-25T12:03:00Z`, or with milliseconds (`2026-11-25T12:03:00.000Z`).
    public static func format(_ date: Date, fractional: Bool = false) -> String {
        let style = Date.ISO8601FormatStyle(includingFractionalSeconds: fractional, timeZone: .gmt)
        return date.formatted(style)
    }

    /// Parses RFC 3339 with or without fractional seconds and with `Z` or a numeric offset.
    public static func parse(_ text: String) -> Date? {
        if let d = try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text) { return d }
        if let d = try? Date.ISO8601FormatStyle().parse(text) { return d }
        return nil
    }
}

/// Decimal rendering without exponent or locale, as APIs want it (`1500`, `0.25`, `-3.5`).
public enum DecimalFormat {
    /// The plain decimal string of `value`.
    public static func plain(_ value: Decimal) -> String {
        var v = value
        return NSDecimalString(&v, Locale(identifier: "en_US_POSIX"))
    }

    /// Whether `value` has no fractional part.
    public static func isWhole(_ value: Decimal) -> Bool {
        var v = value
        var rounded = Decimal()
        NSDecimalRound(&rounded, &v, 0, .plain)
        return rounded == value
    }

    /// `value` as a `Double` when that double prints back as the same decimal (so a JSON number
    /// carries it exactly), else `nil`.
    public static func exactDouble(_ value: Decimal) -> Double? {
        let double = NSDecimalNumber(decimal: value).doubleValue
        guard double.isFinite, let back = Decimal(string: "\(double)", locale: Locale(identifier: "en_US_POSIX")) else { return nil }
        return back == value ? double : nil
    }

    /// The number of significant digits in `value` (`1500` → 2, `1500.25` → 6, `0.001` → 1).
    public static func significantDigits(_ value: Decimal) -> Int {
        let text = plain(value).filter { $0.isNumber }
        let trimmed = text.drop(while: { $0 == "0" })
        var digits = String(trimmed)
        // Trailing zeros of an integer part are not significant; in a fraction they are gone already.
        while digits.count > 1, digits.hasSuffix("0") { digits.removeLast() }
        return max(digits.count, value == 0 ? 1 : 0)
    }
}
