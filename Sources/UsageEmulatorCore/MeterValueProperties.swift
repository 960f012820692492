import UsageRouting

/// Which event property a meter sums, keyed by meter name or by an event pattern (`storage_*`),
/// as a routing config's routes name them: an exact name wins, then the most specific pattern.
public struct MeterValueProperties: Sendable {
    private let exact: [String: String]
    private let patterns: [(pattern: EventPattern, property: String)]

    public init(_ map: [String: String]) {
        var exact: [String: String] = [:]
        var patterns: [(EventPattern, String)] = []
        for (key, property) in map {
            if let pattern = EventPattern(key), !pattern.isExact {
                patterns.append((pattern, property))
            } else {
                exact[key] = property
            }
        }
        self.exact = exact
        self.patterns = patterns.sorted {
            $0.0.specificity > $1.0.specificity || ($0.0.specificity == $1.0.specificity && $0.0.text < $1.0.text)
        }
    }

    /// The property `meter` sums, or `fallback` when nothing names it.
    public func property(for meter: String, default fallback: String) -> String {
        exact[meter] ?? patterns.first { $0.pattern.matches(meter) }?.property ?? fallback
    }
}
