import ArgumentParser
import Foundation
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import UsageBilling
import UsageCockpit
import UsageBillingCurl
import UsageBillingProviders
import UsageRouting
import UsageServe
import UsageSpool

/// `usage-billing serve`: HTTP ingest into the spool and the delivery worker, in one process.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Take events over HTTP (POST /v1/events), make them durable in the spool, and deliver them.",
        usage: "usage-billing serve [<options>]",
        discussion: """
            One process: the ingest API and the delivery worker, in one service group. POST /v1/events takes one \
            event or an array (application/json), NDJSON (application/x-ndjson), or CloudEvents \
            (application/cloudevents+json, application/cloudevents-batch+json; ?quantity_property=NAME picks the data \
            field that is the quantity, default value), or one CloudEvent in binary mode (ce-* headers, its data the \
            body). It answers 202 only once every accepted event is durable: accepted, duplicates (an id recorded \
            before with the same payload, recorded once) and the refused ones (index, line, field, reason, fix; an id \
            reused with another payload is refused and the recorded event stands). A bad event never fails its \
            neighbours; a body of which nothing was taken answers 400. Every request needs \
            `Authorization: Bearer <token>` with a token from the config's `serve.tokens` (put them in the \
            environment: tokens: [${INGEST_TOKEN}]). A port in use or a spool another worker delivers from stops the \
            start before anything is created (exit 2).

            GET /healthz: the process is up. GET /readyz: the spool is readable and under serve.max_backlog. \
            GET /metrics: Prometheus text (ingest and delivery counters, queue depth, latencies).

            Binds 127.0.0.1 by default: run it beside each app instance, or behind a proxy that terminates TLS \
            (it speaks plain HTTP). SIGTERM or SIGINT: it stops accepting, answers what it accepted, lets the worker \
            finish its batches, and exits 0.

            Examples:
              export INGEST_TOKEN=$(openssl rand -hex 32)
              usage-billing serve -c routing.yaml --spool usage.spool
              curl -H "Authorization: Bearer $INGEST_TOKEN" \\
                -H 'Content-Type: application/json' \\
                --data '{"id":"evt-1","name":"api_request","customer":"acme",
                         "timestamp":"2026-12-06T12:00:00Z","quantity":1}' \\
                http://127.0.0.1:8480/v1/events
            """)

    @Option(name: .shortAndLong, help: "The routing config (with a serve: section).") var config: String =
        "routing.yaml"
    @OptionGroup var spoolOption: SpoolOption
    @Option(help: "Address to listen on.") var host: String = "127.0.0.1"
    @Option(help: "Port to listen on (0: any free port, printed at start).") var port: Int = 8480
    @Option(
        help:
            "A reconciliation saved with `reconcile --json`, shown on the status page (GET /); read again at each request."
    )
    var reconcile: String?

    func run() async throws {
        guard (0...65_535).contains(port) else {
            throw CLIFailure.badInput("--port \(port) is out of range. Fix: use 1 to 65535, or 0 for any free port")
        }
        if let reconcile { _ = try savedReconcile(reconcile) }
        let config = try loadConfig(config)
        let settings: ServeSettings
        do {
            settings = try ServeSettings.from(config, doors: IngestDoors.standard)
        } catch let issues as ConfigIssues {
            throw CLIFailure(
                issues,
                closing:
                    "\(issues.issues.count) problem(s) in the serve section of \(config.file); serve did not start.")
        }
        // Everything that can stop the start is checked before anything is created or announced.
        if let problem = ListenCheck.problem(host: host, port: port) {
            throw CLIFailure.badInput("\(problem)")
        }
        if !PostgresLedger.isURL(spoolOption.spool) {
            if let problem = Spool.accessProblem(path: spoolOption.spool, writing: true) {
                throw CLIFailure.badInput("\(problem)")
            }
            if let holder = Spool.workerHolder(path: spoolOption.spool) {
                throw CLIFailure.badInput(
                    "another worker, in \(holder), is already delivering from the spool \(spoolOption.spool). Fix: stop it first, or give this serve its own spool (--spool); to run several serve instances on one ledger, use a shared PostgreSQL ledger (--spool postgres://…)"
                )
            }
        }
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let spool = try await openSpool(spoolOption.spool)
        let client = try CurlHTTPClient()
        defer { client.shutdown() }
        let router = try makeRouter(config, client: client)
        let host = self.host
        let group = UsageServices.serve(
            settings: settings, ledger: spool, router: router, doors: IngestDoors.standard, host: host, port: port,
            reconcile: reconcile, registry: registry, logger: Logger(label: "usage-billing.serve")
        ) { port in
            print(
                "usage-billing serve: listening on http://\(host):\(port) (POST /v1/events, GET / (status page), /healthz, /readyz, /metrics)"
            )
            fflush(nil)  // every stream: a test or a supervisor reads the port at once
        }
        do {
            try await group.run()
        } catch {
            throw CLIFailure.from(UsageServices.failure(error, host: host, port: port))
        }
        print(describe(try await spool.status()))
    }
}
