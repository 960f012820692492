import Foundation
import HTTPTypes
import Hummingbird
import Logging
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
    public static func application(handler: IngestHandler, backlog: BacklogMonitor, registry: PrometheusCollectorRegistry?,
                                   host: String, port: Int, logger: Logger,
                                   statusPage: (@Sendable () async throws -> String)? = nil,
                                   onListening: @escaping @Sendable (Int) -> Void = { _ in }) -> some ApplicationProtocol {
        let router = Router()
        if let statusPage {
            router.get("/") { _, _ -> Response in
                do {
                    let html = try await statusPage()
                    return Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
                                    body: .init(byteBuffer: ByteBuffer(string: html)))
                } catch {
                    return reply(IngestReply(status: 503, headers: [], body: .object(["status": .string("unavailable"), "reason": .string("\(error)")])))
                }
            }
        }
        router.post("/v1/events") { request, _ -> Response in
            func early(_ answer: IngestReply) -> Response {
                IngestHandler.count(answer)
                return reply(answer)
            }
            guard handler.authorises(request.headers[.authorization]) else { return early(IngestHandler.unauthorised) }
            if let length = request.headers[.contentLength].flatMap(Int.init), length > handler.settings.maxBodyBytes {
                return early(handler.tooLarge())
            }
            var request = request
            let body: ByteBuffer
            do {
                body = try await request.collectBody(upTo: handler.settings.maxBodyBytes)
            } catch {
                return early(handler.tooLarge())
            }
            let answer = await handler.handle(body: Data(buffer: body), contentType: request.headers[.contentType],
                                              quantityProperty: request.uri.queryParameters.get("quantity_property"))
            return reply(answer)
        }
        addHealthAndMetrics(to: router, registry: registry)
        router.get("/readyz") { _, _ -> Response in
            if let problem = backlog.problem {
                return reply(IngestReply(status: 503, headers: [], body: .object(["status": .string("not ready"), "reason": .string(problem)])))
            }
            if backlog.queued > handler.settings.maxBacklog {
                return reply(IngestReply(status: 503, headers: [], body: .object([
                    "status": .string("not ready"), "reason": .string("the backlog (\(backlog.queued) rows) is above serve.max_backlog"),
                ])))
            }
            return reply(IngestReply(status: 200, headers: [], body: .object(["status": .string("ready"), "queued": .number(Double(backlog.queued))])))
        }
        return Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "usage-billing"),
                           onServerRunning: { channel in onListening(channel.localAddress?.port ?? port) }, logger: logger)
    }

    /// `GET /healthz` (the process answers) and `GET /metrics` (the registry in Prometheus text).
    static func addHealthAndMetrics(to router: Hummingbird.Router<BasicRequestContext>, registry: PrometheusCollectorRegistry?) {
        router.get("/healthz") { _, _ -> Response in
            reply(IngestReply(status: 200, headers: [], body: .object(["status": .string("ok")])))
        }
        router.get("/metrics") { _, _ -> Response in
            let text = registry?.emitToString() ?? ""
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(string: text)))
        }
    }

    static func reply(_ answer: IngestReply) -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        for (name, value) in answer.headers {
            if let field = HTTPField.Name(name) { headers[field] = value }
        }
        return Response(status: .init(code: answer.status), headers: headers, body: .init(byteBuffer: ByteBuffer(data: answer.body.encoded())))
    }
}

/// `GET /metrics` (and `/healthz`) alone, for `usage-billing worker --metrics-port`.
public enum MetricsServer {
    public static func application(registry: PrometheusCollectorRegistry, host: String, port: Int, logger: Logger,
                                   onListening: @escaping @Sendable (Int) -> Void = { _ in }) -> some ApplicationProtocol {
        let router = Router()
        IngestServer.addHealthAndMetrics(to: router, registry: registry)
        return Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "usage-billing"),
                           onServerRunning: { channel in onListening(channel.localAddress?.port ?? port) }, logger: logger)
    }
}
