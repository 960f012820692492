import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import UsageBilling
import UsageRouting
import UsageSpool

/// The HTTP face of `usage-billing serve`, on Hummingbird: `POST /v1/events` (``IngestHandler``),
/// `GET /healthz` (the process is up), `GET /readyz` (the spool is readable and under its
/// backlog bound), `GET /metrics` (Prometheus text: the worker's and the ingest's metrics) and
/// `GET /`, the status page.
public enum IngestServer {
    /// The application, bound to `host:port` (port 0: any free one; `onListening` gets the port).
    /// `statusPage`: the HTML `GET /` answers (the cockpit's status page).
    public static func application(
        handler: IngestHandler, backlog: BacklogMonitor, registry: PrometheusCollectorRegistry?,
        host: String, port: Int, logger: Logger,
        statusPage: (@Sendable () async throws -> String)? = nil, doors: [any IngestDoor] = [],
        onListening: @escaping @Sendable (Int) -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = Router(options: .autoGenerateHeadEndpoints)
        router.add(
            middleware: JSONNotFound(
                allowed: [
                    "/v1/events": ["POST"], "/healthz": ["GET", "HEAD"], "/readyz": ["GET", "HEAD"],
                    "/metrics": ["GET", "HEAD"],
                ].merging(statusPage == nil ? [:] : ["/": ["GET", "HEAD"]]) { a, _ in a }))
        // The provider APIs `serve.compat` switches on, each answering everything under its
        // prefix in its provider's own shapes (its 404 included).
        for door in doors {
            guard let doorSettings = handler.settings.compat[door.prefix] else { continue }
            let context = handler.doorContext(settings: doorSettings)
            for method in [HTTPRequest.Method.post, .get, .put, .delete, .patch] {
                router.on("/\(door.prefix)/**", method: method) { request, _ -> Response in
                    var request = request
                    guard let body = await readBody(&request, handler) else { return reply(handler.tooLarge()) }
                    let path = String(request.uri.path.dropFirst(door.prefix.count + 1))
                    let answer = await door.handle(
                        IngestDoorRequest(
                            method: request.method.rawValue, path: path.isEmpty ? "/" : path,
                            query: request.uri.queryParameters.map { (String($0.key), String($0.value)) },
                            headers: request.headers.map { ($0.name.canonicalName, $0.value) },
                            body: Data(buffer: body)), context: context)
                    Counter(label: IngestHandler.MetricNames.requests, dimensions: [("status", "\(answer.status)")])
                        .increment()
                    var headers = HTTPFields()
                    for (name, value) in answer.headers {
                        if let field = HTTPField.Name(name) { headers[field] = value }
                    }
                    return Response(
                        status: .init(code: answer.status), headers: headers,
                        body: .init(byteBuffer: ByteBuffer(data: answer.body)))
                }
            }
        }
        if let statusPage {
            router.get("/") { _, _ -> Response in
                do {
                    let html = try await statusPage()
                    return Response(
                        status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
                        body: .init(byteBuffer: ByteBuffer(string: html)))
                } catch {
                    return reply(
                        IngestReply(
                            status: 503, headers: [],
                            body: .object(["status": .string("unavailable"), "reason": .string("\(error)")])))
                }
            }
        }
        router.post("/v1/events") { request, _ -> Response in
            guard handler.authorises(request.headers[.authorization]) else {
                return counted(IngestHandler.unauthorised)
            }
            var request = request
            guard let body = await readBody(&request, handler) else { return counted(handler.tooLarge()) }
            let answer = await handler.handle(
                body: Data(buffer: body), contentType: request.headers[.contentType],
                quantityProperty: request.uri.queryParameters.get("quantity_property"),
                headers: request.headers.map { ($0.name.canonicalName, $0.value) })
            return reply(answer)
        }
        // Corrections: authorised, the body read within the limit, then the handler's answer.
        for (path, correct) in [
            ("/v1/events/:id/void", handler.void), ("/v1/events/:id/amend", handler.amend),
        ] as [(String, @Sendable (String, Data) async -> IngestReply)] {
            router.post(RouterPath(path)) { request, context -> Response in
                guard handler.authorises(request.headers[.authorization]) else {
                    return counted(IngestHandler.unauthorised)
                }
                var request = request
                guard let body = await readBody(&request, handler) else { return counted(handler.tooLarge()) }
                return reply(await correct(context.parameters.get("id") ?? "", Data(buffer: body)))
            }
        }
        addHealthAndMetrics(to: router, registry: registry)
        router.get("/readyz") { _, _ -> Response in
            if let problem = backlog.problem {
                return reply(
                    IngestReply(
                        status: 503, headers: [],
                        body: .object(["status": .string("not ready"), "reason": .string(problem)])))
            }
            if backlog.queued > handler.settings.maxBacklog {
                return reply(
                    IngestReply(
                        status: 503, headers: [],
                        body: .object([
                            "status": .string("not ready"),
                            "reason": .string("the backlog (\(backlog.queued) rows) is above serve.max_backlog"),
                        ])))
            }
            return reply(
                IngestReply(
                    status: 200, headers: [],
                    body: .object(["status": .string("ready"), "queued": .number(Double(backlog.queued))])))
        }
        return Application(
            router: router, configuration: .init(address: .hostname(host, port: port), serverName: "usage-billing"),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? port) }, logger: logger)
    }

    /// An answer given before the handler saw the request (401, 413), counted as the handler
    /// counts its own.
    static func counted(_ answer: IngestReply) -> Response {
        IngestHandler.count(answer)
        return reply(answer)
    }

    /// The request's body, or nil when it is over ``ServeSettings/maxBodyBytes`` (told by its
    /// Content-Length before reading, or found while reading).
    static func readBody(_ request: inout Request, _ handler: IngestHandler) async -> ByteBuffer? {
        let limit = handler.settings.maxBodyBytes
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit { return nil }
        return try? await request.collectBody(upTo: limit)
    }

    /// `GET /healthz` (the process answers) and `GET /metrics` (the registry in Prometheus text).
    static func addHealthAndMetrics(
        to router: Hummingbird.Router<BasicRequestContext>, registry: PrometheusCollectorRegistry?
    ) {
        router.get("/healthz") { _, _ -> Response in
            reply(IngestReply(status: 200, headers: [], body: .object(["status": .string("ok")])))
        }
        router.get("/metrics") { _, _ -> Response in
            let text = MetricsHelp.annotate(registry?.emitToString() ?? "")
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(string: text)))
        }
    }

    static func reply(_ answer: IngestReply) -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        for (name, value) in answer.headers {
            if let field = HTTPField.Name(name) { headers[field] = value }
        }
        return Response(
            status: .init(code: answer.status), headers: headers,
            body: .init(byteBuffer: ByteBuffer(data: answer.body.encoded())))
    }
}

/// `GET /metrics` (and `/healthz`) alone, for `usage-billing worker --metrics-port`.
public enum MetricsServer {
    public static func application(
        registry: PrometheusCollectorRegistry, host: String, port: Int, logger: Logger,
        onListening: @escaping @Sendable (Int) -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = Router(options: .autoGenerateHeadEndpoints)
        router.add(middleware: JSONNotFound(allowed: ["/healthz": ["GET", "HEAD"], "/metrics": ["GET", "HEAD"]]))
        IngestServer.addHealthAndMetrics(to: router, registry: registry)
        return Application(
            router: router, configuration: .init(address: .hostname(host, port: port), serverName: "usage-billing"),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? port) }, logger: logger)
    }
}

/// Answers a request no route takes in JSON: 405 with `Allow` when the path exists under another
/// method (`GET /v1/events`), else 404 naming the paths there are.
struct JSONNotFound<Context: RequestContext>: RouterMiddleware {
    /// Path → the methods it takes.
    let allowed: [String: [String]]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            let path = request.uri.path
            if let methods = allowed[path] {
                return IngestServer.reply(
                    IngestHandler.error(
                        405, "method_not_allowed", "\(path) does not take \(request.method.rawValue)",
                        fix: "use \(methods.joined(separator: " or ")) \(path)",
                        headers: [("Allow", methods.joined(separator: ", "))]))
            }
            let paths = allowed.keys.sorted().map { "\(allowed[$0]?.first ?? "GET") \($0)" }.joined(separator: ", ")
            return IngestServer.reply(
                IngestHandler.error(
                    404, "not_found", "there is nothing at \(path)", fix: "this server answers \(paths)"))
        }
    }
}

/// The `# HELP` line of every metric this package exports. The Prometheus factory behind
/// swift-metrics registers metrics without help text, so `/metrics` adds it to the text.
public enum MetricsHelp {
    /// Metric name → help text.
    public static let texts: [String: String] = [
        IngestHandler.MetricNames.requests: "Ingest requests answered, by HTTP status.",
        IngestHandler.MetricNames.events:
            "Ingested events by result: accepted (new), duplicate (id recorded before with the same payload), refused, id_reused (id recorded before with another payload).",
        IngestHandler.MetricNames.duration: "Seconds from an ingest request's body to its answer (the events durable).",
        DeliveryWorker.MetricNames.deliveries:
            "Delivery outcomes per lane: accepted, duplicate, rejected, retryable, possibly_delivered.",
        DeliveryWorker.MetricNames.deadLetters:
            "Rows made dead letters, per lane and reason code (unrouted events kept by serve included).",
        DeliveryWorker.MetricNames.queueDepth: "Queued rows per lane.",
        DeliveryWorker.MetricNames.deliveryDuration: "Seconds one delivery call to the provider took, per lane.",
        DeliveryWorker.MetricNames.hedges: "Batches resent after waiting past the lane's hedge delay.",
        DeliveryWorker.MetricNames.hedgeWins: "Hedged resends answered before the first send.",
    ]

    /// `text` with a `# HELP` line before each `# TYPE` line that has none (a name without a
    /// text gets one naming it, so no metric is left without).
    public static func annotate(_ text: String) -> String {
        var out: [Substring] = []
        var helped = Set<Substring>()
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        for line in lines where line.hasPrefix("# HELP ") {
            if let name = line.dropFirst(7).split(separator: " ").first { helped.insert(name) }
        }
        for line in lines {
            if line.hasPrefix("# TYPE "), let name = line.dropFirst(7).split(separator: " ").first,
                !helped.contains(name)
            {
                out.append("# HELP \(name) \(texts[String(name)] ?? "UsageBilling metric \(name).")")
                helped.insert(name)
            }
            out.append(line)
        }
        return out.joined(separator: "\n")
    }
}
