import Foundation

/// RFC 3339 parsing and formatting, always in UTC with a `Z` suffix.
///
/// Formatting and the common `YYYY-MM-DDTHH:MM:SS[.fff…]Z` form are done by hand (every event
/// passes through here several times, and Foundation's format styles are slow); other offsets
/// fall back to Foundation.
public enum RFC3339 {
    /// Formats `date` as `2026-11-25T12:03:00Z`, or with milliseconds (`2026-11-25T12:03:00.000Z`).
    public static func format(_ date: Date, fractional: Bool = false) -> String {
        let totalMillis = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        var seconds = totalMillis / 1000
        var millis = totalMillis % 1000
        if millis < 0 { millis += 1000; seconds -= 1 }
        var days = seconds / 86_400
        var secondOfDay = seconds % 86_400
        if secondOfDay < 0 { secondOfDay += 86_400; days -= 1 }
        let (y, m, d) = civil(fromDays: days)
        guard (0...9999).contains(y) else { return formatWide(y, m, d, secondOfDay, millis, fractional) }
        // Written into the string's own storage: one allocation per timestamp (a digit array per
        // field before; every event is formatted once per provider request).
        return String(unsafeUninitializedCapacity: fractional ? 24 : 20) { out in
            var i = 0
            func put(_ value: Int64, _ width: Int) {
                var v = value
                for k in stride(from: width - 1, through: 0, by: -1) { out[i + k] = UInt8(48 + v % 10); v /= 10 }
                i += width
            }
            func sep(_ byte: UInt8) { out[i] = byte; i += 1 }
            put(y, 4); sep(45); put(m, 2); sep(45); put(d, 2); sep(84)
            put(secondOfDay / 3600, 2); sep(58); put(secondOfDay / 60 % 60, 2); sep(58); put(secondOfDay % 60, 2)
            if fractional { sep(46); put(millis, 3) }
            sep(90)
            return i
        }
    }

    /// Years outside 0...9999 (not RFC 3339, which has four-digit years; written as the digits
    /// they have, with a sign when negative).
    private static func formatWide(
        _ y: Int64, _ m: Int64, _ d: Int64, _ secondOfDay: Int64, _ millis: Int64, _ fractional: Bool
    ) -> String {
        func pad(_ v: Int64, _ width: Int) -> String {
            let digits = String(abs(v))
            return (v < 0 ? "-" : "") + String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        var text =
            "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(secondOfDay / 3600, 2)):\(pad(secondOfDay / 60 % 60, 2)):\(pad(secondOfDay % 60, 2))"
        if fractional { text += "." + pad(millis, 3) }
        return text + "Z"
    }

    /// Parses RFC 3339 with or without fractional seconds and with `Z` or a numeric offset.
    public static func parse(_ text: String) -> Date? {
        switch parseUTC(text) {
        case .date(let d): return d
        case .invalid: return nil  // the right shape with an impossible value (Foundation would roll it over)
        case .otherForm: break
        }
        if let d = try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text) { return d }
        if let d = try? Date.ISO8601FormatStyle().parse(text) { return d }
        return nil
    }

    enum FastParse { case date(Date), invalid, otherForm }

    /// `YYYY-MM-DDTHH:MM:SS[.f…]Z` (also `t`/`z`), validated field by field.
    static func parseUTC(_ text: String) -> FastParse {
        let b = Array(text.utf8)
        guard b.count >= 20, b[4] == 45, b[7] == 45, b[10] == 84 || b[10] == 116, b[13] == 58, b[16] == 58,
            b[b.count - 1] == 90 || b[b.count - 1] == 122
        else { return .otherForm }
        func num(_ from: Int, _ count: Int) -> Int64? {
            var v: Int64 = 0
            for i in from..<(from + count) {
                let c = b[i]
                guard c >= 48 && c <= 57 else { return nil }
                v = v * 10 + Int64(c - 48)
            }
            return v
        }
        guard let y = num(0, 4), let mo = num(5, 2), let d = num(8, 2), let h = num(11, 2), let mi = num(14, 2),
            let s = num(17, 2),
            (1...12).contains(mo), d >= 1, d <= daysIn(month: mo, year: y), h < 24, mi < 60, s < 61
        else { return .invalid }
        var fraction = 0.0
        if b.count > 20 {
            guard b[19] == 46, b.count > 21 else { return .invalid }
            var scale = 0.1
            for i in 20..<(b.count - 1) {
                guard b[i] >= 48 && b[i] <= 57 else { return .invalid }
                fraction += Double(b[i] - 48) * scale
                scale /= 10
            }
        }
        let days = days(fromCivil: y, mo, d)
        return .date(Date(timeIntervalSince1970: Double(days * 86_400 + h * 3600 + mi * 60 + s) + fraction))
    }

    static func daysIn(month m: Int64, year y: Int64) -> Int64 {
        switch m {
        case 2: return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
    static func days(fromCivil y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// The date for days since 1970-01-01.
    static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }
}

/// Decimal rendering without exponent or locale, as APIs want it (`1500`, `0.25`, `-3.5`).
public enum DecimalFormat {
    private static let posix = Locale(identifier: "en_US_POSIX")

    /// The plain decimal string of `value`.
    public static func plain(_ value: Decimal) -> String {
        if let n = exactInt64(value) { return String(n) }  // most quantities: no Foundation formatting
        var v = value
        return NSDecimalString(&v, posix)
    }

    /// `value` as an Int64 when it is a whole number in range, else nil.
    public static func exactInt64(_ value: Decimal) -> Int64? {
        guard value.isFinite else { return nil }
        let n = NSDecimalNumber(decimal: value).int64Value
        return Decimal(n) == value ? n : nil
    }

    /// Parses a plain decimal string (`150`, `-0.25`, `1e3`), or nil when it is not one.
    public static func parse(_ text: String) -> Decimal? {
        let utf8 = text.utf8
        if utf8.count <= 18, let first = utf8.first, first != UInt8(ascii: "+"), let n = Int64(text) {
            return Decimal(n)
        }
        guard let d = Decimal(string: text, locale: posix), !d.isNaN else { return nil }
        return d
    }

    /// ``parse(_:)`` where the whole text must be the number: Foundation alone reads `3x` as 3
    /// and `1.2.3` as 1.2, which a value a person typed must not be.
    public static func parseExactly(_ text: String) -> Decimal? {
        isPlainNumber(text.utf8) ? parse(text) : nil
    }

    /// `-`? digits (`.` digits?)? or `.` digits, then (`e`|`E` (`+`|`-`)? digits)?.
    private static func isPlainNumber(_ utf8: String.UTF8View) -> Bool {
        var i = utf8.makeIterator()
        var c = i.next()
        if c == UInt8(ascii: "-") { c = i.next() }
        func digits() -> Int {
            var n = 0
            while let d = c, d >= UInt8(ascii: "0") && d <= UInt8(ascii: "9") {
                n += 1
                c = i.next()
            }
            return n
        }
        var mantissa = digits()
        if c == UInt8(ascii: ".") {
            c = i.next()
            mantissa += digits()
        }
        guard mantissa > 0 else { return false }
        if c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
            c = i.next()
            if c == UInt8(ascii: "+") || c == UInt8(ascii: "-") { c = i.next() }
            guard digits() > 0 else { return false }
        }
        return c == nil
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
        if let n = exactInt64(value), abs(n) <= 1 << 53 { return Double(n) }
        let double = NSDecimalNumber(decimal: value).doubleValue
        guard double.isFinite, let back = Decimal(string: "\(double)", locale: posix) else { return nil }
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
