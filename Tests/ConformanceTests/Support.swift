import Foundation
import Testing
import UsageBilling
import UsageBillingProviders
import UsageBillingTesting
import UsageRouting

/// The repository root, found from this file's path.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

func fixtures(_ provider: String) -> URL { repositoryRoot.appending(path: "Providers/\(provider)/Fixtures") }

/// Every provider in the registry, run against its folder's fixtures with the sink its kind
/// builds. A scenario a provider cannot do is listed with the reason in its folder's
/// `unsupported.json`; the catalogue then skips it with that reason, never silently.
let allSubjects: [ConformanceSubject] = ProviderRegistry.standard.names.compactMap { name -> ConformanceSubject? in
    guard let kind = ProviderRegistry.standard.kind(name), let folder = providerFolder(kind: name) else { return nil }
    return ConformanceSubject(provider: folder, fixturesDirectory: fixtures(folder), unsupported: unsupportedScenarios(folder)) { settings, client, clock in
        try kind.makeSink(settings, client, clock, name)
    }
}

/// The folder under Providers/ of a provider kind (`openmeter` → `OpenMeter`).
func providerFolder(kind: String) -> String? {
    let folders = (try? FileManager.default.contentsOfDirectory(atPath: repositoryRoot.appending(path: "Providers").path)) ?? []
    return folders.first { $0.lowercased() == kind }
}

/// A provider's `unsupported.json`: scenario → why the provider cannot do it. A name that is not
/// a catalogue scenario fails loudly rather than skipping nothing.
func unsupportedScenarios(_ folder: String) -> [ConformanceScenario: String] {
    let url = repositoryRoot.appending(path: "Providers/\(folder)/unsupported.json")
    guard let data = try? Data(contentsOf: url), case .object(let entries)? = JSONValue.parse(data) else { return [:] }
    var out: [ConformanceScenario: String] = [:]
    for (name, reason) in entries {
        guard let scenario = ConformanceScenario(rawValue: name) else {
            preconditionFailure("Providers/\(folder)/unsupported.json names '\(name)', which is no catalogue scenario")
        }
        out[scenario] = reason.stringValue ?? ""
    }
    return out
}

/// The Stripe subject, which some runner tests build on.
var stripeSubject: ConformanceSubject {
    get throws { try #require(findSubject("Stripe")) }
}

func findSubject(_ provider: String) -> ConformanceSubject? { allSubjects.first { $0.provider == provider } }
