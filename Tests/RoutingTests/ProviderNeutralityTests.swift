import Foundation
import Testing
import UsageBillingProviders
import UsageRouting

/// A provider lives in its folder: the modules every provider shares (the core, routing, the
/// spool and its worker, reconciliation, the cockpit, serve, the emulator's core and the CLI)
/// name none. Knowing a provider means importing its module, using one of its types
/// (`StripeSettings`, `EmulatedOrb`) or switching on its kind (`"stripe"`); comments and prose
/// may mention providers as examples.
@Suite("Provider neutrality")
struct ProviderNeutralityTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let shared = [
        "UsageBilling", "UsageRouting", "UsageSpool", "UsageReconciliation", "UsageCockpit", "UsageServe",
        "UsageEmulatorCore", "usage-billing",
    ]

    /// The providers: the registry's kinds, and the folders under Providers/ (module prefixes).
    static func providers() throws -> (kinds: [String], folders: [String]) {
        let folders = try FileManager.default.contentsOfDirectory(atPath: root.appending(path: "Providers").path).filter
        { !$0.hasPrefix(".") }
        return (ProviderRegistry.standard.names.sorted(), folders.sorted())
    }

    /// What in `source` names a provider, one line per finding.
    static func findings(in source: String, kinds: [String], folders: [String]) -> [String] {
        var out: [String] = []
        let names = folders.joined(separator: "|")
        let module = try? Regex(
            "^\\s*(@testable\\s+|@_exported\\s+)?import\\s+(\(names))(Usage|Emulation)(?![A-Za-z0-9_])")
        let type = try? Regex("(^|[^A-Za-z0-9_])(Emulated(\(names))(?![A-Za-z0-9_])|(\(names))[A-Z_][A-Za-z0-9_]*)")
        let kind = try? Regex("\"(\(kinds.joined(separator: "|")))\"")
        for (number, line) in source.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let code = line.trimmingCharacters(in: .whitespaces)
            guard !code.hasPrefix("//") else { continue }
            for pattern in [module, type, kind].compactMap({ $0 }) where line.firstMatch(of: pattern) != nil {
                out.append("\(number + 1): \(code)")
                break
            }
        }
        return out
    }

    @Test(arguments: shared)
    func sharedModuleNamesNoProvider(_ module: String) throws {
        let (kinds, folders) = try Self.providers()
        // Every kind is its folder's (`paddle`, or `paddle_usage` beside it), and every folder has its kind.
        #expect(kinds.count >= folders.count && folders.count >= 7, "registry \(kinds), folders \(folders)")
        #expect(
            kinds.allSatisfy { kind in
                folders.contains { kind == $0.lowercased() || kind.hasPrefix($0.lowercased() + "_") }
            }, "registry \(kinds), folders \(folders)")
        #expect(folders.allSatisfy { kinds.contains($0.lowercased()) }, "registry \(kinds), folders \(folders)")
        let dir = Self.root.appending(path: "Sources/\(module)")
        let files =
            FileManager.default.enumerator(atPath: dir.path)?.compactMap { $0 as? String }.filter {
                $0.hasSuffix(".swift")
            } ?? []
        #expect(!files.isEmpty)
        var report: [String] = []
        for file in files {
            let text = try String(contentsOf: dir.appending(path: file), encoding: .utf8)
            report += Self.findings(in: text, kinds: kinds, folders: folders).map { "Sources/\(module)/\(file):\($0)" }
        }
        #expect(
            report.isEmpty,
            "\(report.count) place(s) name a provider; move them into the provider's folder:\n\(report.joined(separator: "\n"))"
        )
    }

    /// The emulator module is the emulations' registry: its registry file lists them, and nothing
    /// else in it names one (how a provider's meters follow a config is its `EmulationKind`'s).
    @Test func theEmulatorNamesProvidersOnlyInItsRegistry() throws {
        let (kinds, folders) = try Self.providers()
        let dir = Self.root.appending(path: "Sources/UsageEmulator")
        let files =
            FileManager.default.enumerator(atPath: dir.path)?.compactMap { $0 as? String }.filter {
                $0.hasSuffix(".swift") && $0 != "Emulations.swift"
            } ?? []
        #expect(!files.isEmpty)
        var report: [String] = []
        for file in files {
            report += Self.findings(
                in: try String(contentsOf: dir.appending(path: file), encoding: .utf8), kinds: kinds, folders: folders
            ).map { "\(file):\($0)" }
        }
        #expect(report.isEmpty, "\(report.joined(separator: "\n"))")
    }

    @Test func theCheckSeesEachWayOfNamingAProvider() throws {
        let (kinds, folders) = try Self.providers()
        for line in [
            "import StripeUsage", "let s = try OrbSettings.decode(x)", "case \"metronome\":",
            "o[EmulatedStripe.Meters.self] = m",
        ] {
            #expect(Self.findings(in: line, kinds: kinds, folders: folders).count == 1, "\(line)")
        }
        for line in ["// Stripe's limit", "let text = \"send to stripe or orb\"", "/// `StripeSettings`"] {
            #expect(Self.findings(in: line, kinds: kinds, folders: folders).isEmpty, "\(line)")
        }
    }
}
