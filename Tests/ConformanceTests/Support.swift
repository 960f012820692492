import Foundation
import Testing
import UsageBilling
import UsageBillingProviders
import UsageBillingTesting
import UsageRouting

/// The repository root, found from this file's path.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

func fixtures(_ provider: String) -> URL { repositoryRoot.appending(path: "Providers/\(provider)/Fixtures") }

/// Every provider in the registry, run against its folder's fixtures with the sink its kind
/// builds. A scenario a provider cannot do is listed with the reason in its folder's
/// `unsupported.json`; the catalogue then skips it with that reason, never silently.
let allSubjects: [ConformanceSubject] = ProviderRegistry.standard.names.compactMap { name -> ConformanceSubject? in
    guard let kind = ProviderRegistry.standard.kind(name), let (folder, variant) = providerFolder(kind: name) else {
        return nil
    }
    let directory = variant.map { fixtures(folder).appending(path: $0) } ?? fixtures(folder)
    return ConformanceSubject(
        provider: variant.map { "\(folder).\($0)" } ?? folder, fixturesDirectory: directory,
        unsupported: unsupportedScenarios(folder, variant: variant)
    ) { settings, client, clock in
        try kind.makeSink(settings, client, clock, name)
    }
}

/// The folder under Providers/ of a provider kind (`openmeter` → `OpenMeter`), and for a second
/// kind of a folder (`paddle_usage`) its variant, whose fixtures are in `Fixtures/<variant>/`.
func providerFolder(kind: String) -> (folder: String, variant: String?)? {
    let folders =
        (try? FileManager.default.contentsOfDirectory(atPath: repositoryRoot.appending(path: "Providers").path)) ?? []
    if let folder = folders.first(where: { $0.lowercased() == kind }) { return (folder, nil) }
    guard let folder = folders.first(where: { kind.hasPrefix($0.lowercased() + "_") }) else { return nil }
    return (folder, String(kind.dropFirst(folder.count + 1)))
}

/// A provider's `unsupported.json` (`unsupported.<variant>.json` for a folder's second kind):
/// scenario → why the provider cannot do it. A name that is not a catalogue scenario fails loudly
/// rather than skipping nothing.
func unsupportedScenarios(_ folder: String, variant: String? = nil) -> [ConformanceScenario: String] {
    let url = repositoryRoot.appending(path: "Providers/\(folder)/unsupported\(variant.map { ".\($0)" } ?? "").json")
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
