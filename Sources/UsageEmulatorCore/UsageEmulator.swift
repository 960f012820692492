import Foundation
import UsageBilling
import LoopbackHTTP

/// One request as a provider emulation sees it: the path below the provider's prefix.
public struct EmulatedRequest: Sendable {
    public var method: String
    public var path: String
    public var query: [(String, String)]
    public var headers: HeaderFields
    public var body: Data

    /// The first value of a query parameter.
    public func query(_ name: String) -> String? { query.first { $0.0 == name }?.1 }
    /// Every value of a query parameter.
    public func queryAll(_ name: String) -> [String] { query.filter { $0.0 == name }.map(\.1) }
    /// The body parsed once already (by an admission check), so handling does not parse it again.
    public var parsedJSON: JSONValue??

    /// The body as JSON.
    public var json: JSONValue? { parsedJSON ?? JSONValue.parse(body) }
    /// The body as form fields.
    public var form: [String: String] { Dictionary(FormEncoding.decode(body), uniquingKeysWith: { $1 }) }
}

/// Usage a provider accepted, as the emulator's own ledger keeps it (read-back endpoints answer
/// from it, aggregated the way each provider does).
public struct AcceptedUsage: Sendable, Hashable {
    /// The provider's customer (or subscription) id.
    public var customer: String
    /// The provider's meter: event name, item price, add-on or price id.
    public var meter: String
    public var timestamp: Date
    public var quantity: Decimal
    /// The provider's dedup key, when it has one.
    public var key: String?
    /// When the provider took it (kept where the provider's rules depend on it: a provider may
    /// allow cancelling events only for a while after receiving them).
    public var receivedAt: Date? = nil
    /// The provider kind it arrived as, where one emulation serves several kinds (one API host
    /// with two ways to bill); nil when the emulation serves one.
    public var kind: String? = nil

    public init(
        customer: String, meter: String, timestamp: Date, quantity: Decimal, key: String?, receivedAt: Date? = nil,
        kind: String? = nil
    ) {
        self.kind = kind
        self.customer = customer
        self.meter = meter
        self.timestamp = timestamp
        self.quantity = quantity
        self.key = key
        self.receivedAt = receivedAt
    }
}

/// One provider host's emulation: what answers the requests under one path prefix.
public protocol EmulatedProvider: Sendable {
    /// The path prefix (`stripe`, `orb`, ...).
    var prefix: String { get }
    /// Answers a request that got through fault injection (on the server's event loop: it
    /// takes locks but never waits on anything else).
    func handle(_ request: EmulatedRequest) -> HTTPResponse
    /// The provider's own body for an injected failure.
    func injected(status: Int, retryAfter: Bool) -> HTTPResponse
    /// Everything accepted so far.
    func accepted() async -> [AcceptedUsage]
    /// Called for a write that will be handled, before any injected delay: a refusal is the
    /// answer at once (Stripe's one call per customer and meter); otherwise `finish(token)` runs
    /// once the answer is ready, so a lease spans the delay as the provider's work would.
    func admit(_ request: inout EmulatedRequest) -> Admission
    /// Ends what `admit` started.
    func finish(_ token: String)
    /// Forgets everything: accepted usage, dedup keys, meters, sessions, backfills.
    func reset()
    /// The provider's documented rate limits that apply to this write (enforced when the emulator
    /// is started with `rateLimits: true`).
    func rateLimits(for request: EmulatedRequest) -> [EmulatedRateLimit]
    /// Whether a request that is not a GET only reads (Metronome's usage query is a POST):
    /// faults and rate limits apply to writes only.
    func isRead(_ request: EmulatedRequest) -> Bool
}

/// What `EmulatedProvider.admit` decided.
public enum Admission: Sendable {
    case admitted(token: String?)
    case refused(HTTPResponse)
}

extension EmulatedProvider {
    public func admit(_ request: inout EmulatedRequest) -> Admission { .admitted(token: nil) }
    public func finish(_ token: String) {}
    public func rateLimits(for request: EmulatedRequest) -> [EmulatedRateLimit] { [] }
    public func isRead(_ request: EmulatedRequest) -> Bool { false }
}

/// A local emulator of providers' ingest, read-back and meter endpoints, on loopback (SwiftNIO),
/// with per-provider fault injection. It serves the emulations it is started with (each
/// provider's folder has one; the `UsageEmulator` module registers them all); each lives under
/// its own path prefixes, and ``endpoints`` gives the settings that point each adapter at it.
public final class UsageEmulator: Sendable {
    let server: LoopbackHTTPServer
    private let providers: [String: any EmulatedProvider]
    private let registered: [EmulationKind]
    /// The provider kinds it speaks, by routing-config kind, in registration order.
    public var kinds: [String] { registered.map(\.kind) }
    private let state:
        Locked<
            (
                faults: [String: FaultPlan], rng: [String: SeededGenerator], injected: [String: [String: Int]],
                requests: [String: Int]
            )
        >
    let seed: UInt64
    /// How far the emulator's clock runs ahead of the one it was started with: moved forward by
    /// ``advanceClock(by:)`` so a test can see a provider's time limits pass without waiting.
    private let clockOffset: Locked<TimeInterval>
    /// Whether writes past a provider's documented rate limit are answered 429 (`rate_limit` in
    /// ``statistics``' injected counts).
    public let enforcesRateLimits: Bool
    private let buckets = Locked(RateBuckets())

    /// The base URL, e.g. `http://127.0.0.1:12111`.
    public var baseURL: String { server.baseURL }
    /// The port.
    public var port: Int { server.port }

    /// Starts the emulator of `emulations` on 127.0.0.1:`port` (0: any free port).
    /// - Parameters:
    ///   - faults: per provider kind, what to inject into its write requests.
    ///   - seed: the fault dice; the same seed and request order fail the same way.
    ///   - options: each emulation's options (meters, time zones, grace periods), by type.
    ///   - rateLimits: answer 429 past each provider's documented rate limits.
    ///   - now: the emulator's clock (what the providers' time rules read).
    public static func start(
        emulations: [EmulationKind], port: Int = 0, faults: [String: FaultPlan] = [:], seed: UInt64 = 1,
        options: EmulationOptions = EmulationOptions(), rateLimits: Bool = false,
        now: @escaping @Sendable () -> Date = { Date() }
    ) async throws -> UsageEmulator {
        let offset = Locked<TimeInterval>(0)
        let context = EmulationContext(options: options, now: { now().addingTimeInterval(offset.current) })
        let list = emulations.flatMap { $0.make(context) }
        let providers = Dictionary(list.map { ($0.prefix, $0) }, uniquingKeysWith: { first, _ in first })
        let box = Box()
        let server = try await LoopbackHTTPServer.start(
            port: port, threads: 2, immediate: { request in box.emulator?.route(request) ?? .now(.close) })
        let emulator = UsageEmulator(
            server: server, providers: providers, registered: emulations, faults: faults, seed: seed,
            rateLimits: rateLimits, clockOffset: offset)
        box.emulator = emulator
        return emulator
    }

    private final class Box: Sendable {
        private let value = Locked<UsageEmulator?>(nil)
        var emulator: UsageEmulator? {
            get { value.current }
            set { value.with { $0 = newValue } }
        }
    }

    private init(
        server: LoopbackHTTPServer, providers: [String: any EmulatedProvider], registered: [EmulationKind],
        faults: [String: FaultPlan], seed: UInt64, rateLimits: Bool, clockOffset: Locked<TimeInterval>
    ) {
        self.clockOffset = clockOffset
        self.server = server
        self.registered = registered
        enforcesRateLimits = rateLimits
        self.providers = providers
        self.seed = seed
        var rngs: [String: SeededGenerator] = [:]
        for (i, prefix) in providers.keys.sorted().enumerated() {
            rngs[prefix] = SeededGenerator(seed: seed &+ UInt64(i) &* 0x9E37_79B9)
        }
        state = Locked((faults: [:], rng: rngs, injected: [:], requests: [:]))
        for (kind, plan) in faults { setFaults(kind, plan) }
    }

    /// Stops the server.
    public func shutdown() async { await server.shutdown() }

    /// Moves the emulator's clock forward: every provider's time rules (Stripe's 24-hour cancel,
    /// Orb's billing periods, Metronome's 34 days, Chargebee's invoicing) then read the later
    /// time, as if that much time had passed since the requests it holds. It never moves back.
    /// - Returns: how far ahead of the real clock the emulator now runs.
    @discardableResult
    public func advanceClock(by interval: Duration) -> Duration {
        let seconds = max(0, interval.seconds)
        return .seconds(
            clockOffset.with {
                $0 += seconds; return $0
            })
    }

    /// Replaces a provider's fault plan at run time (`chargebee` covers both its hosts).
    public func setFaults(_ kind: String, _ plan: FaultPlan) {
        let prefixes = prefixes(of: kind)
        state.with { s in
            for prefix in prefixes { s.faults[prefix] = plan }
        }
    }

    /// The path prefixes a provider kind's emulation serves.
    func prefixes(of kind: String) -> [String] { registered.first { $0.kind == kind }?.prefixes ?? [kind] }

    /// Settings that point each adapter at the emulator (merge them into a provider's settings).
    public var endpoints: [String: [String: String]] {
        Dictionary(registered.map { ($0.kind, $0.endpoints(baseURL)) }, uniquingKeysWith: { first, _ in first })
    }

    /// What a provider kind accepted (both Chargebee hosts for `chargebee`).
    public func accepted(_ kind: String) async -> [AcceptedUsage] {
        var all: [AcceptedUsage] = []
        for prefix in prefixes(of: kind) { all += await providers[prefix]?.accepted() ?? [] }
        return all.filter { $0.kind == nil || $0.kind == kind }
    }

    /// Requests a provider kind has seen (both Chargebee hosts for `chargebee`).
    public func requests(_ kind: String) -> Int {
        let seen = statistics.requests
        return prefixes(of: kind).reduce(0) { $0 + (seen[$1] ?? 0) }
    }

    /// Per provider prefix: requests seen and failures injected, by the fault spec's names (`429`, `500`, `reset`, ...).
    public var statistics: (requests: [String: Int], injected: [String: [String: Int]]) {
        state.with { ($0.requests, $0.injected) }
    }

    /// Second hosts of a provider, served by its emulation under a path marker.
    private var hostAliases: [String: EmulationKind.HostAlias] {
        Dictionary(
            registered.flatMap { $0.hostAliases.map { ($0.prefix, $0) } }, uniquingKeysWith: { first, _ in first })
    }

    /// Forgets what a provider kind (or, nil, every provider) accepted and its counters, as a
    /// fresh emulator would have it; fault plans stay.
    public func reset(_ kind: String? = nil) {
        let prefixes = kind.map(prefixes(of:)) ?? Array(providers.keys)
        for prefix in prefixes { providers[prefix]?.reset() }
        state.with { s in
            for prefix in prefixes {
                s.requests[prefix] = nil
                s.injected[prefix] = nil
            }
        }
    }

    /// The control API under `/_emulator/` (loopback only, no key), for a running `emulate`:
    /// `GET /_emulator/stats` (per provider: requests, accepted usages, their distinct keys and
    /// total quantity, faults injected); `PUT /_emulator/faults/{provider|all}` with a fault spec as the body
    /// (`429=0.1,500=0.05`), `DELETE` to clear it; `POST /_emulator/reset[?provider=…]`;
    /// `POST /_emulator/clock?advance=25h` moves the emulator's clock forward (``advanceClock(by:)``).
    private func control(_ request: LoopbackHTTPServer.Request) async -> HTTPResponse {
        let parts = Array(request.path.split(separator: "/").map(String.init).dropFirst())  // after "_emulator"
        let kinds = self.kinds
        func failure(_ status: Int, _ message: String) -> HTTPResponse {
            Reply.json(status, .object(["error": .string(message)]))
        }
        if request.method == "GET", parts == ["stats"] {
            let (requests, injected) = statistics
            var out: [String: JSONValue] = [:]
            for kind in kinds {
                let prefixes = self.prefixes(of: kind)
                var failures: [String: Double] = [:]
                for prefix in prefixes {
                    for (what, n) in injected[prefix] ?? [:] { failures[what, default: 0] += Double(n) }
                }
                let usages = await accepted(kind)
                out[kind] = .object([
                    "requests": .number(Double(prefixes.reduce(0) { $0 + (requests[$1] ?? 0) })),
                    "accepted": .number(Double(usages.count)),
                    // What a caller checks "billed once" with: distinct idempotency keys and the
                    // total quantity (a decimal string, exact).
                    "distinct_keys": .number(Double(Set(usages.compactMap(\.key)).count)),
                    "quantity": .string(DecimalFormat.plain(usages.reduce(Decimal(0)) { $0 + $1.quantity })),
                    "injected": .object(failures.mapValues(JSONValue.number)),
                ])
            }
            return Reply.json(200, .object(["providers": .object(out)]))
        }
        if request.method == "PUT" || request.method == "DELETE", parts.count == 2, parts[0] == "faults" {
            let kind = parts[1]
            guard kind == "all" || kinds.contains(kind) else {
                return failure(404, "no provider '\(kind)'; use all or one of \(kinds.joined(separator: ", "))")
            }
            let plan: FaultPlan
            do {
                plan =
                    request.method == "DELETE"
                    ? FaultPlan() : try FaultPlan.parse(String(decoding: request.body, as: UTF8.self))
            } catch {
                return failure(400, "\(error)")
            }
            for k in kind == "all" ? kinds : [kind] { setFaults(k, plan) }
            return Reply.json(
                200,
                .object([
                    "provider": .string(kind), "failure_rate": .number(plan.failureRate),
                    "delay_rate": .number(plan.delayRate),
                ]))
        }
        if request.method == "POST", parts == ["reset"] {
            let kind = request.query.first { $0.0 == "provider" }?.1
            if let kind, !kinds.contains(kind) {
                return failure(404, "no provider '\(kind)'; use one of \(kinds.joined(separator: ", "))")
            }
            reset(kind)
            return Reply.json(200, .object(["reset": .array((kind.map { [$0] } ?? kinds).map(JSONValue.string))]))
        }
        if request.method == "POST", parts == ["clock"] {
            let text = request.query.first { $0.0 == "advance" }?.1 ?? ""
            guard let interval = DurationText.parse(text), interval > .zero else {
                return failure(400, "advance '\(text)' is not a duration; use e.g. POST /_emulator/clock?advance=25h")
            }
            let ahead = advanceClock(by: interval)
            return Reply.json(200, .object(["ahead_seconds": .number(ahead.seconds)]))
        }
        return failure(
            404,
            "the control API has GET /_emulator/stats, PUT|DELETE /_emulator/faults/{provider|all} (body: a fault spec such as 429=0.1,500=0.05), POST /_emulator/reset[?provider=…] and POST /_emulator/clock?advance=25h"
        )
    }

    /// Routes a request on the event loop: answered there unless an injected delay (or the
    /// control API, which awaits the ledgers) needs a task.
    func route(_ request: LoopbackHTTPServer.Request) -> LoopbackHTTPServer.Answer {
        let path = request.path
        if path == "/_emulator" || path.hasPrefix("/_emulator/") {
            return .later { .respond(await self.control(request)) }
        }
        let parts = path.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: true)
        let alias = parts.first.flatMap { hostAliases[String($0)] }
        guard let first = parts.first, let provider = providers[alias?.emulation ?? String(first)] else {
            return .now(
                .respond(
                    Reply.json(
                        404,
                        .object([
                            "error": .string(
                                "no emulated provider at \(path); use one of /\(providers.keys.sorted().joined(separator: ", /"))"
                            )
                        ]))))
        }
        let prefix = alias?.emulation ?? String(first)
        var inner = EmulatedRequest(
            method: request.method, path: (alias?.marker ?? "") + "/" + (parts.count > 1 ? String(parts[1]) : ""),
            query: request.query,
            headers: request.headers, body: request.body)
        let isWrite = request.method != "GET" && request.method != "HEAD" && !provider.isRead(inner)
        if isWrite && enforcesRateLimits {
            let limits = provider.rateLimits(for: inner)
            if !limits.isEmpty, buckets.with({ $0.take(limits, now: .now) }) != nil {
                state.with { s in
                    s.requests[prefix, default: 0] += 1
                    s.injected[prefix, default: [:]]["rate_limit", default: 0] += 1
                }
                return .now(.respond(provider.injected(status: 429, retryAfter: true)))
            }
        }
        let (decision, delay): (FaultPlan.Decision, Duration?) = state.with { s in
            s.requests[prefix, default: 0] += 1
            guard let plan = s.faults[prefix], isWrite || plan.includesReads, plan.failureRate > 0 || plan.delayRate > 0
            else { return (.pass, nil) }
            var rng = s.rng[prefix] ?? SeededGenerator(seed: 1)
            let roll = Double(rng.next() % 1_000_000) / 1_000_000
            let delayRoll = Double(rng.next() % 1_000_000) / 1_000_000
            s.rng[prefix] = rng
            let d = plan.decide(roll)
            if d != .pass { s.injected[prefix, default: [:]][d.specName, default: 0] += 1 }
            return (d, delayRoll < plan.delayRate ? plan.delay : nil)
        }
        var lease: String?
        if isWrite, decision == .pass || decision == .timeoutAfterAccept {
            switch provider.admit(&inner) {
            case .refused(let answer): return .now(.respond(answer))
            case .admitted(let token): lease = token
            }
        }
        let admitted = inner, held = lease
        @Sendable func answer() -> LoopbackHTTPServer.Action {
            defer { if let held { provider.finish(held) } }
            switch decision {
            case .pass: return .respond(provider.handle(admitted))
            case .rateLimited(let retryAfter): return .respond(provider.injected(status: 429, retryAfter: retryAfter))
            case .serverError(let status): return .respond(provider.injected(status: status, retryAfter: false))
            case .reset: return .reset
            case .timeoutAfterAccept:
                _ = provider.handle(admitted)
                return .hang
            }
        }
        guard let delay else { return .now(answer()) }
        return .later {
            try? await Task.sleep(for: delay)
            return answer()
        }
    }
}

/// A request an emulation refuses, with the provider's error answer.
public struct Refusal: Error {
    public var response: HTTPResponse
    public init(response: HTTPResponse) { self.response = response }
}

/// Answers the emulations share.
public enum Reply {
    public static func json(_ status: Int, _ body: JSONValue, headers: HeaderFields = [:]) -> HTTPResponse {
        json(status, encoded: body.encoded(), headers: headers)
    }

    /// A JSON answer already encoded (`JSONValue.encodeObject` writes an object's members without
    /// hashing them into a dictionary first: the answer to every Stripe v1 event).
    public static func json(_ status: Int, encoded body: Data, headers: HeaderFields = [:]) -> HTTPResponse {
        var h = headers
        h["Content-Type"] = "application/json"
        return HTTPResponse(status: status, headers: h, body: body)
    }

    public static func empty(_ status: Int) -> HTTPResponse { HTTPResponse(status: status) }

    public static func decimal(_ value: JSONValue?) -> Decimal? {
        switch value {
        case .number(let n)?: return Decimal(reported: n)
        case .string(let s)?: return DecimalFormat.parse(s)
        default: return nil
        }
    }

    public static func number(_ d: Decimal) -> JSONValue { .number(NSDecimalNumber(decimal: d).doubleValue) }
}

/// Whether `headers` carry HTTP Basic credentials of an API key with an empty password (Chargebee,
/// Recurly).
public func basicAuthOK(_ headers: HeaderFields) -> Bool {
    guard let auth = headers["Authorization"], auth.hasPrefix("Basic "),
        let data = Data(base64Encoded: String(auth.dropFirst(6)))
    else { return false }
    return String(decoding: data, as: UTF8.self).hasSuffix(":") && data.count > 1
}
