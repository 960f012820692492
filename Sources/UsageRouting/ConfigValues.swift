import Foundation
import UsageBilling

// The value types config documents are made of, read by `ConfigReader`: each says in its
// `ConfigValueProblem` what a bad value is and how to fix it.

/// A mapping whose keys are names the file chooses (providers, customers). An entry whose value
/// does not decode is reported and left out of ``values``; ``keys`` still has it, so a check
/// that looks a name up can tell a broken entry from a missing one.
public struct ConfigMap<Value: Decodable>: Decodable {
    /// Every key written, sorted.
    public var keys: [String] = []
    /// The entries that decoded.
    public var values: [String: Value] = [:]

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: AnyKey.self)
        for key in container.allKeys {
            keys.append(key.stringValue)
            if let value = try container.decodeIfPresent(Value.self, forKey: key) { values[key.stringValue] = value }
        }
    }
}

/// A list whose elements are decoded one by one: one that does not decode is reported and is nil
/// here, so the others keep their positions.
public struct ConfigList<Element: Decodable>: Decodable {
    public var items: [Element?] = []

    public init(from decoder: any Decoder) throws {
        var container = try decoder.unkeyedContainer()
        while !container.isAtEnd {
            do {
                items.append(try container.decode(Element.self))
            } catch is AlreadyReported {
                items.append(nil)
            }
        }
    }
}

/// One value or a list of them (`shadow: orb` or `shadow: [orb, metronome]`).
public struct OneOrList<Element: Decodable>: Decodable {
    public var items: [Element?]

    public init(from decoder: any Decoder) throws {
        if let list = try? ConfigList<Element>(from: decoder) {
            items = list.items
        } else {
            items = [try Element(from: decoder)]
        }
    }
}

/// Bounds of a whole-number setting: its range and the fix a value outside it gets.
public protocol WholeNumberBounds {
    static var range: ClosedRange<Int> { get }
    static var fix: String { get }
}

/// A whole number within `Bounds.range`.
public struct WholeNumber<Bounds: WholeNumberBounds>: Decodable, Sendable {
    public var value: Int

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let range = Bounds.range
        guard let number = try? container.decode(Double.self), number == number.rounded(),
            let whole = Int(exactly: number), range.contains(whole)
        else {
            throw ConfigValueProblem(
                "must be a whole number from \(range.lowerBound) to \(range.upperBound)", fix: Bounds.fix)
        }
        value = whole
    }
}

/// Bounds of a duration setting: its range, an example, and the fix a value outside it gets.
public protocol DurationBounds {
    static var range: ClosedRange<Duration> { get }
    static var example: String { get }
    static var fix: String { get }
}

/// A duration written as text (`90s`, `10m`, `1h`, `2d`) or as a number of seconds, within
/// `Bounds.range`.
public struct BoundedDuration<Bounds: DurationBounds>: Decodable, Sendable {
    public var duration: Duration
    /// The bounds, for checks outside decoding.
    public static var range: ClosedRange<Duration> { Bounds.range }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        var parsed: Duration?
        var written = "the value"
        if let text = try? container.decode(String.self) {
            written = "'\(text)'"
            parsed = DurationText.parse(text)
        } else if let seconds = try? container.decode(Double.self) {
            written = "\(seconds)"
            parsed = .milliseconds(Int64((seconds * 1000).rounded()))
        }
        guard let parsed, Bounds.range.contains(parsed) else {
            throw ConfigValueProblem(
                "\(written) is not a duration from \(Self.text(Bounds.range.lowerBound)) to \(Self.text(Bounds.range.upperBound)), e.g. \(Bounds.example)",
                fix: Bounds.fix)
        }
        duration = parsed
    }

    /// `90s`, `5m`, `1h`, `2d`: the largest unit that divides it.
    static func text(_ duration: Duration) -> String {
        let seconds = duration.components.seconds
        for (unit, size) in [("d", Int64(86_400)), ("h", 3600), ("m", 60)] where seconds % size == 0 && seconds >= size
        {
            return "\(seconds / size)\(unit)"
        }
        return "\(seconds)s"
    }
}

/// An instant written in RFC 3339 (`2026-12-01T00:00:00Z`).
public struct ConfigTime: Decodable, Sendable {
    public var date: Date

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try? container.decode(String.self)
        guard let text, let date = RFC3339.parse(text) else {
            throw ConfigValueProblem(
                "'\(text ?? "…")' is not an RFC 3339 time", fix: "write e.g. 2026-12-01T00:00:00Z")
        }
        self.date = date
    }
}
