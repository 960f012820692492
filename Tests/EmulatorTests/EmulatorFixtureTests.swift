import Foundation
import Testing
import UsageBilling
import UsageBillingCurl
import UsageBillingProviders
import UsageBillingTesting
import UsageEmulator
import UsageRouting

let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// Where each provider's real host lives on the emulator, as each emulation declares it.
let emulatedHosts: [String: String] = Dictionary(
    UsageEmulator.standard.flatMap { kind in kind.realHosts.map { ($0.key, "/" + $0.value) } }
) { a, _ in a }

/// The provider folders: every folder under Providers/.
func providerFolders() -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: repositoryRoot.appending(path: "Providers").path)) ?? [])
        .filter { !$0.hasPrefix(".") }.sorted()
}

/// Every fixture file of every provider folder (catalogue, provider-specific and API fixtures).
func allFixtureFiles() -> [String] {
    let providers = providerFolders()
    var out: [String] = []
    for provider in providers {
        let dir = repositoryRoot.appending(path: "Providers/\(provider)/Fixtures")
        guard let e = FileManager.default.enumerator(at: dir, includingPropertiesForKeys: nil) else { continue }
        for case let url as URL in e where url.pathExtension == "json" && !url.path.contains("/webhooks/") {
            out.append(url.path.replacingOccurrences(of: repositoryRoot.path + "/Providers/", with: ""))
        }
    }
    return out.sorted()
}

/// Fixtures of endpoints the emulator does not speak, or whose requests name objects created
/// outside the fixture; printed as skipped.
let notEmulated: [String: String] = [
    "Stripe/Fixtures/api/meter_deactivate_reactivate.json":
        "it deactivates a meter created outside the fixture (EmulatorAPITests cover it)",
    "Stripe/Fixtures/api/event_summaries_paginated.json": "it reads a meter created outside the fixture",
    "Orb/Fixtures/api/event_amend.json":
        "it amends an event ingested outside the fixture (OrbCorrectionTests cover it)",
    "Orb/Fixtures/api/event_deprecate.json":
        "it deprecates an event ingested outside the fixture (OrbCorrectionTests cover it)",
    "Chargebee/Fixtures/api/usage_delete.json":
        "it deletes a usage created outside the fixture (ChargebeeCorrectionTests cover it)",
    "Recurly/Fixtures/api/usage_delete.json":
        "it deletes a usage created outside the fixture (RecurlyCorrectionTests cover it)",
].merging(
    allFixtureFiles().filter { $0.split(separator: "/").last?.hasPrefix("void_") == true }.map {
        ($0, "it corrects usage delivered outside the fixture (CorrectionProviderCLITests cover it)")
    }
) { first, _ in first }

/// Fixtures whose 4xx answers the emulator reproduces (the provider's documented validation of
/// the request alone); other 4xx fixtures script answers that depend on state or timing the
/// fixture does not carry (an unknown customer, a meter never created, a concurrent call, a
/// duplicate of an earlier request), so only their successes are compared.
let emulatedRefusals: Set<String> = [
    "Stripe/Fixtures/bad_request_rejected.json",
    "Stripe/Fixtures/unknown_meter_or_customer.json",
    "Stripe/Fixtures/partial_batch_failure.json",
]

/// Fixtures replayed against an emulator that knows only these Stripe meters (others: no_meter).
let emulatorStripeMeters: [String: [String]] = [
    "Stripe/Fixtures/unknown_meter_or_customer.json": ["api_requests"],
    "Stripe/Fixtures/partial_batch_failure.json": ["api_requests"],
]

/// Keys that only appear when there is a next page.
let pagingKeys: Set<String> = ["next_offset", "next"]

@Suite("Emulator answers fixture requests as the fixtures say the real API does", .timeLimit(.minutes(2)))
struct EmulatorFixtureTests {
    /// A provider is its folder plus the registries: every folder under Providers/ is a kind of
    /// the provider registry and of the emulator, declares its real hosts, and has fixtures and
    /// a vendored spec (which scripts/validate_fixtures.py finds by the folder).
    @Test func everyProviderFolderIsInEveryRegistry() {
        let folders = providerFolders()
        // A folder may declare more than one kind (`paddle` and `paddle_usage`): each is named for its folder.
        for kind in ProviderRegistry.standard.names {
            #expect(
                folders.contains { kind == $0.lowercased() || kind.hasPrefix($0.lowercased() + "_") },
                "kind \(kind) belongs to no folder under Providers/")
            #expect(
                UsageEmulator.standard.contains { $0.kind == kind },
                "kind \(kind): no emulation in UsageEmulator.standard")
        }
        for folder in folders {
            let kind = folder.lowercased()
            #expect(
                ProviderRegistry.standard.kind(kind) != nil,
                "Providers/\(folder): no kind '\(kind)' in ProviderRegistry.standard")
            let emulation = UsageEmulator.standard.first { $0.kind == kind }
            #expect(emulation != nil, "Providers/\(folder): no emulation in UsageEmulator.standard")
            #expect(emulation?.realHosts.isEmpty == false, "Providers/\(folder): its emulation declares no real hosts")
            for sub in ["Fixtures", "Spec"] {
                #expect(
                    FileManager.default.fileExists(
                        atPath: repositoryRoot.appending(path: "Providers/\(folder)/\(sub)").path),
                    "Providers/\(folder)/\(sub)")
            }
        }
    }

    /// Each fixture's requests are replayed, in order, against a fresh emulator. Where the fixture
    /// records a success (2xx), or a refusal the emulator models (`emulatedRefusals`), the
    /// emulator must answer the same status with a body of the same shape (every top-level key
    /// the real answer has). Scripted failures (429, 5xx, resets,
    /// timeouts, bad keys) are the fault injector's job and are not replayed. Stripe stream
    /// session tokens are the emulator's own: later requests carry the one it handed out.
    @Test(arguments: allFixtureFiles())
    func successAnswersMatch(_ file: String) async throws {
        if let reason = notEmulated[file] {
            print("SKIPPED emulator \(file): \(reason)")
            return
        }
        let fixture = try Fixture.load(repositoryRoot.appending(path: "Providers/" + file))
        let emulator = try await UsageEmulator.start(
            options: EmulationOptions().with(EmulatedStripe.Meters(emulatorStripeMeters[file])),
            now: { fixture.now ?? Date() })
        let client = try CurlHTTPClient()
        defer { client.shutdown() }
        var compared = 0
        var tokens: [String: String] = [:]  // the fixture's session token → the emulator's
        var ids: [String: String] = [:]  // the fixture's backfill ids → the emulator's
        for (index, exchange) in fixture.exchanges.enumerated() {
            let requestURL = ids.reduce(exchange.request.url) { $0.replacingOccurrences(of: $1.key, with: $1.value) }
            if let host = URLComponents(string: requestURL)?.host, emulatedHosts[host] == nil {
                Issue.record(
                    "\(file): the host \(host) is not one any emulation declares (EmulationKind.realHosts): its exchanges would go unchecked"
                )
            }
            guard let recorded = exchange.response, exchange.failure == nil,
                (200..<300).contains(recorded.status)
                    || (emulatedRefusals.contains(file) && (400..<500).contains(recorded.status)),
                let url = URLComponents(string: requestURL), let host = url.host, let prefix = emulatedHosts[host]
            else { continue }
            var headers = HeaderFields(exchange.request.headers.map { (name: $0.key, value: $0.value) })
            if let auth = headers["Authorization"], let token = tokens[String(auth.dropFirst("Bearer ".count))] {
                headers["Authorization"] = "Bearer \(token)"
            }
            var body: Data?
            if let form = exchange.request.form {
                body = Data(form.utf8)
            } else if let json = exchange.request.json {
                body = json.encoded()
                if headers["Content-Type"] == nil { headers["Content-Type"] = "application/json" }
            }
            let target =
                emulator.baseURL + prefix + url.percentEncodedPath + (url.percentEncodedQuery.map { "?" + $0 } ?? "")
            let response = try await client.send(
                HTTPRequest(
                    method: HTTPMethod(rawValue: exchange.request.method), url: target, headers: headers, body: body))
            if let theirs = recorded.json?["authentication_token"]?.stringValue,
                let ours = JSONValue.parse(response.body)?["authentication_token"]?.stringValue
            {
                tokens[theirs] = ours
            }
            if let theirs = recorded.json?["id"]?.stringValue, theirs.hasPrefix("bf_"),
                let ours = JSONValue.parse(response.body)?["id"]?.stringValue, theirs != ours
            {
                ids[theirs] = ours
            }
            let duplicateReplay = recorded.headers.keys.contains { $0.lowercased() == "chargebee-idempotency-replayed" }
            if duplicateReplay { continue }  // the real API replayed an earlier attempt the fixture scripted as lost
            #expect(
                response.status == recorded.status,
                "\(file) exchange \(index + 1): \(exchange.request.method) \(url.path) answered \(response.status), the fixture says \(recorded.status): \(response.bodyText.prefix(300))"
            )
            if case .object(let want)? = recorded.json {
                guard case .object(let got)? = JSONValue.parse(response.body) else {
                    Issue.record(
                        "\(file) exchange \(index + 1): the emulator's answer is not a JSON object: \(response.bodyText.prefix(200))"
                    )
                    continue
                }
                let missing = Set(want.keys).subtracting(got.keys).subtracting(pagingKeys)
                #expect(
                    missing.isEmpty, "\(file) exchange \(index + 1): the emulator's answer lacks \(missing.sorted())")
            } else {
                #expect(
                    response.body.isEmpty == (recorded.json == nil && (recorded.body ?? "").isEmpty),
                    "\(file) exchange \(index + 1): body presence differs")
            }
            compared += 1
        }
        await emulator.shutdown()
        // Fixtures with no success answer to compare (local rejections, pure fault scenarios) pass trivially; say so.
        if compared == 0 { print("EMULATOR \(file): no success exchange to compare") }
    }
}
