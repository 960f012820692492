import Foundation

/// Reads events from an NDJSON or CSV file as a stream, a few at a time, so memory stays flat
/// however large the file is.
///
/// - NDJSON: one event object per line (`id`, `name`, `customer`, `timestamp`, `quantity`,
///   `properties`).
/// - CSV: a header naming `name`, `customer`, `timestamp` and optionally `id` and `quantity`;
///   any other column becomes a string property.
public final class EventReader {
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

    /// Opens `path`.
    /// - Throws: `.invalidInput` when the file cannot be opened.
    public init(path: String, format: Format? = nil) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw UsageBillingError(.invalidInput, "cannot open \(path)", fix: "check the path", field: "FILE")
        }
        self.handle = handle
        self.format = format ?? Format.guess(path)
    }

    deinit { try? handle.close() }

    /// Up to `max` events (or bad lines); an empty result means the end of the file.
    public func next(max: Int) -> [Result<UsageEvent, BadLine>] {
        var out: [Result<UsageEvent, BadLine>] = []
        while out.count < max, let line = nextLine() {
            lineNumber += 1
            let text = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if text.isEmpty { continue }
            switch format {
            case .ndjson: out.append(parseJSON(text))
            case .csv:
                if header == nil {
                    header = CSV.rows(text).first ?? []
                    if let problem = checkHeader() { out.append(.failure(BadLine(line: lineNumber, message: problem))) }
                    continue
                }
                out.append(parseCSV(text))
            }
        }
        return out
    }

    private func checkHeader() -> String? {
        let missing = ["name", "customer", "timestamp"].filter { !(header ?? []).contains($0) }
        return missing.isEmpty ? nil : "the CSV header lacks \(missing.joined(separator: ", ")); the header needs name, customer, timestamp (and optionally id, quantity)"
    }

    private func parseJSON(_ text: String) -> Result<UsageEvent, BadLine> {
        do {
            return .success(try decoder.decode(UsageEvent.self, from: Data(text.utf8)))
        } catch {
            return .failure(BadLine(line: lineNumber, message: Self.describe(error)))
        }
    }

    private func parseCSV(_ text: String) -> Result<UsageEvent, BadLine> {
        guard let header, checkHeader() == nil else { return .failure(BadLine(line: lineNumber, message: "no usable header")) }
        let row = CSV.rows(text).first ?? []
        guard row.count == header.count else {
            return .failure(BadLine(line: lineNumber, message: "\(row.count) fields, the header has \(header.count)"))
        }
        var fields = Dictionary(zip(header, row), uniquingKeysWith: { $1 })
        guard let stamp = fields.removeValue(forKey: "timestamp"), let date = RFC3339.parse(stamp) else {
            return .failure(BadLine(line: lineNumber, message: "field 'timestamp' is not RFC 3339; write e.g. 2026-11-25T12:03:00Z"))
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
        let id = fields.removeValue(forKey: "id").flatMap { $0.isEmpty ? nil : $0 } ?? EventID.generate(at: date)
        return .success(UsageEvent(id: id, name: name, customer: customer, timestamp: date, quantity: quantity,
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
        case DecodingError.dataCorrupted(let c), DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c):
            let field = c.codingPath.map(\.stringValue).joined(separator: ".")
            return (field.isEmpty ? "not a JSON event object: " : "field '\(field)': ") + c.debugDescription
        default: return "\(error)"
        }
    }
}
