import Foundation
import Testing
import UsageBillingProviders
import UsageRouting

/// A bad config and what its error must say.
struct BadConfig: Sendable, CustomTestStringConvertible {
    var name: String
    var yaml: String
    /// The key the issue names.
    var key: String
    /// A fragment of the message.
    var says: String
    /// The line it points at, when checked.
    var line: Int?
    var testDescription: String { name }
}

let good = """
    version: 1
    providers:
      stripe: { kind: stripe, secret_key: ${STRIPE_KEY} }
      orb: { kind: orb, api_key: ${ORB_KEY} }
    routes:
      - { events: [api_request], to: stripe }
    """

let badConfigs: [BadConfig] = [
    BadConfig(name: "YAML syntax", yaml: "version: 1\nproviders: [oops\n", key: "", says: "not valid YAML"),
    BadConfig(name: "empty file", yaml: "", key: "", says: "the file is empty"),
    BadConfig(name: "not a mapping", yaml: "- a\n- b\n", key: "", says: "must be a mapping"),
    BadConfig(
        name: "unknown top-level key", yaml: good + "\nretries: 3\n", key: "retries", says: "unknown key 'retries'",
        line: 7),
    BadConfig(
        name: "missing version", yaml: good.replacingOccurrences(of: "version: 1\n", with: ""), key: "version",
        says: "version is missing"),
    BadConfig(
        name: "unsupported version", yaml: good.replacingOccurrences(of: "version: 1", with: "version: 2"),
        key: "version", says: "is not supported", line: 1),
    BadConfig(
        name: "no providers", yaml: "version: 1\nroutes:\n  - { events: [a], to: stripe }\n", key: "providers",
        says: "providers is missing"),
    BadConfig(
        name: "provider without kind",
        yaml: good.replacingOccurrences(of: "{ kind: orb, api_key: ${ORB_KEY} }", with: "{ api_key: x }"),
        key: "providers.orb", says: "has no kind", line: 4),
    BadConfig(
        name: "unknown provider kind", yaml: good.replacingOccurrences(of: "kind: orb", with: "kind: lago"),
        key: "providers.orb.kind", says: "unknown provider kind 'lago'", line: 4),
    BadConfig(
        name: "unknown provider setting",
        yaml: good.replacingOccurrences(of: "api_key: ${ORB_KEY}", with: "api_key: ${ORB_KEY}, colour: blue"),
        key: "providers.orb.colour", says: "orb has no setting 'colour'", line: 4),
    BadConfig(
        name: "missing environment variable", yaml: good.replacingOccurrences(of: "${ORB_KEY}", with: "${ORB_MISSING}"),
        key: "providers.orb.api_key", says: "environment variable ORB_MISSING is not set", line: 4),
    BadConfig(
        name: "bad provider setting value",
        yaml: good.replacingOccurrences(of: "api_key: ${ORB_KEY}", with: "api_key: ${ORB_KEY}, max_batch_size: 0"),
        key: "providers.orb.max_batch_size", says: "max_batch_size 0 is out of range"),
    BadConfig(
        name: "no routes", yaml: good.components(separatedBy: "routes:")[0], key: "routes", says: "routes is missing"),
    BadConfig(
        name: "route without events", yaml: good.replacingOccurrences(of: "events: [api_request], ", with: ""),
        key: "routes[0].events", says: "names no events", line: 6),
    BadConfig(
        name: "bad glob", yaml: good.replacingOccurrences(of: "[api_request]", with: "[\"api request\"]"),
        key: "routes[0].events[0]", says: "cannot be in an event name"),
    BadConfig(
        name: "double star glob", yaml: good.replacingOccurrences(of: "[api_request]", with: "[\"api.**\"]"),
        key: "routes[0].events[0]", says: "has `**`"),
    BadConfig(
        name: "route to undefined provider", yaml: good.replacingOccurrences(of: "to: stripe", with: "to: metronome"),
        key: "routes[0].to", says: "'metronome' is not a defined provider", line: 6),
    BadConfig(
        name: "shadow undefined",
        yaml: good.replacingOccurrences(of: "to: stripe", with: "to: stripe, shadow: chargebee"),
        key: "routes[0].shadow", says: "shadow 'chargebee' is not a defined provider"),
    BadConfig(
        name: "shadow is primary",
        yaml: good.replacingOccurrences(of: "to: stripe", with: "to: stripe, shadow: stripe"),
        key: "routes[0].shadow", says: "both primary and shadow"),
    BadConfig(
        name: "max_in_flight not a whole number",
        yaml: good.replacingOccurrences(of: "api_key: ${ORB_KEY}", with: "api_key: ${ORB_KEY}, max_in_flight: 2.5"),
        key: "providers.orb.max_in_flight", says: "max_in_flight must be a whole number"),
    BadConfig(
        name: "timeout not a duration",
        yaml: good.replacingOccurrences(of: "api_key: ${ORB_KEY}", with: "api_key: ${ORB_KEY}, timeout: soon"),
        key: "providers.orb.timeout", says: "timeout 'soon' is not a duration"),
    BadConfig(
        name: "timeout too short",
        yaml: good.replacingOccurrences(of: "api_key: ${ORB_KEY}", with: "api_key: ${ORB_KEY}, timeout: 0.2"),
        key: "providers.orb.timeout", says: "timeout 0.2 is not"),
    BadConfig(
        name: "timeout too long",
        yaml: good.replacingOccurrences(of: "api_key: ${ORB_KEY}", with: "api_key: ${ORB_KEY}, timeout: 1h"),
        key: "providers.orb.timeout", says: "timeout '1h' is not a duration from 1s to 5m"),
    BadConfig(
        name: "hedge not a boolean",
        yaml: good.replacingOccurrences(of: "api_key: ${ORB_KEY}", with: "api_key: ${ORB_KEY}, hedge: sometimes"),
        key: "providers.orb.hedge", says: "hedge must be true or false"),
    BadConfig(
        name: "max_in_flight out of range",
        yaml: good.replacingOccurrences(of: "api_key: ${ORB_KEY}", with: "api_key: ${ORB_KEY}, max_in_flight: 0"),
        key: "providers.orb.max_in_flight", says: "whole number from 1 to 1000"),
    BadConfig(
        name: "bad cutover time",
        yaml: good.replacingOccurrences(of: "to: stripe", with: "to: stripe, until: tomorrow"),
        key: "routes[0].until", says: "is not an RFC 3339 time"),
    BadConfig(
        name: "from after until",
        yaml: good.replacingOccurrences(
            of: "to: stripe", with: "to: stripe, from: \"2026-12-02T00:00:00Z\", until: \"2026-12-01T00:00:00Z\""),
        key: "routes[0].until", says: "is not after from"),
    BadConfig(
        name: "overlapping cutovers",
        yaml: good + """

              - { events: [api_request], to: orb, from: "2026-12-01T00:00:00Z" }
            """, key: "routes[1]", says: "both take 'api_request'"),
    BadConfig(
        name: "gap between cutovers",
        yaml: good.replacingOccurrences(of: "to: stripe }", with: "to: stripe, until: \"2026-12-01T00:00:00Z\" }") + """

              - { events: [api_request], to: orb, from: "2026-12-02T00:00:00Z" }
            """, key: "routes[1]", says: "has no route between"),
    BadConfig(
        name: "unknown route key", yaml: good.replacingOccurrences(of: "to: stripe", with: "to: stripe, primary: orb"),
        key: "routes[0].primary", says: "unknown route key 'primary'"),
    BadConfig(
        name: "settings for a provider the route skips",
        yaml: good.replacingOccurrences(of: "to: stripe", with: "to: stripe, orb: { event_name: x }"),
        key: "routes[0].orb", says: "which this route does not send to"),
    BadConfig(
        name: "empty cohort", yaml: good.replacingOccurrences(of: "to: stripe", with: "to: stripe, customers: []"),
        key: "routes[0].customers", says: "at least one customer"),
    BadConfig(
        name: "bad unrouted policy", yaml: good + "\nunrouted: drop\n", key: "unrouted",
        says: "not reject or dead-letter"),
    BadConfig(
        name: "customer table unreadable", yaml: good + "\ncustomers: missing.csv\n", key: "customers",
        says: "cannot read the customer table"),
    BadConfig(
        name: "customer mapping to unknown provider", yaml: good + "\ncustomers: { acme: { paddle: ctm_1 } }\n",
        key: "customers.acme.paddle", says: "'paddle' is not a defined provider"),
    BadConfig(name: "duplicate key", yaml: good + "\nversion: 1\n", key: "version", says: "appears twice"),
    BadConfig(
        name: "route id with a space",
        yaml: good.replacingOccurrences(of: "to: stripe", with: "to: stripe, id: \"api requests\""),
        key: "routes[0].id", says: "a route id 'api requests' has ' '", line: 6),
    BadConfig(
        name: "two routes with one id",
        yaml: good.replacingOccurrences(of: "to: stripe }", with: "to: stripe, id: usage }") + """

              - { events: [storage], to: orb, id: usage }
            """, key: "routes[1].id", says: "both have id 'usage'"),
    BadConfig(
        name: "one lane, two mappings",
        yaml: good.replacingOccurrences(
            of: "to: stripe }", with: "to: stripe, until: \"2026-12-01T00:00:00Z\", stripe: { event_name: calls_v1 } }")
                + """

                  - { events: [api_request], to: stripe, from: "2026-12-01T00:00:00Z", stripe: { event_name: calls_v2 } }
                """, key: "routes[1]", says: "would share the lane 'stripe/api_request'"),
    BadConfig(
        name: "provider name with a slash", yaml: good.replacingOccurrences(of: "  orb: {", with: "  orb/eu: {"),
        key: "providers.orb/eu", says: "a provider name 'orb/eu' has '/'"),
]

@Suite("Config errors")
struct BadConfigTests {
    @Test(arguments: badConfigs)
    func eachBadConfigGetsItsOwnClearError(_ bad: BadConfig) throws {
        do {
            _ = try RoutingConfig.parse(
                bad.yaml, file: "routing.yaml", directory: "/tmp", registry: .standard,
                environment: ["STRIPE_KEY": "sk_test_REDACTED", "ORB_KEY": "orb_REDACTED"])
            Issue.record("\(bad.name): the config loaded")
        } catch let issues as ConfigIssues {
            let match = issues.issues.first { $0.key == bad.key && $0.message.contains(bad.says) }
            #expect(match != nil, "\(bad.name): got \(issues.issues.map(\.description))")
            #expect(match?.fix.isEmpty == false)
            if let line = bad.line {
                #expect(match?.line == line, "\(bad.name): line \(match?.line.map(String.init) ?? "nil")")
            }
            #expect(match?.description.hasPrefix("routing.yaml") == true)
        }
    }

    @Test func theMessagesAreDistinct() {
        #expect(badConfigs.count >= 15)
        #expect(Set(badConfigs.map(\.says)).count == badConfigs.count)
    }

    @Test func aGoodConfigLoads() throws {
        let c = try RoutingConfig.parse(
            good, file: "routing.yaml", directory: "/tmp", registry: .standard,
            environment: ["STRIPE_KEY": "sk_test_REDACTED", "ORB_KEY": "orb_REDACTED"])
        #expect(c.routes.count == 1 && c.providers.count == 2)
    }

    /// A customer table shared by several configs: a column for a provider this config does not
    /// define is a warning (the table loads without it); a column a letter or two away from a
    /// defined provider is an error that names it.
    @Test func aSharedCustomerTablesOtherColumnsWarnButNearMissesFail() throws {
        let dir = FileManager.default.temporaryDirectory.appending(path: "ub-csv-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let env = ["STRIPE_KEY": "sk_test_REDACTED", "ORB_KEY": "orb_REDACTED"]
        try Data("customer,stripe,orb,paddle\nacme,cus_1,acme-orb,sub_1\n".utf8).write(
            to: URL(fileURLWithPath: "\(dir)/shared.csv"))
        let shared = try RoutingConfig.parse(
            good + "\ncustomers: shared.csv\n", file: "routing.yaml", directory: dir, registry: .standard,
            environment: env)
        #expect(shared.customers["acme"] == ["stripe": "cus_1", "orb": "acme-orb"])
        #expect(
            shared.warnings.count == 1 && shared.warnings[0].message.contains("'paddle'")
                && shared.warnings[0].message.contains("ignored"))
        try Data("customer,strpe,orb\nacme,cus_1,acme-orb\n".utf8).write(to: URL(fileURLWithPath: "\(dir)/typo.csv"))
        #expect {
            try RoutingConfig.parse(
                good + "\ncustomers: typo.csv\n", file: "routing.yaml", directory: dir, registry: .standard,
                environment: env)
        } throws: { error in
            "\(error)".contains("'strpe'") && "\(error)".contains("did you mean 'stripe'")
        }
    }

    @Test func theExampleConfigLoadsWithItsCustomerTable() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let c = try RoutingConfig.load(
            path: root.appending(path: "examples/routing.yaml").path, registry: .standard,
            environment: [
                "STRIPE_SECRET_KEY": "sk_test_REDACTED", "ORB_API_KEY": "orb_REDACTED",
                "OPENMETER_TOKEN": "om_REDACTED",
                "METRONOME_BEARER_TOKEN": "REDACTED", "CHARGEBEE_API_KEY": "REDACTED", "RECURLY_API_KEY": "REDACTED",
                "PADDLE_API_KEY": "pdl_sdbx_apikey_REDACTED",
            ])
        #expect(c.customers["acme"]?["stripe"] == "cus_QrAcme0001")
        #expect(c.customers["acme"]?["paddle"] == "sub_01hv8y5ehszzq0yv20ttx3166y")
        #expect(
            c.decide(UsageEvent(name: "seats", customer: "acme")).map { [$0.primary] + $0.shadows } == [
                "chargebee", "recurly",
            ])
        #expect(c.decide(UsageEvent(name: "storage_gb_hours", customer: "acme"))?.primary == "openmeter")
    }
}
