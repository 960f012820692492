import ArgumentParser
import Foundation
import MetronomeUsage
import OpenMeterUsage
import OrbUsage
import StripeUsage
import UsageBilling
import UsageBillingCurl
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
    func resolve() throws -> (kind: String, settings: JSONValue, config: RoutingConfig) {
        let config = try loadConfig(self.config)
        guard let p = config.providers[provider] else {
            printError("error: --provider '\(provider)' is not in \(self.config); use one of \(config.providers.keys.sorted().joined(separator: ", "))")
            throw ExitCode(ExitCodes.badInput)
        }
        return (p.kind.name, config.settings(for: provider, route: nil), config)
    }
}

/// Runs a read-back call, turning its errors into messages and exit codes.
func readBack<T>(_ work: (any HTTPClient) async throws -> T) async throws -> T {
    let client = try CurlHTTPClient()
    defer { client.shutdown() }
    do {
        return try await work(client)
    } catch let error as UsageBillingError {
        printError("error: \(error)")
        switch error.code {
        case .invalidInput, .configuration: throw ExitCode(ExitCodes.badInput)
        case .transport, .timeout: throw ExitCode(ExitCodes.unreachable)
        default: throw ExitCode(ExitCodes.someRejected)
        }
    }
}

/// Prints rows as an aligned table or as JSON.
func output(_ header: [String], _ rows: [[String]], json: Bool) {
    if json {
        let objects = rows.map { JSONValue.object(Dictionary(uniqueKeysWithValues: zip(header, $0.map(JSONValue.string)))) }
        print(JSONValue.array(objects).description)
        return
    }
    let widths = header.indices.map { i in ([header[i]] + rows.map { $0[i] }).map(\.count).max() ?? 0 }
    func line(_ cells: [String]) -> String { zip(cells, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ") }
    print(line(header))
    for row in rows { print(line(row)) }
}

struct Meters: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List or create Stripe meters.", subcommands: [MetersList.self, MetersCreate.self])
}

struct MetersList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List a Stripe provider's meters (every page).",
        usage: "usage-billing meters list --provider <name> [<options>]",
        discussion: """
            Examples:
              usage-billing meters list -c routing.yaml --provider stripe
              usage-billing meters list -c routing.yaml --provider stripe --json
            """)
    @OptionGroup var options: ProviderOptions

    func run() async throws {
        let (kind, settings, _) = try options.resolve()
        guard kind == "stripe" else {
            printError("error: meters are a Stripe concept; '\(options.provider)' is \(kind)")
            throw ExitCode(ExitCodes.badInput)
        }
        let meters = try await readBack { try await StripeBillingClient(settings: StripeSettings.decode(settings), client: $0).listMeters() }
        output(["id", "event_name", "display_name", "status", "formula"],
               meters.map { [$0.id, $0.eventName, $0.displayName, $0.status, $0.defaultAggregation.formula] }, json: options.json)
    }
}

struct MetersCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Create a Stripe meter.",
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
        guard kind == "stripe" else {
            printError("error: meters are a Stripe concept; '\(options.provider)' is \(kind)")
            throw ExitCode(ExitCodes.badInput)
        }
        guard ["sum", "count", "last"].contains(formula) else {
            printError("error: --formula '\(formula)' is not sum, count or last")
            throw ExitCode(ExitCodes.badInput)
        }
        let s = try StripeSettings.decode(settings)
        let meter = try await readBack {
            try await StripeBillingClient(settings: s, client: $0).createMeter(
                displayName: displayName, eventName: eventName, formula: formula, customerKey: s.customerKey, valueKey: s.valueKey)
        }
        output(["id", "event_name", "display_name", "status"], [[meter.id, meter.eventName, meter.displayName, meter.status]], json: options.json)
    }
}

struct Summary: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read back the usage a provider reports (Stripe event summaries, Orb subscription usage, Metronome usage, OpenMeter meter query).",
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

    func require(_ value: String?, _ flag: String, _ kind: String) throws -> String {
        guard let value, !value.isEmpty else {
            printError("error: \(kind) needs \(flag)")
            throw ExitCode(ExitCodes.badInput)
        }
        return value
    }

    func run() async throws {
        let (kind, settings, _) = try options.resolve()
        guard let start = RFC3339.parse(from), let end = RFC3339.parse(to) else {
            printError("error: --from and --to must be RFC 3339, e.g. 2026-11-24T00:00:00Z")
            throw ExitCode(ExitCodes.badInput)
        }
        if let window, !["hour", "day"].contains(window) {
            printError("error: --window '\(window)' is not hour or day")
            throw ExitCode(ExitCodes.badInput)
        }
        let header = ["start", "end", "customer", "metric", "value"]
        var rows: [[String]] = []
        switch kind {
        case "stripe":
            let meter = try require(meter, "--meter", kind), customer = try require(customer, "--customer", kind)
            let grouping = window.flatMap(StripeSummaryWindow.init(rawValue:))
            let summaries = try await readBack {
                try await StripeBillingClient(settings: StripeSettings.decode(settings), client: $0)
                    .eventSummaries(meterID: meter, customer: customer, start: start, end: end, window: grouping)
            }
            rows = summaries.sorted { $0.startTime < $1.startTime }.map {
                [RFC3339.format(Date(timeIntervalSince1970: Double($0.startTime))), RFC3339.format(Date(timeIntervalSince1970: Double($0.endTime))),
                 customer, $0.meter, String(format: "%g", $0.aggregatedValue)]
            }
        case "orb":
            let subscription = try require(subscription, "--subscription", kind)
            let usage = try await readBack {
                try await OrbClient(settings: OrbSettings.decode(settings), client: $0)
                    .subscriptionUsage(subscriptionID: subscription, start: start, end: end, daily: window == "day")
            }
            rows = usage.flatMap { metric in
                metric.windows.map { [RFC3339.format($0.start), RFC3339.format($0.end), subscription, metric.metricName, String(format: "%g", $0.quantity)] }
            }
        case "metronome":
            let usage = try await readBack {
                try await MetronomeClient(settings: MetronomeSettings.decode(settings), client: $0)
                    .usage(start: start, end: end, window: window ?? "day", customerIDs: customer.map { [$0] } ?? [])
            }
            rows = usage.map { [$0.startTimestamp, $0.endTimestamp, $0.customerID, $0.billableMetricName, $0.value.map { String(format: "%g", $0) } ?? "-"] }
        case "openmeter":
            let meter = try require(meter, "--meter", kind)
            let size: OpenMeterClient.WindowSize? = switch window { case "hour": .hour; case "day": .day; default: nil }
            let result = try await readBack {
                try await OpenMeterClient(settings: OpenMeterSettings.decode(settings), client: $0)
                    .query(meter: meter, from: start, to: end, windowSize: size, subjects: customer.map { [$0] } ?? [])
            }
            rows = result.map { [$0.windowStart, $0.windowEnd, $0.subject ?? "-", meter, String(format: "%g", $0.value)] }
        default:
            printError("error: \(kind) has no read-back here yet")
            throw ExitCode(ExitCodes.badInput)
        }
        output(header, rows, json: options.json)
    }
}
