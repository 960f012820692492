import Foundation
import Testing

/// Every command's `--help` reads well in an 80-column terminal: no line runs past 80 columns
/// (examples stay on one line each), and no sentence is broken early: a line followed by the
/// rest of its paragraph leaves no room the next word would have taken, which is how a
/// discussion hard-wrapped in the source looks once ArgumentParser wraps it again.
@Suite("CLI help at 80 columns")
struct HelpTextTests {
    /// Every command path, found by walking each command's SUBCOMMANDS list.
    static func commands() async throws -> [[String]] {
        var found: [[String]] = []
        var pending: [[String]] = [[]]
        while let path = pending.popLast() {
            found.append(path)
            let help = try await CLI.run(path + ["--help"], env: CLI.env.merging(["COLUMNS": "80"]) { $1 }).output
            var inList = false
            for line in help.split(separator: "\n", omittingEmptySubsequences: false) {
                if line.hasPrefix("SUBCOMMANDS:") { inList = true; continue }
                guard inList else { continue }
                if line.isEmpty || !line.hasPrefix("  ") {
                    inList = !line.isEmpty && inList && line.hasPrefix(" "); continue
                }
                if let name = line.dropFirst(2).split(separator: " ").first, !line.hasPrefix("   "), name != "help" {
                    pending.append(path + [String(name).replacingOccurrences(of: "(default)", with: "")])
                }
            }
        }
        return found
    }

    /// Problems in one help text: lines past 80 columns, and early breaks inside a paragraph.
    static func problems(in help: String) -> [String] {
        let lines = help.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var out: [String] = []
        for (i, line) in lines.enumerated() {
            if line.count > 80 { out.append("\(line.count) columns: \(line)") }
            guard i + 1 < lines.count else { continue }
            let next = lines[i + 1]
            // An indented line (an example, an option's help) whose rest wrapped to the margin.
            if line.hasPrefix(" "), !next.isEmpty, !next.hasPrefix(" "), !next.hasSuffix(":") {
                out.append("wrapped: \"\(line)\" / \"\(next)\"")
            }
            // Prose continues on the next line: not blank, not indented (examples, option
            // help), not a list item or a new heading.
            guard !line.isEmpty, !line.hasPrefix(" "), !next.isEmpty, !next.hasPrefix(" "), !next.hasPrefix("-"),
                !next.hasPrefix("•"),
                !line.hasSuffix(":"), let word = next.split(separator: " ").first
            else { continue }
            // ArgumentParser fills lines to 79 columns.
            if line.count + 1 + word.count <= 79 { out.append("broken early: \"\(line)\" / \"\(next)\"") }
        }
        return out
    }

    @Test func everyHelpFitsAndReadsAsParagraphs() async throws {
        let commands = try await Self.commands()
        #expect(commands.count > 20, "found \(commands.map { $0.joined(separator: " ") })")
        var report: [String] = []
        for command in commands {
            let help = try await CLI.run(command + ["--help"], env: CLI.env.merging(["COLUMNS": "80"]) { $1 }).output
            report += Self.problems(in: help).map { "usage-billing \(command.joined(separator: " ")): \($0)" }
        }
        #expect(report.isEmpty, "\(report.count) problem(s):\n\(report.joined(separator: "\n"))")
    }

    @Test func theCheckCatchesBothFaults() {
        #expect(Self.problems(in: String(repeating: "x", count: 81)).count == 1)
        #expect(Self.problems(in: "A sentence that the source\nbroke early.").count == 1)
        #expect(Self.problems(in: "Examples:\n  usage-billing demo\n\nA paragraph.").isEmpty)
        #expect(Self.problems(in: "Examples:\n  usage-billing import events.ndjson\n--dry-run").count == 1)
    }
}
