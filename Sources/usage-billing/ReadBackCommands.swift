import ArgumentParser
import Foundation
import UsageBilling
import UsageBillingCurl
import UsageBillingProviders
import UsageRouting

/// Options naming a provider of a config.
struct ProviderOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "The routing config (YAML or JSON).")
    var config: String = "routing.yaml"

    @Option(help: "The provider's name in the config.")
    var provider: String

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    /// The provider's kind and settings, or exit 2 naming the problem.
    func resolve() throws -> (kind: ProviderKind, settings: JSONValue, config: RoutingConfig) {
        let config = try loadConfig(self.config)
        guard let p = config.providers[provider] else {
            throw CLIFailure.badInput(
                "--provider '\(provider)' is not in \(self.config); use one of \(config.providers.keys.sorted().joined(separator: ", "))"
            )
        }
        return (p.kind, config.settings(for: provider, route: nil), config)
    }

    /// The kinds in the registry that offer `tool`, for error messages.
    static func kinds(offering tool: (ProviderTools) -> Bool) -> String {
        ProviderRegistry.standard.names.filter { ProviderRegistry.standard.kind($0).map { tool($0.tools) } ?? false }
            .joined(separator: ", ")
    }
}

/// Runs a read-back call, turning its errors into messages and exit codes.
func readBack<T>(_ work: (any HTTPClient) async throws -> T) async throws -> T {
    let client = try CurlHTTPClient()
    defer { client.shutdown() }
    do {
        return try await work(client)
    } catch let error as UsageBillingError {
        let exitCode =
            switch error.code {
            case .invalidInput, .configuration: ExitCodes.badInput
            case .transport, .timeout: ExitCodes.unreachable
            default: ExitCodes.someRejected
            }
        throw CLIFailure(message: "\(error)", exitCode: exitCode)
    }
}

/// Prints rows as an aligned table or as JSON.
func output(_ header: [String], _ rows: [[String]], json: Bool) {
    if json {
        let objects = rows.map {
            JSONValue.object(Dictionary(uniqueKeysWithValues: zip(header, $0.map(JSONValue.string))))
        }
        print(JSONValue.array(objects).description)
        return
    }
    let widths = header.indices.map { i in ([header[i]] + rows.map { $0[i] }).map(\.count).max() ?? 0 }
    func line(_ cells: [String]) -> String {
        zip(cells, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
    }
    print(line(header))
    for row in rows { print(line(row)) }
}

struct Meters: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List or create a provider's meters (Stripe's).", subcommands: [MetersList.self, MetersCreate.self])
}

struct MetersList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List a provider's meters (every page).",
        usage: "usage-billing meters list --provider <name> [<options>]",
        discussion: """
            Examples:
              usage-billing meters list -c routing.yaml --provider stripe
              usage-billing meters list -c routing.yaml --provider stripe --json
            """)
    @OptionGroup var options: ProviderOptions

    func run() async throws {
        let (kind, settings, _) = try options.resolve()
        guard let make = kind.tools.meters else {
            throw CLIFailure.badInput(
                "'\(options.provider)' is \(kind.name), which has no meters here. Fix: pick a provider of kind \(ProviderOptions.kinds { $0.meters != nil })"
            )
        }
        let meters = try await readBack { try await make(settings, $0).list() }
        output(
            ["id", "event_name", "display_name", "status", "formula"],
            meters.map { [$0.id, $0.eventName, $0.displayName, $0.status, $0.formula] }, json: options.json)
    }
}

struct MetersCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Create a meter with the provider's configured payload keys.",
        usage: "usage-billing meters create --provider <p> --event-name <e> [<options>]",
        discussion: """
            Examples:
              usage-billing meters create --provider stripe --event-name api_requests \\
                --display-name "API requests"
            """)
    @OptionGroup var options: ProviderOptions
    @Option(help: "The meter's event_name (≤ 100 characters).") var eventName: String
    @Option(help: "The meter's display name.") var displayName: String
    @Option(help: "sum, count or last.") var formula: String = "sum"

    func run() async throws {
        let (kind, settings, _) = try options.resolve()
        guard let make = kind.tools.meters else {
            throw CLIFailure.badInput(
                "'\(options.provider)' is \(kind.name), which has no meters here. Fix: pick a provider of kind \(ProviderOptions.kinds { $0.meters != nil })"
            )
        }
        guard ["sum", "count", "last"].contains(formula) else {
            throw CLIFailure.badInput("--formula '\(formula)' is not sum, count or last")
        }
        let meter = try await readBack {
            try await make(settings, $0).create(eventName: eventName, displayName: displayName, formula: formula)
        }
        output(
            ["id", "event_name", "display_name", "status"],
            [[meter.id, meter.eventName, meter.displayName, meter.status]], json: options.json)
    }
}

struct Summary: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Read back the usage a provider reports (Stripe event summaries, Orb subscription usage, Metronome usage, OpenMeter meter query).",
        usage: "usage-billing summary --provider <name> --from <t> --to <t> [<options>]",
        discussion: """
            What identifies the usage differs per provider: Stripe and OpenMeter need \
            --meter (a meter id / slug) and --customer; Orb needs --subscription; \
            Metronome takes --customer (a Metronome customer id) optionally. Times are \
            RFC 3339; Stripe day windows and Metronome need UTC midnights.

            Examples:
              usage-billing summary --provider stripe --meter mtr_1 --customer cus_1 \\
                --from 2026-11-24T00:00:00Z --to 2026-11-25T00:00:00Z --window hour
              usage-billing summary --provider orb --subscription sub_123 \\
                --from 2026-11-01T00:00:00Z --to 2026-11-25T00:00:00Z --json
              usage-billing summary --provider metronome \\
                --from 2026-11-20T00:00:00Z --to 2026-11-25T00:00:00Z
            """)
    @OptionGroup var options: ProviderOptions
    @Option(help: "Start, RFC 3339.") var from: String
    @Option(help: "End (exclusive), RFC 3339.") var to: String
    @Option(help: "hour or day (default: one total; Metronome: day).") var window: String?
    @Option(help: "Stripe meter id or OpenMeter meter slug.") var meter: String?
    @Option(help: "The provider's customer id (Stripe cus_…, OpenMeter subject, Metronome id).") var customer: String?
    @Option(help: "Orb subscription id.") var subscription: String?

    func run() async throws {
        let (kind, settings, _) = try options.resolve()
        guard let start = RFC3339.parse(from), let end = RFC3339.parse(to) else {
            throw CLIFailure.badInput("--from and --to must be RFC 3339, e.g. 2026-11-24T00:00:00Z")
        }
        var granularity: ReadBackGranularity?
        if let window {
            guard let g = ReadBackGranularity(rawValue: window) else {
                throw CLIFailure.badInput("--window '\(window)' is not hour or day")
            }
            granularity = g
        }
        guard let make = kind.tools.summary else {
            throw CLIFailure.badInput(
                "\(kind.name) has no usage report here. Fix: pick a provider of kind \(ProviderOptions.kinds { $0.summary != nil }), or use reconcile"
            )
        }
        let query = SummaryQuery(
            from: start, to: end, window: granularity, meter: meter, customer: customer, subscription: subscription)
        let rows = try await readBack { try await make(settings, $0).summary(query) }
        output(
            ["start", "end", "customer", "metric", "value"],
            rows.map { [$0.start, $0.end, $0.customer, $0.metric, $0.value] }, json: options.json)
    }
}
