import CCurl
import Foundation
import UsageBilling

/// An ``HTTPClient`` over libcurl: curl multi handles each driven by a thread of its own
/// (``Configuration/threads``, 2 by default), so any number of concurrent `send` calls share
/// their connection pools.
///
/// - Connections are kept alive and reused (the multi handle's pool); HTTP/2 is negotiated over
///   TLS when the server offers it, and concurrent requests to one host are multiplexed on it.
/// - TLS peer and host verification are always on.
/// - Proxies come from the environment as libcurl reads them (`https_proxy`, `http_proxy`,
///   `all_proxy`, `no_proxy`).
/// - Every response header is returned, repeated names included.
/// - Cancelling the calling task aborts the transfer and throws `.cancelled`.
/// - Failures throw ``UsageBillingError`` `.transport` or `.timeout`, with `mayHaveReachedServer`
///   telling whether any request bytes were sent (deciding between "retry freely" and
///   "possibly delivered").
public final class CurlHTTPClient: HTTPClient {
    /// Client settings.
    public struct Configuration: Sendable {
        /// Time allowed to establish a connection (TCP + TLS).
        public var connectTimeout: Duration
        /// Time allowed for a whole request, unless the request sets its own.
        public var timeout: Duration
        /// Idle connections kept in the pool.
        public var maxIdleConnections: Int
        /// Maximum simultaneous connections to one host (0 = no limit; with HTTP/2 requests are
        /// multiplexed on one connection anyway).
        public var maxConnectionsPerHost: Int
        /// Whether to offer HTTP/2 (over TLS; plain-text connections stay HTTP/1.1).
        public var allowHTTP2: Bool
        /// The `User-Agent` sent unless a request sets one.
        public var userAgent: String
        /// A CA bundle path, if not the system default.
        public var caBundlePath: String?
        /// Curl threads (1–16), each driving its own multi handle and connection pool; requests
        /// take them in turn. Two by default: with many small requests in flight (Stripe v1
        /// meter events) one thread's system calls are the limit (the adapters benchmark shows
        /// the difference).
        public var threads: Int

        /// A configuration; the defaults suit a provider API over the internet.
        public init(
            connectTimeout: Duration = .seconds(10),
            timeout: Duration = .seconds(60),
            maxIdleConnections: Int = 64,
            maxConnectionsPerHost: Int = 0,
            allowHTTP2: Bool = true,
            userAgent: String = "UsageBilling/0.1 libcurl",
            caBundlePath: String? = nil,
            threads: Int = 2
        ) {
            self.connectTimeout = connectTimeout
            self.timeout = timeout
            self.maxIdleConnections = maxIdleConnections
            self.maxConnectionsPerHost = maxConnectionsPerHost
            self.allowHTTP2 = allowHTTP2
            self.userAgent = userAgent
            self.caBundlePath = caBundlePath
            self.threads = min(16, max(1, threads))
        }
    }

    /// Counters for tests and benchmarks.
    public struct Diagnostics: Sendable, Hashable {
        /// Requests submitted but not finished.
        public var inFlight: Int
        /// Requests finished (with a response or an error).
        public var completed: Int
        /// New connections libcurl opened in total (reuse keeps this low).
        public var connectionsOpened: Int
        /// Easy handles waiting for reuse.
        public var pooledHandles: Int
    }

    private let engines: [CurlEngine]
    private let turn = Turn()

    /// Starts the client and its curl thread(s).
    public init(configuration: Configuration = Configuration()) throws {
        var engines: [CurlEngine] = []
        do {
            for _ in 0..<configuration.threads { engines.append(try CurlEngine(configuration: configuration)) }
        } catch {
            for engine in engines { engine.shutdown() }  // the threads already started
            throw error
        }
        self.engines = engines
    }

    deinit { for engine in engines { engine.shutdown() } }

    /// Sends `request`; see the type's documentation for errors.
    public func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        try Task.checkCancellation()
        let engine = engines.count == 1 ? engines[0] : engines[turn.next(engines.count)]
        let transfer = Transfer(request: request)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<HTTPResponse, any Error>) in
                transfer.continuation = continuation
                engine.submit(transfer)
            }
        } onCancel: {
            engine.cancel(transfer)
        }
    }

    /// Current counters (summed over the curl threads).
    public var diagnostics: Diagnostics {
        engines.map { $0.diagnostics() }.reduce(
            Diagnostics(inFlight: 0, completed: 0, connectionsOpened: 0, pooledHandles: 0)
        ) {
            Diagnostics(
                inFlight: $0.inFlight + $1.inFlight, completed: $0.completed + $1.completed,
                connectionsOpened: $0.connectionsOpened + $1.connectionsOpened,
                pooledHandles: $0.pooledHandles + $1.pooledHandles)
        }
    }

    /// Stops the curl thread(s); requests in flight fail with `.cancelled`. Also done on deinit.
    public func shutdown() { for engine in engines { engine.shutdown() } }
}

/// Whose turn it is among the curl threads.
private final class Turn: Sendable {
    private let count = Locked(0)
    func next(_ n: Int) -> Int {
        count.with { count in
            count &+= 1
            return count % n
        }
    }
}

/// One request in flight. Fields are touched by the caller before submission and by the curl
/// thread afterwards (the engine's `shared` lock orders the hand-over); `cancelRequested` is locked.
final class Transfer: @unchecked Sendable {
    let request: HTTPRequest
    var continuation: CheckedContinuation<HTTPResponse, any Error>?
    var body = Data()
    var headers: [(name: String, value: String)] = []
    var easy: UnsafeMutableRawPointer?
    var headerList: UnsafeMutablePointer<curl_slist>?
    var id: UInt = 0
    private let cancelFlag = Locked(false)

    init(request: HTTPRequest) { self.request = request }

    var cancelRequested: Bool {
        get { cancelFlag.current }
        set { cancelFlag.with { $0 = newValue } }
    }

    func finish(_ result: Result<HTTPResponse, any Error>) {
        guard let continuation else { return }
        self.continuation = nil
        continuation.resume(with: result)
    }
}

private let curlGlobalInit: CURLcode = curl_global_init(Int(CURL_GLOBAL_DEFAULT))

private let writeCallback: ub_curl_data_callback = { pointer, size, count, userdata in
    guard let pointer, let userdata else { return 0 }
    let transfer = Unmanaged<Transfer>.fromOpaque(userdata).takeUnretainedValue()
    let length = size * count
    pointer.withMemoryRebound(to: UInt8.self, capacity: length) { transfer.body.append($0, count: length) }
    return length
}

private let headerCallback: ub_curl_data_callback = { pointer, size, count, userdata in
    guard let pointer, let userdata else { return 0 }
    let transfer = Unmanaged<Transfer>.fromOpaque(userdata).takeUnretainedValue()
    let length = size * count
    pointer.withMemoryRebound(to: UInt8.self, capacity: length) { start in
        let line = UnsafeBufferPointer(start: start, count: length)
        if line.starts(with: "HTTP/".utf8) {
            transfer.headers.removeAll()  // a new response (after 100 Continue or a redirect)
        } else if let colon = line.firstIndex(of: UInt8(ascii: ":")) {
            // Split and trimmed on the bytes, on the curl thread: Foundation's trimming went
            // through NSString for every header line.
            transfer.headers.append(
                (name: HeaderLine.trimmed(line[..<colon]), value: HeaderLine.trimmed(line[(colon + 1)...])))
        }
    }
    return length
}

/// A header line's parts without surrounding spaces, tabs, CR and LF.
enum HeaderLine {
    static func trimmed(_ bytes: Slice<UnsafeBufferPointer<UInt8>>) -> String {
        func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A }
        var lower = bytes.startIndex, upper = bytes.endIndex
        while lower < upper, isSpace(bytes[lower]) { lower += 1 }
        while upper > lower, isSpace(bytes[upper - 1]) { upper -= 1 }
        return String(decoding: bytes[lower..<upper], as: UTF8.self)
    }
}

/// Owns the multi handle and the thread that drives it.
final class CurlEngine: @unchecked Sendable {
    private let configuration: CurlHTTPClient.Configuration
    private let multi: UnsafeMutableRawPointer
    /// What callers and the curl thread hand each other.
    private struct Shared {
        var submissions: [Transfer] = []
        var cancellations: [Transfer] = []
        var stopping = false
        /// A wake-up is on its way to the curl thread and it has not yet taken the submissions:
        /// a new one rides with it instead of writing another byte to curl's wake-up socket
        /// (each costs both threads a system call).
        var wakePending = false
        var stats = CurlHTTPClient.Diagnostics(inFlight: 0, completed: 0, connectionsOpened: 0, pooledHandles: 0)
        var nextID: UInt = 1
    }
    private let shared = Locked(Shared())
    // Only touched on the curl thread.
    private var active: [UInt: Transfer] = [:]
    private var pool: [UnsafeMutableRawPointer] = []
    private let finished = DispatchSemaphore(value: 0)

    init(configuration: CurlHTTPClient.Configuration) throws {
        guard curlGlobalInit == CURLE_OK else {
            throw UsageBillingError(
                .configuration, "libcurl failed to initialise (code \(curlGlobalInit.rawValue))",
                fix: "reinstall libcurl4-openssl-dev / libcurl4")
        }
        guard let multi = curl_multi_init() else {
            throw UsageBillingError(.configuration, "curl_multi_init failed", fix: "check available memory")
        }
        self.configuration = configuration
        self.multi = multi
        _ = ub_multi_setopt_long(multi, CURLMOPT_PIPELINING, Int(CURLPIPE_MULTIPLEX))
        _ = ub_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, configuration.maxIdleConnections)
        _ = ub_multi_setopt_long(multi, CURLMOPT_MAX_HOST_CONNECTIONS, configuration.maxConnectionsPerHost)
        let thread = Thread { [self] in
            Thread.current.name = "ub-curl"  // named from inside, so top -H and perf show it
            self.run()
        }
        thread.name = "usage-billing-curl"
        thread.start()
    }

    func submit(_ transfer: Transfer) {
        let (accepted, wake): (Bool, Bool) = shared.with { s in
            guard !s.stopping else { return (false, false) }
            transfer.id = s.nextID
            s.nextID += 1
            s.submissions.append(transfer)
            s.stats.inFlight += 1
            defer { s.wakePending = true }
            return (true, !s.wakePending)
        }
        if accepted {
            if wake { curl_multi_wakeup(multi) }
        } else {
            transfer.finish(
                .failure(
                    UsageBillingError(
                        .cancelled, "the HTTP client was shut down",
                        fix: "create a new CurlHTTPClient")))
        }
    }

    func cancel(_ transfer: Transfer) {
        transfer.cancelRequested = true
        let wake: Bool = shared.with { s in
            guard !s.stopping else { return false }
            s.cancellations.append(transfer)
            return true
        }
        if wake { curl_multi_wakeup(multi) }
    }

    func shutdown() {
        let first: Bool = shared.with { s in
            if s.stopping { return false }
            s.stopping = true
            return true
        }
        guard first else { return }
        curl_multi_wakeup(multi)
        finished.wait()
    }

    func diagnostics() -> CurlHTTPClient.Diagnostics { shared.current.stats }

    // MARK: curl thread

    private func run() {
        while true {
            let (newTransfers, cancelled, stop) = shared.with { s in
                defer {
                    s.submissions.removeAll(keepingCapacity: true); s.cancellations.removeAll(keepingCapacity: true);
                    s.wakePending = false
                }
                return (s.submissions, s.cancellations, s.stopping)
            }
            for transfer in newTransfers { start(transfer) }
            for transfer in cancelled where active[transfer.id] === transfer {
                complete(
                    transfer,
                    .failure(
                        UsageBillingError(
                            .cancelled, "the request was cancelled",
                            mayHaveReachedServer: requestBytesSent(transfer) > 0)))
            }
            if stop { break }
            var running: Int32 = 0
            _ = curl_multi_perform(multi, &running)
            drainCompleted()
            var fds: Int32 = 0
            _ = curl_multi_poll(multi, nil, 0, 1000, &fds)
        }
        for transfer in Array(active.values) {
            complete(
                transfer,
                .failure(
                    UsageBillingError(
                        .cancelled, "the HTTP client was shut down",
                        mayHaveReachedServer: requestBytesSent(transfer) > 0)))
        }
        for easy in pool { curl_easy_cleanup(easy) }
        pool.removeAll()
        curl_multi_cleanup(multi)
        finished.signal()
    }

    private func start(_ transfer: Transfer) {
        if transfer.cancelRequested {
            finishWithoutHandle(transfer, .failure(UsageBillingError(.cancelled, "the request was cancelled")))
            return
        }
        guard let easy = pool.popLast() ?? curl_easy_init() else {
            finishWithoutHandle(transfer, .failure(UsageBillingError(.transport, "curl_easy_init failed")))
            return
        }
        transfer.easy = easy
        let request = transfer.request
        let userdata = Unmanaged.passUnretained(transfer).toOpaque()
        _ = ub_easy_setopt_string(easy, CURLOPT_URL, request.url)
        _ = ub_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1)
        _ = ub_easy_setopt_long(
            easy, CURLOPT_HTTP_VERSION,
            configuration.allowHTTP2 ? Int(CURL_HTTP_VERSION_2TLS) : Int(CURL_HTTP_VERSION_1_1))
        _ = ub_easy_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, milliseconds(configuration.connectTimeout))
        _ = ub_easy_setopt_long(easy, CURLOPT_TIMEOUT_MS, milliseconds(request.timeout ?? configuration.timeout))
        _ = ub_easy_setopt_long(easy, CURLOPT_SSL_VERIFYPEER, 1)
        _ = ub_easy_setopt_long(easy, CURLOPT_SSL_VERIFYHOST, 2)
        if let ca = configuration.caBundlePath { _ = ub_easy_setopt_string(easy, CURLOPT_CAINFO, ca) }
        _ = ub_easy_setopt_long(easy, CURLOPT_TCP_KEEPALIVE, 1)
        _ = ub_easy_setopt_long(easy, CURLOPT_FOLLOWLOCATION, 0)
        _ = ub_easy_setopt_string(easy, CURLOPT_ACCEPT_ENCODING, "")
        _ = ub_easy_setopt_string(easy, CURLOPT_USERAGENT, configuration.userAgent)
        _ = ub_easy_setopt_pointer(easy, CURLOPT_PRIVATE, UnsafeMutableRawPointer(bitPattern: transfer.id))
        _ = ub_easy_setopt_callback(easy, CURLOPT_WRITEFUNCTION, writeCallback)
        _ = ub_easy_setopt_pointer(easy, CURLOPT_WRITEDATA, userdata)
        _ = ub_easy_setopt_callback(easy, CURLOPT_HEADERFUNCTION, headerCallback)
        _ = ub_easy_setopt_pointer(easy, CURLOPT_HEADERDATA, userdata)

        switch request.method {
        case .get:
            _ = ub_easy_setopt_long(easy, CURLOPT_HTTPGET, 1)
        case .post:
            _ = ub_easy_setopt_long(easy, CURLOPT_POST, 1)
        default:
            if request.method.rawValue == "HEAD" { _ = ub_easy_setopt_long(easy, CURLOPT_NOBODY, 1) }
            _ = ub_easy_setopt_string(easy, CURLOPT_CUSTOMREQUEST, request.method.rawValue)
        }
        if request.method == .post || request.body != nil {
            let body = request.body ?? Data()
            _ = ub_easy_setopt_off(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.count))
            body.withUnsafeBytes { raw in
                if let base = raw.baseAddress, raw.count > 0 {
                    _ = ub_easy_setopt_pointer(easy, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: base))
                } else {
                    _ = ub_easy_setopt_string(easy, CURLOPT_COPYPOSTFIELDS, "")
                }
            }
        }

        var list: UnsafeMutablePointer<curl_slist>?
        var hasUserAgent = false
        for field in request.headers {
            if HeaderFields.sameName(field.name, "User-Agent") { hasUserAgent = true }
            list = curl_slist_append(list, "\(field.name): \(field.value)")
        }
        if hasUserAgent { _ = ub_easy_setopt_string(easy, CURLOPT_USERAGENT, nil) }
        list = curl_slist_append(list, "Expect:")  // no 100-continue round trip for large bodies
        transfer.headerList = list
        _ = ub_easy_setopt_slist(easy, CURLOPT_HTTPHEADER, list)

        active[transfer.id] = transfer
        let code = curl_multi_add_handle(multi, easy)
        if code != CURLM_OK {
            complete(
                transfer, .failure(UsageBillingError(.transport, "curl_multi_add_handle failed (\(code.rawValue))")))
        }
    }

    private func drainCompleted() {
        var remaining: Int32 = 0
        while let message = curl_multi_info_read(multi, &remaining) {
            guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle else { continue }
            let result = message.pointee.data.result
            var privatePointer: UnsafeMutablePointer<CChar>?
            _ = ub_easy_getinfo_pointer(easy, CURLINFO_PRIVATE, &privatePointer)
            let id = UInt(bitPattern: privatePointer)
            guard let transfer = active[id] else { continue }
            if result == CURLE_OK {
                var status = 0
                _ = ub_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
                let response = HTTPResponse(
                    status: status, headers: HeaderFields(transfer.headers), body: transfer.body)
                complete(transfer, .success(response))
            } else {
                complete(transfer, .failure(error(for: result, transfer: transfer)))
            }
        }
    }

    private func error(for code: CURLcode, transfer: Transfer) -> UsageBillingError {
        let sent = requestBytesSent(transfer) > 0
        let host = hostOf(transfer.request.url)
        let reason = String(cString: curl_easy_strerror(code))
        switch code {
        case CURLE_OPERATION_TIMEDOUT:
            return UsageBillingError(
                .timeout, "no complete answer from \(host) in time (\(reason))",
                fix: sent
                    ? "the request may have been applied; retry with the same idempotency key"
                    : "check that \(host) is reachable, or raise the timeout",
                mayHaveReachedServer: sent)
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY, CURLE_COULDNT_CONNECT:
            return UsageBillingError(
                .transport, "cannot connect to \(host): \(reason)",
                fix: "check the endpoint, DNS and proxy settings", mayHaveReachedServer: false)
        case CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CONNECT_ERROR, CURLE_SSL_CACERT_BADFILE:
            return UsageBillingError(
                .transport, "TLS with \(host) failed: \(reason)",
                fix: "check the system CA certificates (ca-certificates) and the endpoint",
                mayHaveReachedServer: false)
        default:
            return UsageBillingError(
                .transport, "transfer with \(host) failed: \(reason) (curl code \(code.rawValue))",
                fix: sent
                    ? "the request may have been applied; retry with the same idempotency key"
                    : "retry; the request was not sent",
                mayHaveReachedServer: sent)
        }
    }

    private func requestBytesSent(_ transfer: Transfer) -> Int {
        guard let easy = transfer.easy else { return 0 }
        var size = 0
        _ = ub_easy_getinfo_long(easy, CURLINFO_REQUEST_SIZE, &size)
        return size
    }

    private func complete(_ transfer: Transfer, _ result: Result<HTTPResponse, any Error>) {
        var connects = 0
        if let easy = transfer.easy {
            _ = ub_easy_getinfo_long(easy, CURLINFO_NUM_CONNECTS, &connects)
            curl_multi_remove_handle(multi, easy)
            curl_easy_reset(easy)
            if pool.count < max(1, configuration.maxIdleConnections) {
                pool.append(easy)
            } else {
                curl_easy_cleanup(easy)
            }
            transfer.easy = nil
        }
        if let list = transfer.headerList {
            curl_slist_free_all(list)
            transfer.headerList = nil
        }
        active[transfer.id] = nil
        let pooled = pool.count
        shared.with { s in
            s.stats.inFlight -= 1
            s.stats.completed += 1
            s.stats.connectionsOpened += connects
            s.stats.pooledHandles = pooled
        }
        transfer.finish(result)
    }

    private func finishWithoutHandle(_ transfer: Transfer, _ result: Result<HTTPResponse, any Error>) {
        shared.with { s in
            s.stats.inFlight -= 1
            s.stats.completed += 1
        }
        transfer.finish(result)
    }

    private func milliseconds(_ duration: Duration) -> Int {
        let (seconds, atto) = duration.components
        return Int(seconds) * 1000 + Int(atto / 1_000_000_000_000_000)
    }

    private func hostOf(_ url: String) -> String {
        URLComponents(string: url)?.host ?? "the server"
    }
}
