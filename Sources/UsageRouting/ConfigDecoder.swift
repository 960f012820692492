import Foundation
import UsageBilling

/// A value a config key cannot take, thrown from a config type's `init(from:)`. The
/// ``ConfigReader`` reports it at the key's line as `<key> <message>`, with the fix.
public struct ConfigValueProblem: Error, Sendable {
    /// What is wrong, reading after the key's name (`is not an RFC 3339 time`).
    public var message: String
    /// What to do.
    public var fix: String

    public init(_ message: String, fix: String) {
        self.message = message
        self.fix = fix
    }
}

/// Decodes typed config documents (routing, `serve:`, provider settings) from a parsed config
/// file, keeping each key's line.
///
/// One pass finds every problem: a value that does not decode is reported (file, line, key, fix)
/// and reads as absent (`decodeIfPresent` gives nil), a mapping key no document asked for is
/// reported as unknown, and decoding goes on. Documents therefore declare their keys optional
/// and check what is required afterwards, adding to the same issues.
public struct ConfigReader: Sendable {
    /// The config file, for the issues.
    public var file: String
    /// The line of every key path in the file (`routes[1].to`).
    public var lines: [String: Int]

    public init(file: String, lines: [String: Int]) {
        self.file = file
        self.lines = lines
    }

    /// `T` decoded from `value`, which sits at `path` in the file (`""` for the whole file,
    /// `serve` for a section), with every problem found; nil when `value` itself could not be read.
    public func decode<T: Decodable>(_ type: T.Type, from value: JSONValue, at path: String) -> (T?, [ConfigIssue]) {
        let log = ConfigLog(reader: self)
        let decoder = ConfigValueDecoder(value: value, path: path, codingPath: [], log: log)
        var result: T?
        do {
            result = try decoder.decodeValue(T.self)
        } catch {
            log.record(error, at: path)
        }
        log.reportUnknownKeys()
        return (result, log.issues)
    }

    /// Whether `a` looks like a misspelling of `b`: at most two edits apart, or the same once case,
    /// `_` and `-` are ignored.
    public static func isNearMiss(_ a: String, _ b: String) -> Bool {
        func folded(_ s: String) -> String { s.lowercased().filter { $0 != "_" && $0 != "-" } }
        guard a != b else { return false }
        if folded(a) == folded(b) { return true }
        let x = Array(a.lowercased()), y = Array(b.lowercased())
        guard abs(x.count - y.count) <= 2, !x.isEmpty, !y.isEmpty else { return false }
        var previous = Array(0...y.count)
        for i in 1...x.count {
            var row = [i] + Array(repeating: 0, count: y.count)
            for j in 1...y.count {
                row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
            }
            previous = row
        }
        return previous[y.count] <= 2
    }

    /// The candidate `name` is a near miss of, if any (for "did you mean …?").
    public static func nearMiss(of name: String, in candidates: some Sequence<String>) -> String? {
        candidates.sorted().first { ConfigReader.isNearMiss(name, $0) }
    }

    /// The words for a name that is none of `candidates`: `message`, then "; did you mean 'x'?"
    /// when one is a near miss of it, and the fix: `rename(x)` then, else `otherwise`.
    public static func unknownName(
        _ name: String, among candidates: some Sequence<String>, _ message: String, otherwise: String,
        rename: (String) -> String = { "rename it to '\($0)'" }
    ) -> (message: String, fix: String) {
        guard let near = nearMiss(of: name, in: candidates) else { return (message, otherwise) }
        return ("\(message); did you mean '\(near)'?", rename(near))
    }

    /// A problem at `key`, with the line of the key or, when it has none (a key that is missing),
    /// of its nearest parent.
    public func issue(_ key: String, _ message: String, _ fix: String) -> ConfigIssue {
        .at(key, lines: lines, file: file, message, fix)
    }
}

/// A problem already recorded by the container that found it; its callers only unwind.
struct AlreadyReported: Error {}

/// What one decoding pass found: the issues, and which keys each mapping had and which were asked for.
final class ConfigLog {
    let reader: ConfigReader
    var issues: [ConfigIssue] = []
    /// Mapping path → the keys it has.
    var mappings: [String: Set<String>] = [:]
    /// Mapping path → the keys a document asked for (present or not).
    var asked: [String: Set<String>] = [:]

    init(reader: ConfigReader) {
        self.reader = reader
    }

    /// Records a failure to decode the value at `path`.
    func record(_ error: any Error, at path: String) {
        if error is AlreadyReported { return }
        let name = Self.name(of: path)
        let (message, fix): (String, String) =
            switch error {
            case let problem as ConfigValueProblem: (problem.message, problem.fix)
            case DecodingError.dataCorrupted(let context), DecodingError.typeMismatch(_, let context):
                ("is not valid: \(context.debugDescription)", "see the documentation of `\(name)`")
            default: ("is not valid: \(error)", "see the documentation of `\(name)`")
            }
        issues.append(reader.issue(path, name.isEmpty ? message : "\(name) \(message)", fix))
    }

    /// Every key of a mapping that no document asked for, with a near miss when there is one.
    func reportUnknownKeys() {
        for (path, keys) in mappings.sorted(by: { $0.key < $1.key }) {
            let known = asked[path] ?? []
            for key in keys.subtracting(known).sorted() {
                let (message, fix) = ConfigReader.unknownName(
                    key, among: known, "unknown key '\(key)'",
                    otherwise: "use only \(known.sorted().joined(separator: ", "))")
                issues.append(reader.issue(path.isEmpty ? key : "\(path).\(key)", message, fix))
            }
        }
    }

    /// The last key of a path (`events[0]` for `routes[1].events[0]`).
    static func name(of path: String) -> String {
        path.split(separator: ".").last.map(String.init) ?? ""
    }
}

/// A key in a mapping whose keys are data (provider names, customer ids).
struct AnyKey: CodingKey, Hashable {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { return nil }
}

/// An element's place in a list.
struct IndexKey: CodingKey {
    var intValue: Int?
    var stringValue: String { intValue.map(String.init) ?? "" }
    init(intValue: Int) { self.intValue = intValue }
    init?(stringValue: String) { return nil }
}

/// The decoder over one value of the parsed file.
struct ConfigValueDecoder: Decoder {
    let value: JSONValue
    /// The value's key path in the file (`routes[1].to`).
    let path: String
    let codingPath: [any CodingKey]
    let log: ConfigLog
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func child(_ value: JSONValue, key: any CodingKey) -> ConfigValueDecoder {
        let childPath =
            key.intValue.map { "\(path)[\($0)]" } ?? (path.isEmpty ? key.stringValue : "\(path).\(key.stringValue)")
        return ConfigValueDecoder(value: value, path: childPath, codingPath: codingPath + [key], log: log)
    }

    /// `T` from this value; `JSONValue` is taken as it is (a subtree the document keeps untyped).
    func decodeValue<T: Decodable>(_ type: T.Type) throws -> T {
        if let same = value as? T { return same }
        return try T(from: self)
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let object) = value else {
            throw ConfigValueProblem("must be a mapping", fix: "write `\(ConfigLog.name(of: path)): { key: value, … }`")
        }
        log.mappings[path, default: []].formUnion(object.keys)
        return KeyedDecodingContainer(ConfigKeyedContainer<Key>(decoder: self, object: object))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let items) = value else {
            throw ConfigValueProblem("must be a list", fix: "write `\(ConfigLog.name(of: path)): [a, b]`")
        }
        return ConfigUnkeyedContainer(decoder: self, items: items)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { ConfigSingleValue(decoder: self) }
}

/// A scalar of the file, read strictly: a number is not a string, a string is not a number.
struct ConfigSingleValue: SingleValueDecodingContainer {
    let decoder: ConfigValueDecoder
    var codingPath: [any CodingKey] { decoder.codingPath }

    func decodeNil() -> Bool { decoder.value == .null }

    func decode(_ type: Bool.Type) throws -> Bool {
        guard let bool = decoder.value.boolValue else {
            throw ConfigValueProblem("must be true or false", fix: "write true or false")
        }
        return bool
    }

    func decode(_ type: String.Type) throws -> String {
        guard let text = decoder.value.stringValue else {
            throw ConfigValueProblem("must be a string, not \(decoder.value)", fix: "quote it")
        }
        return text
    }

    func decode(_ type: Double.Type) throws -> Double {
        guard let number = decoder.value.numberValue else {
            throw ConfigValueProblem("must be a number, not \(decoder.value)", fix: "write a number without quotes")
        }
        return number
    }

    func decode(_ type: Float.Type) throws -> Float { Float(try decode(Double.self)) }

    func whole<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
        guard let number = decoder.value.numberValue, number == number.rounded(), let whole = T(exactly: number) else {
            throw ConfigValueProblem(
                "must be a whole number, not \(decoder.value)", fix: "write a whole number without quotes or units")
        }
        return whole
    }

    func decode(_ type: Int.Type) throws -> Int { try whole(type) }
    func decode(_ type: Int8.Type) throws -> Int8 { try whole(type) }
    func decode(_ type: Int16.Type) throws -> Int16 { try whole(type) }
    func decode(_ type: Int32.Type) throws -> Int32 { try whole(type) }
    func decode(_ type: Int64.Type) throws -> Int64 { try whole(type) }
    func decode(_ type: UInt.Type) throws -> UInt { try whole(type) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try whole(type) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try whole(type) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try whole(type) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try whole(type) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try decoder.decodeValue(type) }
}

/// A mapping of the file. `decodeIfPresent` reports a value that does not decode and gives nil;
/// `decode` reports it (or the key's absence) and throws ``AlreadyReported``.
struct ConfigKeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let decoder: ConfigValueDecoder
    let object: [String: JSONValue]
    var codingPath: [any CodingKey] { decoder.codingPath }

    /// Every key: a document that lists them takes them all, so none is unknown.
    var allKeys: [Key] {
        decoder.log.asked[decoder.path, default: []].formUnion(object.keys)
        return object.keys.sorted().compactMap { Key(stringValue: $0) }
    }

    func ask(_ key: Key) -> JSONValue? {
        decoder.log.asked[decoder.path, default: []].insert(key.stringValue)
        return object[key.stringValue]
    }

    func contains(_ key: Key) -> Bool { ask(key) != nil }

    func decodeNil(forKey key: Key) throws -> Bool { (ask(key) ?? .null) == .null }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        let child = decoder.child(ask(key) ?? .null, key: key)
        guard object[key.stringValue] != nil else {
            decoder.log.issues.append(
                decoder.log.reader.issue(
                    child.path, "\(key.stringValue) is missing",
                    "add `\(key.stringValue):`" + (decoder.path.isEmpty ? "" : " under \(decoder.path)")))
            throw AlreadyReported()
        }
        do {
            return try child.decodeValue(type)
        } catch {
            decoder.log.record(error, at: child.path)
            throw AlreadyReported()
        }
    }

    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard let value = ask(key), value != .null else { return nil }
        let child = decoder.child(value, key: key)
        do {
            return try child.decodeValue(type)
        } catch {
            decoder.log.record(error, at: child.path)
            return nil
        }
    }

    // The scalar overloads: each is its own requirement, and the standard library's defaults
    // would throw where this container reports.
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try decode(Lift<Bool>.self, forKey: key).value }
    func decode(_ type: String.Type, forKey key: Key) throws -> String {
        try decode(Lift<String>.self, forKey: key).value
    }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double {
        try decode(Lift<Double>.self, forKey: key).value
    }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try decode(Lift<Float>.self, forKey: key).value }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try decode(Lift<Int>.self, forKey: key).value }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try decode(Lift<Int8>.self, forKey: key).value }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try decode(Lift<Int16>.self, forKey: key).value }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try decode(Lift<Int32>.self, forKey: key).value }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try decode(Lift<Int64>.self, forKey: key).value }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try decode(Lift<UInt>.self, forKey: key).value }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try decode(Lift<UInt8>.self, forKey: key).value }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 {
        try decode(Lift<UInt16>.self, forKey: key).value
    }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 {
        try decode(Lift<UInt32>.self, forKey: key).value
    }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 {
        try decode(Lift<UInt64>.self, forKey: key).value
    }
    func decodeIfPresent(_ type: Bool.Type, forKey key: Key) throws -> Bool? { lifted(key) }
    func decodeIfPresent(_ type: String.Type, forKey key: Key) throws -> String? { lifted(key) }
    func decodeIfPresent(_ type: Double.Type, forKey key: Key) throws -> Double? { lifted(key) }
    func decodeIfPresent(_ type: Float.Type, forKey key: Key) throws -> Float? { lifted(key) }
    func decodeIfPresent(_ type: Int.Type, forKey key: Key) throws -> Int? { lifted(key) }
    func decodeIfPresent(_ type: Int8.Type, forKey key: Key) throws -> Int8? { lifted(key) }
    func decodeIfPresent(_ type: Int16.Type, forKey key: Key) throws -> Int16? { lifted(key) }
    func decodeIfPresent(_ type: Int32.Type, forKey key: Key) throws -> Int32? { lifted(key) }
    func decodeIfPresent(_ type: Int64.Type, forKey key: Key) throws -> Int64? { lifted(key) }
    func decodeIfPresent(_ type: UInt.Type, forKey key: Key) throws -> UInt? { lifted(key) }
    func decodeIfPresent(_ type: UInt8.Type, forKey key: Key) throws -> UInt8? { lifted(key) }
    func decodeIfPresent(_ type: UInt16.Type, forKey key: Key) throws -> UInt16? { lifted(key) }
    func decodeIfPresent(_ type: UInt32.Type, forKey key: Key) throws -> UInt32? { lifted(key) }
    func decodeIfPresent(_ type: UInt64.Type, forKey key: Key) throws -> UInt64? { lifted(key) }

    func lifted<T: Decodable>(_ key: Key) -> T? {
        (try? decodeIfPresent(Lift<T>.self, forKey: key))?.value
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws
        -> KeyedDecodingContainer<NestedKey>
    {
        try decoder.child(ask(key) ?? .null, key: key).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try decoder.child(ask(key) ?? .null, key: key).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder { decoder }
    func superDecoder(forKey key: Key) throws -> any Decoder { decoder.child(ask(key) ?? .null, key: key) }
}

/// A scalar decoded through the generic path, so the scalar overloads share its reporting.
struct Lift<T: Decodable>: Decodable {
    var value: T
    init(from decoder: any Decoder) throws {
        value = try decoder.singleValueContainer().decode(T.self)
    }
}

/// A list of the file; an element that does not decode is reported and throws ``AlreadyReported``
/// after the index has moved past it, so a caller can go on with the next.
struct ConfigUnkeyedContainer: UnkeyedDecodingContainer {
    let decoder: ConfigValueDecoder
    let items: [JSONValue]
    var currentIndex = 0
    var codingPath: [any CodingKey] { decoder.codingPath }
    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    init(decoder: ConfigValueDecoder, items: [JSONValue]) {
        self.decoder = decoder
        self.items = items
    }

    mutating func next() throws -> ConfigValueDecoder {
        guard !isAtEnd else {
            throw ConfigValueProblem("has too few elements", fix: "see the documentation of `\(decoder.path)`")
        }
        defer { currentIndex += 1 }
        return decoder.child(items[currentIndex], key: IndexKey(intValue: currentIndex))
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd, items[currentIndex] == .null else { return false }
        currentIndex += 1
        return true
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let child = try next()
        do {
            return try child.decodeValue(type)
        } catch {
            decoder.log.record(error, at: child.path)
            throw AlreadyReported()
        }
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws
        -> KeyedDecodingContainer<NestedKey>
    {
        try next().container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer { try next().unkeyedContainer() }
    mutating func superDecoder() throws -> any Decoder { try next() }
}
