import ArgumentParser
import Foundation

/// Exit codes, shared by every command.
enum ExitCodes {
    /// All good.
    static let ok: Int32 = 0
    /// Some events were rejected, or read-back totals disagree.
    static let someRejected: Int32 = 1
    /// Bad input or configuration.
    static let badInput: Int32 = 2
    /// A provider (or the local fake) could not be reached.
    static let unreachable: Int32 = 3
}

@main
struct UsageBillingCLI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "usage-billing",
        abstract: "Deliver metered usage to billing providers, exactly once in effect.",
        discussion: """
            Exit codes: 0 ok · 1 some events rejected or totals disagree · 2 bad input \
            or config · 3 provider unreachable.

            Examples:
              usage-billing demo
              usage-billing config check examples/routing.yaml
              usage-billing import events.ndjson -c routing.yaml --dry-run
              usage-billing send -c routing.yaml --name api_request --customer acme
            """,
        version: "0.1.0",
        subcommands: [
            Demo.self, Emulate.self, ConfigCommand.self, Send.self, Import.self, Serve.self, Worker.self, Status.self,
            Lanes.self, DLQ.self, SpoolCommand.self, Meters.self, Summary.self, Reconcile.self,
        ]
    )
}
