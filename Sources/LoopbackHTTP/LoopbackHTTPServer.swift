import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import UsageBilling

/// A small HTTP/1.1 server on 127.0.0.1 for tests, benchmarks and the demo. Each request is
/// handed to a handler, async or run on the event loop (``ImmediateHandler``), which answers with
/// a response or a misbehaviour (reset, hang, close). It listens on loopback only and counts
/// connections and requests.
public final class LoopbackHTTPServer: Sendable {
    /// A request as the server received it.
    public struct Request: Sendable {
        /// The HTTP method (`POST`).
        public var method: String
        /// The request target: path and query, e.g. `/v1/billing/meters?limit=10`.
        public var target: String
        /// The headers, in order, repeated names kept.
        public var headers: HeaderFields
        /// The body bytes.
        public var body: Data
        /// Which connection (1-based, in accept order) carried the request.
        public var connectionNumber: Int

        /// The path without the query.
        public var path: String {
            guard let q = target.utf8.firstIndex(of: UInt8(ascii: "?")) else { return target }
            return String(target[..<q])
        }
        /// The decoded query pairs.
        public var query: [(String, String)] {
            // Found on the UTF-8 bytes: searching the Characters cost the emulator more than
            // the rest of reading a Stripe v1 request's target.
            let utf8 = target.utf8
            guard let q = utf8.firstIndex(of: UInt8(ascii: "?")) else { return [] }
            return FormEncoding.decode(String(target[utf8.index(after: q)...]))
        }
    }

    /// How to answer a request.
    public enum Action: Sendable {
        /// Send this response (Content-Length is set for you).
        case respond(HTTPResponse)
        /// Abort the connection with a TCP reset, no response.
        case reset
        /// Close the connection cleanly without a response.
        case close
        /// Never answer (the client's timeout fires).
        case hang
    }

    /// The request handler.
    public typealias Handler = @Sendable (Request) async -> Action

    /// An answer decided on the event loop: at once, or by async work (a delay, a lookup that awaits).
    public enum Answer: Sendable {
        /// Answer now, on the event loop's thread.
        case now(Action)
        /// Answer once this returns (it runs as a task, off the event loop).
        case later(@Sendable () async -> Action)
    }

    /// A handler that runs on the event loop's thread and must not block: it answers at once
    /// or hands the work to a task. Answering at once saves each request two thread hops (to the
    /// task pool and back), which is most of what a request costs a loopback server.
    public typealias ImmediateHandler = @Sendable (Request) -> Answer

    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel
    private let counters: Locked<(connections: Int, requests: Int)>

    /// The port it listens on.
    public let port: Int
    /// `http://127.0.0.1:<port>`.
    public var baseURL: String { "http://127.0.0.1:\(port)" }
    /// Connections accepted so far.
    public var connectionsAccepted: Int { counters.with { $0.connections } }
    /// Requests received so far.
    public var requestsReceived: Int { counters.with { $0.requests } }

    /// Starts a server on 127.0.0.1, on `port` (0: an ephemeral port).
    public static func start(port requestedPort: Int = 0, threads: Int = 1, handler: @escaping Handler) async throws
        -> LoopbackHTTPServer
    {
        try await start(
            port: requestedPort, threads: threads, immediate: { request in .later { await handler(request) } })
    }

    /// Starts a server on 127.0.0.1 whose handler runs on the event loop (see ``ImmediateHandler``).
    public static func start(
        port requestedPort: Int = 0, threads: Int = 1, immediate handler: @escaping ImmediateHandler
    ) async throws -> LoopbackHTTPServer {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
        let counters = Locked((connections: 0, requests: 0))
        do {
            let channel = try await ServerBootstrap(group: group)
                .serverChannelOption(ChannelOptions.backlog, value: 512)
                .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { channel in
                    let number = counters.with { state -> Int in
                        state.connections += 1
                        return state.connections
                    }
                    return channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        try channel.pipeline.syncOperations.addHandler(
                            RequestHandler(connectionNumber: number, handler: handler, counters: counters))
                    }
                }
                .bind(host: "127.0.0.1", port: requestedPort).get()
            let port = channel.localAddress?.port ?? 0
            return LoopbackHTTPServer(group: group, channel: channel, counters: counters, port: port)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    private init(
        group: MultiThreadedEventLoopGroup, channel: any Channel,
        counters: Locked<(connections: Int, requests: Int)>, port: Int
    ) {
        self.group = group
        self.channel = channel
        self.counters = counters
        self.port = port
    }

    /// Stops listening, closes connections and the event loops.
    public func shutdown() async {
        try? await channel.close()
        try? await group.shutdownGracefully()
    }
}

private final class RequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let connectionNumber: Int
    private let handler: LoopbackHTTPServer.ImmediateHandler
    private let counters: Locked<(connections: Int, requests: Int)>
    private var head: HTTPRequestHead?
    private var body = Data()

    init(
        connectionNumber: Int, handler: @escaping LoopbackHTTPServer.ImmediateHandler,
        counters: Locked<(connections: Int, requests: Int)>
    ) {
        self.connectionNumber = connectionNumber
        self.handler = handler
        self.counters = counters
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body.removeAll(keepingCapacity: true)
        case .body(let buffer):
            buffer.withUnsafeReadableBytes { body.append(contentsOf: $0) }
        case .end:
            guard let head else { return }
            self.head = nil
            counters.with { $0.requests += 1 }
            var headers = HeaderFields()
            for (name, value) in head.headers { headers.add(name: name, value: value) }
            let request = LoopbackHTTPServer.Request(
                method: head.method.rawValue, target: head.uri, headers: headers, body: body,
                connectionNumber: connectionNumber)
            let keepAlive = head.isKeepAlive
            let version = head.version
            switch handler(request) {
            case .now(let action):
                perform(action, context: context, keepAlive: keepAlive, version: version)
            case .later(let work):
                let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                let promise = context.eventLoop.makePromise(of: LoopbackHTTPServer.Action.self)
                promise.completeWithTask { await work() }
                promise.futureResult.whenSuccess { action in
                    let (this, context) = bound.value
                    this.perform(action, context: context, keepAlive: keepAlive, version: version)
                }
            }
        }
    }

    private func perform(
        _ action: LoopbackHTTPServer.Action, context: ChannelHandlerContext,
        keepAlive: Bool, version: HTTPVersion
    ) {
        switch action {
        case .respond(let response):
            var headers = NIOHTTP1.HTTPHeaders()
            for field in response.headers where !HeaderFields.sameName(field.name, "Content-Length") {
                headers.add(name: field.name, value: field.value)
            }
            headers.replaceOrAdd(name: "Content-Length", value: String(response.body.count))
            if !keepAlive { headers.replaceOrAdd(name: "Connection", value: "close") }
            let status = HTTPResponseStatus(statusCode: response.status)
            context.write(
                wrapOutboundOut(.head(HTTPResponseHead(version: version, status: status, headers: headers))),
                promise: nil)
            if !response.body.isEmpty {
                var buffer = context.channel.allocator.buffer(capacity: response.body.count)
                buffer.writeBytes(response.body)
                context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            }
            let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
            if !keepAlive {
                let channel = context.channel
                done.whenComplete { _ in channel.close(promise: nil) }
            }
        case .reset:
            let channel = context.channel
            if let provider = channel as? any SocketOptionProvider {
                provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in channel.close(promise: nil) }
            } else {
                channel.close(promise: nil)
            }
        case .close:
            context.close(promise: nil)
        case .hang:
            break
        }
    }
}

extension HTTPResponse {
    /// A JSON response with `Content-Type: application/json`.
    public static func json(_ status: Int, _ body: JSONValue, headers: HeaderFields = [:]) -> HTTPResponse {
        var h = headers
        h["Content-Type"] = "application/json"
        return HTTPResponse(status: status, headers: h, body: body.encoded())
    }
}
