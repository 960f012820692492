import Foundation
import Testing
import UsageBilling
import UsageBillingTesting
import UsageTestSupport

@Suite("Fixture hygiene")
struct FixtureHygieneTests {
    /// Every text file a contributor commits under Providers/, Tests/ and examples/.
    static func committedTextFiles() -> [URL] {
        var files: [URL] = []
        for folder in ["Providers", "Tests", "examples", "Sources"] {
            let root = repositoryRoot.appending(path: folder)
            guard let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil) else {
                continue
            }
            for case let url as URL in walker
            where ["json", "swift", "yaml", "yml", "csv", "ndjson", "md", "py"].contains(url.pathExtension) {
                files.append(url)
            }
        }
        return files
    }

    @Test func noRealLookingSecretIsCommitted() throws {
        let files = Self.committedTextFiles()
        #expect(files.count > 20)
        var leaks: [String] = []
        for url in files {
            let text = try String(contentsOf: url, encoding: .utf8)
            for hit in SecretScanner.findSecrets(in: text) {
                leaks.append("\(url.path.replacingOccurrences(of: repositoryRoot.path, with: "")): \(hit.pattern)")
            }
        }
        #expect(leaks.isEmpty, "real-looking secrets: \(leaks)")
    }

    @Test func fixtureCredentialsArePlaceholders() throws {
        for url in try allSubjects.flatMap({ try $0.fixtureFiles() }) + apiFixtures() {
            let fixture = try Fixture.load(url)
            for exchange in fixture.exchanges {
                if let auth = exchange.request.headers.first(where: { $0.key.lowercased() == "authorization" })?.value {
                    // Basic credentials are base64 of "key:"; the key inside must be a placeholder.
                    let shown =
                        auth.hasPrefix("Basic ")
                        ? Data(base64Encoded: String(auth.dropFirst(6))).map { String(decoding: $0, as: UTF8.self) }
                            ?? auth : auth
                    #expect(shown.contains("REDACTED"), "\(url.lastPathComponent) has a non-placeholder Authorization")
                }
            }
            for field in ["secret_key", "api_key"] {
                if let key = fixture.settings?[field]?.stringValue {
                    #expect(key.contains("REDACTED"), "\(url.lastPathComponent): \(field)")
                }
            }
        }
    }

    /// The scanner itself must find what it is for (keys are built at run time, never committed).
    @Test(arguments: [
        "sk_" + "live_" + "51HxQ2kLmNoPqRsTuVwXyZ012",
        "rk_" + "test_" + "51HxQ2kLmNoPqRsTuVwXyZ012",
        "whsec_" + "8f3k2LmNoPqRsTuVwXy",
        "Authorization: Bearer " + "eyJhbGciOiJIUzI1NiJ9abcdefghijklmnop",
        "Basic " + Data(("live" + "_abcdefghijklmnopqrstuvwx:").utf8).base64EncodedString(),
    ])
    func scannerFindsRealLookingKeys(_ text: String) {
        #expect(!SecretScanner.findSecrets(in: "before \(text) after").isEmpty)
        #expect(SecretScanner.findSecrets(in: SecretScanner.redactKnownPatterns(text)).isEmpty)
    }

    @Test func scannerAllowsPlaceholders() {
        #expect(SecretScanner.findSecrets(in: "Bearer sk_test_REDACTED, sk_live_REDACTED, mes_tok_REDACTED_1").isEmpty)
        #expect(SecretScanner.findSecrets(in: "Basic " + Data("REDACTED:".utf8).base64EncodedString()).isEmpty)
    }

    /// Every recorded request and response body validates against the provider's trimmed
    /// OpenAPI spec (../shared/specs), checked by scripts/validate_fixtures.py.
    @Test func fixturesValidateAgainstTheProviderSpecs() async throws {
        // The child process is waited for on a GCD thread, never on Swift's cooperative pool.
        let (status, output) = try await ChildProcess.run(
            "/usr/bin/env", ["python3", repositoryRoot.appending(path: "scripts/validate_fixtures.py").path])
        #expect(status == 0, "\(output)")
        #expect(output.contains(" 0 problems"), "\(output)")
    }

    func apiFixtures() throws -> [URL] {
        try FileManager.default.contentsOfDirectory(
            at: stripeSubject.fixturesDirectory.appending(path: "api"), includingPropertiesForKeys: nil
        )
        .filter { $0.pathExtension == "json" }
    }
}
