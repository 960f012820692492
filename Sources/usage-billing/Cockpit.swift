import ArgumentParser
import Foundation
import UsageBilling
import UsageCockpit
import UsageReconciliation
import UsageSpool

/// Writes a page atomically (a reader never sees half of it); exits 2 naming the flag when the
/// file cannot be written.
func writePage(_ html: String, to path: String, flag: String) throws {
    do {
        try Data(html.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
    } catch {
        throw CLIFailure.badInput(
            "\(flag) \(path) cannot be written: \(error.localizedDescription). Fix: pass a path in a directory you can write to"
        )
    }
}

/// The reconciliation saved at `path` by `reconcile --json`; exits 2 naming the flag when it
/// cannot be read or is not one.
func savedReconcile(_ path: String, flag: String = "--reconcile") throws -> StatusPage.SavedReconcile {
    do {
        return try StatusPage.SavedReconcile(contentsOf: path)
    } catch {
        throw CLIFailure.badInput("\(flag) \(path): \(error)")
    }
}

/// The status page of `ledger` now, its backlog over the last hour read from the ledger.
func statusPage(_ ledger: any UsageLedger, reconcile: StatusPage.SavedReconcile?, now: Date = Date()) async throws
    -> StatusPage
{
    let instants = (0..<60).map { now.addingTimeInterval(Double($0 - 59) * 60) }
    return StatusPage(
        lanes: try await ledger.status(), history: try await ledger.backlogHistory(at: instants),
        historySpan: "the last hour", reconcile: reconcile, now: now)
}
