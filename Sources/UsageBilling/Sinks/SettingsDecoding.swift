import Foundation

/// Decoding of adapter settings (a routing-config or fixture `settings` object) with errors that
/// name the key and the fix.
public enum SettingsDecoding {
    /// Decodes `T` from `json`, refusing keys not in `knownKeys`.
    /// - Throws: `.invalidInput` naming the unknown, missing or mistyped key.
    public static func decode<T: Decodable>(
        _ type: T.Type, from json: JSONValue, provider: String,
        knownKeys: Set<String>, example: String
    ) throws -> T {
        guard case .object(let object) = json else {
            throw UsageBillingError(
                .invalidInput, "\(provider) settings must be an object", fix: "write e.g. \(example)")
        }
        if let unknown = object.keys.sorted().first(where: { !knownKeys.contains($0) }) {
            throw UsageBillingError(
                .invalidInput, "unknown \(provider) setting '\(unknown)'",
                fix: "use one of: \(knownKeys.sorted().joined(separator: ", "))", field: unknown)
        }
        do {
            return try json.decode(T.self)
        } catch let error as UsageBillingError {
            throw error
        } catch let DecodingError.keyNotFound(key, context) {
            let field = (context.codingPath.map(\.stringValue) + [key.stringValue]).joined(separator: ".")
            throw UsageBillingError(
                .invalidInput, "\(provider) setting '\(field)' is missing", fix: "add it, e.g. \(example)", field: field
            )
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.dataCorrupted(context),
            let DecodingError.valueNotFound(_, context)
        {
            let field = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw UsageBillingError(
                .invalidInput,
                "\(provider) setting '\(field)' has the wrong type or value: \(context.debugDescription)",
                fix: "see Providers/\(provider)/README.md for the accepted values", field: field)
        }
    }

    /// A rejection of an http(s) base URL that does not parse, naming `field`.
    public static func checkURL(_ url: String, field: String, provider: String, example: String) throws {
        guard let parts = URLComponents(string: url), let scheme = parts.scheme, ["http", "https"].contains(scheme),
            parts.host?.isEmpty == false
        else {
            throw UsageBillingError(
                .invalidInput, "\(provider) \(field) '\(url)' is not an http(s) URL", fix: "write e.g. \(example)",
                field: field)
        }
    }
}
