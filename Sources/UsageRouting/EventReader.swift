import Foundation

/// Reads events from an NDJSON or CSV file as a stream, a few at a time, so memory stays flat
/// however large the file is.
///
/// - NDJSON: one event object per line (`id`, `name`, `customer`, `timestamp`, `quantity`,
///   `properties`).
/// - CSV: a header naming `name`, `customer`, `timestamp` and optionally `id` and `quantity`;
///   any other column becomes a string property.
///
/// An event without an id gets one derived from its content and its occurrence among identical
/// events earlier in the file (``EventID/content(of:occurrence:)``), so reading the same file
/// again yields the same ids; with ``IDPolicy/require`` such a line is a bad line instead.
public final class EventReader {
    /// What to do with an event that has no id.
    public enum IDPolicy: Sendable {
        /// Derive one from its content and occurrence (``EventID/content(of:occurrence:)``).
        case derive
        /// Refuse the line: every event must carry its own id.
        case require
    }

    /// The file formats.
    public enum Format: String, Sendable, CaseIterable {
        case ndjson, csv

        /// The format a path's extension implies (`.csv` → csv, else ndjson).
        public static func guess(_ path: String) -> Format { path.lowercased().hasSuffix(".csv") ? .csv : .ndjson }
    }

    /// A line that is not a valid event.
    public struct BadLine: Error, Sendable, Hashable, CustomStringConvertible {
        /// 1-based line number.
        public var line: Int
        /// What is wrong and how to fix it.
        public var message: String
        public var description: String { "line \(line): \(message)" }
    }

    private let handle: FileHandle
    private let format: Format
    private var buffer = [UInt8]()
    private var cursor = 0
    private var atEnd = false
    private var lineNumber = 0
    private var header: [String]?
    private let decoder = JSONDecoder()
    private let ids: IDPolicy
    /// How many identical id-less events came before, by their content id.
    private var occurrences: [String: Int] = [:]
    /// Events read so far that had no id and got a derived one.
    public private(set) var derivedIDs = 0

    /// Opens `path`.
    /// - Throws: `.invalidInput` when the file cannot be opened, naming the cause.
    public init(path: String, format: Format? = nil, ids: IDPolicy = .derive) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            let cause = errno == EACCES ? "permission denied" : String(cString: strerror(errno))
            throw UsageBillingError(
                .invalidInput, "cannot open \(path): \(cause)",
                fix: errno == EACCES ? "make the file readable by this user" : "check the path", field: "FILE")
        }
        self.handle = handle
        self.format = format ?? Format.guess(path)
        self.ids = ids
        if let key = UsageEvent.leavesMissingIDEmpty { decoder.userInfo[key] = true }
    }

    deinit { try? handle.close() }

    /// An event with the 1-based line it came from.
    public struct Numbered: Sendable {
        public var line: Int
        public var event: UsageEvent
    }

    /// Up to `max` events (or bad lines); an empty result means the end of the file.
    public func next(max: Int) -> [Result<UsageEvent, BadLine>] {
        nextNumbered(max: max).map { $0.map(\.event) }
    }

    /// Up to `max` events with their line numbers (or bad lines); empty at the end of the file.
    public func nextNumbered(max: Int) -> [Result<Numbered, BadLine>] {
        var out: [Result<Numbered, BadLine>] = []
        while out.count < max, let line = nextLine() {
            lineNumber += 1
            let text = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if text.isEmpty { continue }
            let parsed: Result<UsageEvent, BadLine>
            switch format {
            case .ndjson: parsed = parseJSON(text)
            case .csv:
                if header == nil {
                    header = CSV.rows(text).first ?? []
                    if let problem = checkHeader() { out.append(.failure(BadLine(line: lineNumber, message: problem))) }
                    continue
                }
                parsed = parseCSV(text)
            }
            out.append(parsed.flatMap(identified).map { Numbered(line: lineNumber, event: $0) })
        }
        return out
    }

    /// `event` with an id: its own, or one derived from its content (or a bad line under
    /// ``IDPolicy/require``).
    private func identified(_ event: UsageEvent) -> Result<UsageEvent, BadLine> {
        guard event.id.isEmpty else { return .success(event) }
        switch ids {
        case .require:
            let field = format == .csv ? "the 'id' column is empty or missing" : "the event has no 'id'"
            return .failure(
                BadLine(
                    line: lineNumber,
                    message:
                        "\(field); every event needs its own id under --require-ids (or drop --require-ids to derive ids from the events' content)"
                ))
        case .derive:
            let base = EventID.contentBase(of: event)
            let occurrence = (occurrences[base] ?? 0) + 1
            occurrences[base] = occurrence
            derivedIDs += 1
            var identified = event
            identified.id = EventID.content(base: base, occurrence: occurrence)
            return .success(identified)
        }
    }

    private func checkHeader() -> String? {
        let missing = ["name", "customer", "timestamp"].filter { !(header ?? []).contains($0) }
        return missing.isEmpty
            ? nil
            : "the CSV header lacks \(missing.joined(separator: ", ")); the header needs name, customer, timestamp (and optionally id, quantity)"
    }

    private func parseJSON(_ text: String) -> Result<UsageEvent, BadLine> {
        do {
            return .success(try decoder.decode(UsageEvent.self, from: Data(text.utf8)))
        } catch {
            return .failure(BadLine(line: lineNumber, message: Self.describe(error)))
        }
    }

    private func parseCSV(_ text: String) -> Result<UsageEvent, BadLine> {
        guard let header, checkHeader() == nil else {
            return .failure(BadLine(line: lineNumber, message: "no usable header"))
        }
        let row = CSV.rows(text).first ?? []
        guard row.count == header.count else {
            return .failure(BadLine(line: lineNumber, message: "\(row.count) fields, the header has \(header.count)"))
        }
        var fields = Dictionary(zip(header, row), uniquingKeysWith: { $1 })
        guard let stamp = fields.removeValue(forKey: "timestamp"), let date = RFC3339.parse(stamp) else {
            return .failure(
                BadLine(line: lineNumber, message: "field 'timestamp' is not RFC 3339; write e.g. 2026-11-25T12:03:00Z")
            )
        }
        var quantity = Decimal(1)
        if let q = fields.removeValue(forKey: "quantity"), !q.isEmpty {
            guard let d = DecimalFormat.parse(q) else {
                return .failure(BadLine(line: lineNumber, message: "field 'quantity' '\(q)' is not a decimal number"))
            }
            quantity = d
        }
        let name = fields.removeValue(forKey: "name") ?? ""
        let customer = fields.removeValue(forKey: "customer") ?? ""
        if name.isEmpty { return .failure(BadLine(line: lineNumber, message: "field 'name' is empty")) }
        let id = fields.removeValue(forKey: "id") ?? ""  // empty: derived from the content (`identified`)
        return .success(
            UsageEvent(
                id: id, name: name, customer: customer, timestamp: date, quantity: quantity,
                properties: fields.filter { !$0.value.isEmpty }.mapValues(UsageValue.string)))
    }

    private func nextLine() -> String? {
        while true {
            if let newline = buffer[cursor...].firstIndex(of: 0x0A) {
                let line = String(decoding: buffer[cursor..<newline], as: UTF8.self)
                cursor = newline + 1
                return line
            }
            if atEnd {
                guard cursor < buffer.count else { return nil }
                defer { buffer.removeAll(); cursor = 0 }
                return String(decoding: buffer[cursor...], as: UTF8.self)
            }
            // Drop what was read, then append the next chunk: one copy per chunk, not per line.
            buffer.removeFirst(cursor)
            cursor = 0
            let chunk = handle.readData(ofLength: 256 * 1024)
            if chunk.isEmpty { atEnd = true } else { buffer.append(contentsOf: chunk) }
        }
    }

    /// A decoding error in words that name the field.
    public static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): return "missing field '\(key.stringValue)'"
        case DecodingError.dataCorrupted(let c), DecodingError.typeMismatch(_, let c),
            DecodingError.valueNotFound(_, let c):
            let field = c.codingPath.map(\.stringValue).joined(separator: ".")
            return (field.isEmpty ? "not a JSON event object: " : "field '\(field)': ") + c.debugDescription
        default: return "\(error)"
        }
    }
}
