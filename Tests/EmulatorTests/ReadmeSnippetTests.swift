// swift-format-ignore-file
// (the snippets stand here line for line as the README shows them)
import Foundation
import StripeUsage
import Testing
import UsageBilling
import UsageBillingCurl
import UsageBillingProviders
import UsageReconciliation
import UsageRouting
import UsageSpool

/// The README's Swift snippets, compiled here as they are written there: renaming an API they
/// use breaks this build. `readmeShowsTheseSnippets` checks the README still shows them.
enum ReadmeSnippets {
    static func useItFromSwift() async throws {

        let http = try CurlHTTPClient()
        let stripe = try StripeSink(
            settings: StripeSettings(
                secretKey: Secret(ProcessInfo.processInfo.environment["STRIPE_SECRET_KEY"] ?? ""),
                api: .v1,                                 // or .v2Stream for up to 100 events per request
                eventNames: ["api_request": "api_requests"],
                customers: ["acme": "cus_QrAcme0001"]),   // your id -> Stripe customer
            client: http)

        let event = UsageEvent(name: "api_request", customer: "acme", quantity: 150)   // id: UUIDv7, kept forever
        let reports = try await RetryingDeliverer(sink: stripe).deliver([event])
        switch reports[0].final {
        case .accepted, .duplicate: break                       // billed exactly once
        case .rejected(let reason): print("dead letter:", reason)  // names the field and the fix
        case .retryable, .possiblyDelivered: break              // keep it and retry later with the same id
        }
    }

    static func webhook(_ webhookBody: Data, _ pipeline: UsagePipeline) async throws -> Int {
        let report = try StripeMeterErrorReport.parse(webhookBody)   // the event's full body
        let refused = try await pipeline.spool.rejectDelivered(report.rejections, provider: "stripe")
        return refused
    }

    static func spool(_ event: UsageEvent) async throws -> UsagePipeline {
        let pipeline = try UsagePipeline(config: try RoutingConfig.load(path: "routing.yaml", registry: .standard),
                                         spoolPath: "usage.spool", client: try CurlHTTPClient())
        try await pipeline.record([event])   // returns once the event is durable, one row per destination
        try await pipeline.flush()           // delivers until everything recorded so far is final
        return pipeline
    }

    static func sharedLedger(_ config: RoutingConfig) async throws -> UsagePipeline {
        let ledger = try await openLedger("postgres://billing@db.internal:5432/usage?sslmode=verify-full")
        let pipeline = try UsagePipeline(config: config, ledger: ledger, client: try CurlHTTPClient())
        return pipeline
    }

    static func reconcile(_ config: RoutingConfig, _ pipeline: UsagePipeline, _ http: CurlHTTPClient, _ start: Date, _ end: Date) async throws {
        let report = try await Reconciler(config: config, spool: pipeline.spool, client: http)
            .run(ReconcileOptions(from: start, to: end, granularity: .day, providers: ["stripe", "orb"], tolerance: 0))
        guard report.isClean else { print(report.table()); exit(1) }
    }
}

@Suite("README")
struct ReadmeSnippetTests {
    /// Each Swift block of the README stands, line for line, in `ReadmeSnippets` (this file).
    @Test func readmeShowsTheseSnippets() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let readme = try String(contentsOf: root.appending(path: "README.md"), encoding: .utf8)
        let source = try String(contentsOf: URL(fileURLWithPath: #filePath), encoding: .utf8)
        let compiled = Set(source.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) })
        let blocks = readme.components(separatedBy: "```swift\n").dropFirst().compactMap { $0.components(separatedBy: "```").first }
        #expect(blocks.count == 5, "the README's Swift blocks changed: update ReadmeSnippets")
        for block in blocks {
            for line in block.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) where !line.isEmpty && !line.hasPrefix("import ") {
                let present = compiled.contains(line)
                #expect(present, "README line not compiled in ReadmeSnippets: \(line)")
            }
        }
    }
}
