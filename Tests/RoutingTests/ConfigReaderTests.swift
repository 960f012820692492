import Foundation
import Testing
import UsageBilling
import UsageBillingProviders
import UsageRouting

/// The one config decoder: typed documents, every problem in one pass, each at its line.
@Suite("Config decoder")
struct ConfigReaderTests {
    struct Limits: Decodable {
        var name: String?
        var size: WholeNumber<Size>?
        var tags: ConfigList<String>?
        var enabled: Bool?
        var start: ConfigTime?

        enum Size: WholeNumberBounds {
            static let range = 1...10
            static let fix = "e.g. 5"
        }
    }

    static let env = ["STRIPE_KEY": "sk_test_REDACTED", "ORB_KEY": "orb_REDACTED"]

    /// Decodes `yaml` at its root through the reader, as the routing and serve documents are.
    func read<T: Decodable>(_ type: T.Type, _ yaml: String) throws -> (T?, [ConfigIssue]) {
        // A routing config whose `serve:` section is the document: the same path every
        // section after routing takes (`RoutingConfig.reader`).
        let config = try RoutingConfig.parse(
            good + "\nserve:\n" + yaml.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n") + "\n",
            file: "routing.yaml", directory: "/tmp", registry: .standard, environment: Self.env)
        return config.reader.decode(T.self, from: config.serve ?? .null, at: "serve")
    }

    @Test func eachBadValueIsReportedAtItsLineAndTheRestStillDecodes() throws {
        let (limits, issues) = try read(
            Limits.self,
            """
            name: 12
            size: 11
            tags: [a, 2, c]
            enabled: maybe
            start: tomorrow
            colour: blue
            """)
        let byKey = Dictionary(issues.map { ($0.key, $0) }) { first, _ in first }
        #expect(byKey["serve.name"]?.message == "name must be a string, not 12")
        #expect(byKey["serve.size"]?.message == "size must be a whole number from 1 to 10")
        #expect(byKey["serve.size"]?.fix == "e.g. 5")
        #expect(byKey["serve.tags[1]"]?.message.contains("must be a string") == true)
        #expect(byKey["serve.enabled"]?.message == "enabled must be true or false")
        #expect(byKey["serve.start"]?.message == "start 'tomorrow' is not an RFC 3339 time")
        #expect(byKey["serve.colour"]?.message == "unknown key 'colour'")
        #expect(issues.count == 6, "\(issues.map(\.description))")
        // `good` is 6 lines, then `serve:`: the section's first key is line 8.
        #expect(byKey["serve.name"]?.line == 8 && byKey["serve.start"]?.line == 12 && byKey["serve.colour"]?.line == 13)
        // What could be read was: a bad element leaves its neighbours in their places.
        #expect(limits?.tags?.items == ["a", nil, "c"])
        #expect(limits?.name == nil && limits?.size == nil)
    }

    @Test func anUnknownKeyNamesTheNearestKnownOne() throws {
        let (_, issues) = try read(Limits.self, "nmae: x\nsize: 3\n")
        #expect(issues.count == 1)
        #expect(issues.first?.message == "unknown key 'nmae'; did you mean 'name'?")
        #expect(issues.first?.fix == "rename it to 'name'")
    }

    @Test func aGoodDocumentDecodesWithNoIssue() throws {
        let (limits, issues) = try read(
            Limits.self, "name: x\nsize: 10\ntags: [a]\nenabled: true\nstart: 2026-12-01T00:00:00Z\n")
        #expect(issues.isEmpty, "\(issues)")
        #expect(limits?.size?.value == 10 && limits?.enabled == true && limits?.tags?.items == ["a"])
        #expect(limits?.start?.date == RFC3339.parse("2026-12-01T00:00:00Z"))
    }

    /// A config with a problem in every section reports all of them in one run, in file order:
    /// nothing stops at the first, and a broken provider is not also reported as undefined
    /// where a route names it.
    @Test func everyProblemOfAConfigIsReportedOnce() {
        let yaml = """
            version: 1
            providers:
              stripe: { kind: stripe, secret_key: ${STRIPE_KEY}, max_in_flight: lots }
              om: { kind: openmetr, api_key: x }
              orb: { kind: orb, api_key: ${ORB_KEY}, timeout: 10 minutes, hedge: 3 }
            routes:
              - { events: [api_request, 7], to: stripe, shadow: om, until: someday }
              - { events: [storage], to: orb, customers: [] }
            unrouted: 5
            retries: 2
            """
        do {
            _ = try RoutingConfig.parse(
                yaml, file: "routing.yaml", directory: "/tmp", registry: .standard, environment: Self.env)
            Issue.record("the config loaded")
        } catch let error as ConfigIssues {
            let seen = error.issues.map { "\($0.line ?? 0) \($0.key)" }
            #expect(
                seen == [
                    "3 providers.stripe.max_in_flight", "4 providers.om.kind", "5 providers.orb.timeout",
                    "5 providers.orb.hedge", "7 routes[0].events[1]", "7 routes[0].until", "8 routes[1].customers",
                    "9 unrouted", "10 retries",
                ], "\(error)")
            let kind = error.issues.first { $0.key == "providers.om.kind" }
            #expect(kind?.message == "unknown provider kind 'openmetr'; did you mean 'openmeter'?")
            #expect(kind?.fix == "write `kind: openmeter`")
            #expect(!error.description.contains("not a defined provider"))
        } catch {
            Issue.record("\(error)")
        }
    }

    /// The settings every provider takes are typed: the router reads them from there, and the
    /// adapter's settings never carry them.
    @Test func sharedProviderSettingsAreTyped() throws {
        let config = try RoutingConfig.parse(
            good.replacingOccurrences(
                of: "api_key: ${ORB_KEY}", with: "api_key: ${ORB_KEY}, max_in_flight: 8, timeout: 2.5, hedge: false"),
            file: "routing.yaml", directory: "/tmp", registry: .standard, environment: Self.env)
        let orb = try #require(config.providers["orb"])
        #expect(orb.maxInFlight == 8 && orb.timeout == .milliseconds(2500) && orb.hedges == false)
        #expect(orb.settings.keys.sorted() == ["api_key"])
        guard case .object(let sent) = config.settings(for: "orb", route: nil) else {
            Issue.record("the adapter's settings are not a mapping")
            return
        }
        #expect(sent["timeout"] == nil && sent["api_key"] != nil)
        #expect(config.describe().contains("max_in_flight=8"))
        #expect(config.providers["stripe"]?.hedges == true && config.providers["stripe"]?.timeout == nil)
    }
}
