import Foundation
import Testing
import UsageBilling
import UsageSpool

@Suite("CLI dlq reject")
struct DLQRejectCLITests {
    /// Stripe's recorded meter error report names one identifier: after `dlq reject` that event is
    /// a dead letter with Stripe's code and message; the others stay delivered; a file that is not
    /// such a report is bad input that changes nothing.
    @Test func stripesErrorReportMakesTheNamedEventADeadLetter() async throws {
        let reported = "cb447754-6880-45c2-8f2f-ef19b6ce81e9"  // named in the fixture's sample_errors
        let path = FileManager.default.temporaryDirectory.appending(path: "ub-dlq-reject-\(UUID().uuidString).spool")
            .path
        do {
            let spool = try Spool(path: path)
            let now = Date()
            try await spool.record(
                [reported, "other-1"].map {
                    RecordEntry(
                        event: UsageEvent(id: $0, name: "api_request", customer: "acme", timestamp: now, quantity: 1),
                        lanes: ["stripe/api_request"])
                })
            let rows = try await spool.due(lane: "stripe/api_request", limit: 10, now: now.addingTimeInterval(1))
            try await spool.mark(rows.map { ($0.seq, .delivered) })
        }
        let report = CLI.root.appending(path: "Providers/Stripe/Fixtures/webhooks/error_report_triggered.json").path
        let r = try await CLI.run([
            "dlq", "reject", "--spool", path, "--provider", "stripe", "--stripe-error-report", report,
        ])
        #expect(r.status == 0, "\(r.output)")
        #expect(
            r.output.contains("1 delivered row(s) of 1 event(s) the report names are now dead letters on stripe"),
            "\(r.output)")
        let list = try await CLI.run(["dlq", "list", "--spool", path])
        #expect(
            list.output.contains("\(reported)  stripe/api_request  meter_event_no_customer_defined")
                && list.output.contains("Customer mapping key stripe_customer_id not found"), "\(list.output)")
        #expect(!list.output.contains("other-1"))

        let notAReport = try CLI.temp("not-a-report.json", #"{"type":"invoice.paid","data":{}}"#)
        let bad = try await CLI.run(["dlq", "reject", "--spool", path, "--stripe-error-report", notAReport])
        #expect(bad.status == 2 && bad.output.contains("not a meter error event"), "\(bad.output)")
        #expect(try Spool(path: path).status().first?.dead == ["meter_event_no_customer_defined": 1])
    }
}

extension DLQRejectCLITests {
    /// `no_meter_found` names two of three refused events: those two become dead letters with
    /// `no_meter`, the third is counted with the command to find it, and an unnamed event stays
    /// delivered.
    @Test func noMeterFoundMakesTheNamedEventsDeadLetters() async throws {
        let named = ["019aa0f4-7c00-7000-8000-000000000101", "019aa0f4-7c00-7000-8000-000000000102"]
        let path = FileManager.default.temporaryDirectory.appending(path: "ub-dlq-nometer-\(UUID().uuidString).spool")
            .path
        do {
            let spool = try Spool(path: path)
            let now = Date()
            try await spool.record(
                (named + ["other-1"]).map {
                    RecordEntry(
                        event: UsageEvent(id: $0, name: "api_requets", customer: "acme", timestamp: now, quantity: 1),
                        lanes: ["stripe/api_requets"])
                })
            let rows = try await spool.due(lane: "stripe/api_requets", limit: 10, now: now.addingTimeInterval(1))
            try await spool.mark(rows.map { ($0.seq, .delivered) })
        }
        let report = CLI.root.appending(path: "Providers/Stripe/Fixtures/webhooks/no_meter_found.json").path
        let r = try await CLI.run(["dlq", "reject", "--spool", path, "--stripe-error-report", report])
        #expect(r.status == 0, "\(r.output)")
        #expect(
            r.output.contains("2 delivered row(s) of 2 event(s)")
                && r.output.contains("1 no_meter more it does not name"), "\(r.output)")
        let list = try await CLI.run(["dlq", "list", "--spool", path, "--reason", "no_meter"])
        #expect(
            named.allSatisfy { list.output.contains("\($0)  stripe/api_requets  no_meter") }
                && !list.output.contains("other-1"), "\(list.output)")
    }
}

@Suite("CLI spool path checks")
struct SpoolPathCLITests {
    /// A mistyped --spool for a command that reads or maintains a spool is an error naming the
    /// path, exit 2, and creates no file (it used to create an empty spool and report it empty).
    @Test(arguments: [
        ["status"], ["dlq", "list"], ["dlq", "retry"], ["dlq", "purge", "--yes"],
        ["dlq", "reject", "--stripe-error-report", "Providers/Stripe/Fixtures/webhooks/error_report_triggered.json"],
    ])
    func aMissingSpoolIsAnErrorNotANewFile(_ command: [String]) async throws {
        let path = FileManager.default.temporaryDirectory.appending(path: "ub-missing-\(UUID().uuidString).spool").path
        let r = try await CLI.run(command + ["--spool", path])
        #expect(r.status == 2 && r.output.contains("no spool at \(path)") && r.output.contains("Fix:"), "\(r.output)")
        #expect(!FileManager.default.fileExists(atPath: path))
    }
}
