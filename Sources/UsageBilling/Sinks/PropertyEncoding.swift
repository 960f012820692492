/// Turns flat event properties into a provider's JSON properties.
public enum PropertyEncoding {
    /// How values go on the wire.
    public enum Style: Sendable {
        /// Strings, bools and JSON numbers; a number a JSON number cannot carry exactly is rejected.
        case typed
        /// Strings and bools as they are; numbers as decimal strings (every digit kept).
        case numbersAsStrings
        /// Everything as a string (`true`, `12.5`).
        case allStrings
    }

    /// Encodes `properties`; `quantityProperty` names the property holding the quantity (for the
    /// rejection's field), `advice` says what to do when a number cannot be carried.
    public static func encode(
        _ properties: [String: UsageValue], style: Style, quantityProperty: String,
        provider: String, advice: String
    ) -> Result<[String: JSONValue], RejectionReason> {
        var json = [String: JSONValue](minimumCapacity: properties.count)
        for (key, value) in properties {
            switch (value, style) {
            case (_, .allStrings): json[key] = .string(value.description)
            case (.string(let s), _): json[key] = .string(s)
            case (.bool(let b), _): json[key] = .bool(b)
            case (.number(let d), .numbersAsStrings): json[key] = .string(DecimalFormat.plain(d))
            case (.number(let d), .typed):
                guard let exact = DecimalFormat.exactDouble(d) else {
                    return .failure(
                        .local(
                            "value_not_representable",
                            field: key == quantityProperty ? "quantity" : "properties.\(key)",
                            "\(provider) takes JSON numbers; \(DecimalFormat.plain(d)) has more digits than a JSON number keeps exactly. \(advice)"
                        ))
                }
                json[key] = .number(exact)
            }
        }
        return .success(json)
    }
}
