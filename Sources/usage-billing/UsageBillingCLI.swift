import ArgumentParser
import Foundation
import UsageRouting
import UsageServe
import UsageSpool

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
            Lanes.self, DLQ.self, VoidCommand.self, AmendCommand.self, CorrectionsCommand.self, SpoolCommand.self,
            Meters.self,
            Summary.self,
            Reconcile.self,
        ]
    )

    /// Parses and runs the command; the one place a command's failure becomes its message on
    /// standard error and its exit code.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let failure as CLIFailure {
            for message in failure.messages { printError("error: \(message)") }
            if let closing = failure.closing { printError(closing) }
            Foundation.exit(failure.exitCode)
        } catch {
            exit(withError: error)
        }
    }
}

/// Why a command failed, in the words it prints after `error: ` (what went wrong and the fix),
/// and the exit code that goes with it. Commands throw it; ``UsageBillingCLI/main()`` prints it.
struct CLIFailure: Error, CustomStringConvertible {
    /// Each printed after `error: `, one line each.
    let messages: [String]
    /// A last line printed as it is: what the problems above mean for the command.
    var closing: String? = nil
    let exitCode: Int32

    init(message: String, exitCode: Int32) {
        self.messages = [message]
        self.exitCode = exitCode
    }

    /// Several problems, each after `error: `, then `closing`.
    init(messages: [String], closing: String?, exitCode: Int32) {
        self.messages = messages
        self.closing = closing
        self.exitCode = exitCode
    }

    /// Every problem of a config (exit 2), each with its file, line, key and fix, then `closing`.
    init(_ issues: ConfigIssues, closing: String?) {
        messages = issues.issues.map(\.description)
        self.closing = closing
        exitCode = ExitCodes.badInput
    }

    var message: String { messages.joined(separator: "\n") }

    /// Bad input or configuration (exit 2).
    static func badInput(_ message: String) -> CLIFailure { CLIFailure(message: message, exitCode: ExitCodes.badInput) }
    /// A provider, the ledger or the emulator could not be reached (exit 3).
    static func unreachable(_ message: String) -> CLIFailure {
        CLIFailure(message: message, exitCode: ExitCodes.unreachable)
    }
    /// An error thrown below the CLI: a lost ledger is unreachable, anything else bad input.
    static func from(_ error: any Error) -> CLIFailure {
        error is LedgerUnavailableError ? .unreachable("\(error)") : .badInput("\(error)")
    }
    /// Why a service group (serve, worker) ended: refused or an address taken is the caller's
    /// to fix (exit 2), anything else unreachable (exit 3).
    static func from(_ failure: UsageServices.Failure) -> CLIFailure {
        switch failure {
        case .refused(let message), .addressTaken(let message): .badInput(message)
        case .failed(let message): .unreachable(message)
        }
    }

    var description: String { message }
}
