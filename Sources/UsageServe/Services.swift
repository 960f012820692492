import Foundation
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import UsageBilling
import UsageCockpit
import UsageRouting
import UsageSpool

/// The processes' service groups, assembled once: `usage-billing serve` and `usage-billing
/// worker` run what these return, and so do the tests. SIGTERM and SIGINT (unless
/// `handlesSignals` is false) shut a group down gracefully: services stop in the reverse of
/// their order here.
public enum UsageServices {
    /// `serve`: the backlog monitor, the delivery worker and the HTTP application. On shutdown
    /// the server stops first (no new requests; those accepted are answered), then the worker
    /// (its batches finish and are marked), then the monitor.
    /// - Parameters:
    ///   - reconcile: a saved reconciliation (`reconcile --json`) the status page shows, read
    ///     again at each view.
    ///   - registry: the Prometheus registry `/metrics` renders (bootstrap the metrics system
    ///     with it first).
    public static func serve(
        settings: ServeSettings, ledger: any UsageLedger, router: Router, doors: [any IngestDoor], host: String,
        port: Int, reconcile: String?, registry: PrometheusCollectorRegistry, logger: Logger,
        handlesSignals: Bool = true, onListening: @escaping @Sendable (Int) -> Void
    ) -> ServiceGroup {
        let worker = DeliveryWorker(spool: ledger, router: router)
        let backlog = BacklogMonitor(spool: ledger, lanes: router.lanes.map(\.name), maxLag: settings.maxLag)
        let handler = IngestHandler(settings: settings, spool: ledger, router: router, backlog: backlog, logger: logger)
        let page: @Sendable () async throws -> String = {
            StatusPage(
                lanes: try await ledger.status(), history: backlog.history, historySpan: backlog.historySpan,
                reconcile: reconcile.flatMap { try? StatusPage.SavedReconcile(contentsOf: $0) }, refresh: 10,
                behindAfter: settings.maxLag
            ).render()
        }
        let app = IngestServer.application(
            handler: handler, backlog: backlog, registry: registry, host: host, port: port, logger: logger,
            statusPage: page, doors: doors, onListening: onListening)
        return ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [
                    .init(service: backlog), .init(service: DeliveryService(worker: worker)), .init(service: app),
                ],
                gracefulShutdownSignals: handlesSignals ? [.sigterm, .sigint] : [],
                logger: logger))
    }

    /// Where a worker serves `/metrics`: the port (0: any free one) on 127.0.0.1, and the
    /// registry it renders.
    public struct MetricsEndpoint: Sendable {
        public var port: Int
        public var registry: PrometheusCollectorRegistry
        public var onListening: @Sendable (Int) -> Void

        public init(port: Int, registry: PrometheusCollectorRegistry, onListening: @escaping @Sendable (Int) -> Void) {
            self.port = port
            self.registry = registry
            self.onListening = onListening
        }
    }

    /// `worker`: the delivery worker, and the metrics server when asked for. With `untilEmpty`
    /// the worker's end ends the group, the metrics server with it.
    public static func worker(
        ledger: any UsageLedger, router: Router, leaseTTL: Duration, untilEmpty: Bool, closeWindows: Bool,
        metrics: MetricsEndpoint?, logger: Logger, handlesSignals: Bool = true
    ) -> ServiceGroup {
        let worker = DeliveryWorker(spool: ledger, router: router, leaseTTL: leaseTTL)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(
                service: DeliveryService(worker: worker, untilEmpty: untilEmpty, closeOpenWindows: closeWindows),
                successTerminationBehavior: .gracefullyShutdownGroup)
        ]
        if let metrics {
            services.append(
                .init(
                    service: MetricsServer.application(
                        registry: metrics.registry, host: "127.0.0.1", port: metrics.port, logger: logger,
                        onListening: metrics.onListening)))
        }
        return ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services, gracefulShutdownSignals: handlesSignals ? [.sigterm, .sigint] : [],
                logger: logger))
    }

    /// Why a service group ended with an error, as the CLI reports it.
    public enum Failure: Error, Sendable, Equatable {
        /// The config or the ledger refuses the run (orphaned lanes, another worker): the
        /// caller's to fix; the message names the fix.
        case refused(String)
        /// The address was taken between the check and the bind.
        case addressTaken(String)
        /// Anything else: the ledger or a provider could not be reached, a service failed.
        case failed(String)
    }

    /// `error`, which ended a group listening on `host:port` (nil: not listening), as a ``Failure``.
    public static func failure(_ error: any Error, host: String? = nil, port: Int? = nil) -> Failure {
        if let error = error as? UsageBillingError, error.code == .configuration { return .refused("\(error)") }
        let text = "\(error)"
        if let host, let port, text.contains("bind(") || text.contains("Address already in use") {
            return .addressTaken(
                "cannot listen on \(host):\(port): \(ListenCheck.problem(host: host, port: port) ?? "the address was taken as serve started"). Fix: pass --port with a free port"
            )
        }
        return .failed(text)
    }
}
