import Foundation
import UsageBilling
import UsageBillingTesting

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
    var parsedJSON: JSONValue??

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
    /// When the provider took it (kept where the provider's rules depend on it: Stripe cancels
    /// events up to 24 hours after receiving them).
    public var receivedAt: Date? = nil
}

/// One provider's emulation.
protocol EmulatedProvider: Sendable {
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
}

/// What `EmulatedProvider.admit` decided.
enum Admission {
    case admitted(token: String?)
    case refused(HTTPResponse)
}

extension EmulatedProvider {
    func admit(_ request: inout EmulatedRequest) -> Admission { .admitted(token: nil) }
    func finish(_ token: String) {}
    func rateLimits(for request: EmulatedRequest) -> [EmulatedRateLimit] { [] }
}

/// A local emulator of the seven providers' ingest, read-back and meter endpoints, on loopback
/// (SwiftNIO), with per-provider fault injection. Each provider lives under its own prefix:
/// `/stripe` (and `/stripe-meter-events` for the v2 stream), `/orb/v1`, `/metronome`, `/openmeter`, `/chargebee`, `/chargebee-ingest`,
/// `/recurly`, `/paddle`; ``endpoints`` gives the settings that point each adapter at it.
public final class UsageEmulator: Sendable {
    /// The providers the emulator speaks, by routing-config kind.
    public static let kinds = ["stripe", "orb", "metronome", "openmeter", "chargebee", "recurly", "paddle"]

    let server: LoopbackHTTPServer
    private let providers: [String: any EmulatedProvider]
    private let state: Locked<(faults: [String: FaultPlan], rng: [String: SeededGenerator], injected: [String: [String: Int]], requests: [String: Int])>
    let seed: UInt64
    /// Whether writes past a provider's documented rate limit are answered 429 (`rate_limit` in
    /// ``statistics``' injected counts).
    public let enforcesRateLimits: Bool
    private let buckets = Locked(RateBuckets())

    /// The base URL, e.g. `http://127.0.0.1:12111`.
    public var baseURL: String { server.baseURL }
    /// The port.
    public var port: Int { server.port }

    /// Starts the emulator on 127.0.0.1:`port` (0: any free port).
    /// - Parameters:
    ///   - faults: per provider kind, what to inject into its write requests.
    ///   - seed: the fault dice; the same seed and request order fail the same way.
    ///   - meterValueProperties: per meter (event type) name or event pattern (`storage_*`), the
    ///     property OpenMeter and Metronome meters sum (default `quantity`, and `value` for
    ///     OpenMeter). ``EmulatedMeters`` derives it from a routing config.
    ///   - orbTimeZones: per Orb external customer id, the IANA time zone Orb cuts its days in
    ///     (default UTC).
    ///   - stripeMeters: the Stripe meters that exist, by event name; nil (the default) makes a
    ///     meter for every event name seen. With a list, an unknown event name is refused as
    ///     Stripe does (v2 `400 no_meter`; v1 and the stream take it and count nothing).
    ///   - orbGracePeriod: the Orb account's grace period: an event older than it fails Orb's
    ///     validation unless it comes through a backfill (nil: not checked, as Orb documents no
    ///     default).
    ///   - now: the emulator's clock (Chargebee's 12-hour window, Stripe's 24 hours to cancel,
    ///     Orb's grace period and backfill times are read from it).
    public static func start(port: Int = 0, faults: [String: FaultPlan] = [:], seed: UInt64 = 1,
                             meterValueProperties: [String: String] = [:], orbTimeZones: [String: String] = [:],
                             stripeMeters: [String]? = nil, orbGracePeriod: Duration? = nil, rateLimits: Bool = false,
                             now: @escaping @Sendable () -> Date = { Date() }) async throws -> UsageEmulator {
        let list: [any EmulatedProvider] = [
            StripeEmulation(now: now, meters: stripeMeters), OrbEmulation(timeZones: orbTimeZones, gracePeriod: orbGracePeriod, now: now), MetronomeEmulation(valueProperties: MeterValueProperties(meterValueProperties)),
            OpenMeterEmulation(valueProperties: MeterValueProperties(meterValueProperties)), ChargebeeEmulation(now: now), ChargebeeIngestEmulation(now: now),
            RecurlyEmulation(), PaddleEmulation(),
        ]
        let providers = Dictionary(uniqueKeysWithValues: list.map { ($0.prefix, $0) })
        let box = Box()
        let server = try await LoopbackHTTPServer.start(port: port, threads: 2, immediate: { request in box.emulator?.route(request) ?? .now(.close) })
        let emulator = UsageEmulator(server: server, providers: providers, faults: faults, seed: seed, rateLimits: rateLimits)
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

    private init(server: LoopbackHTTPServer, providers: [String: any EmulatedProvider], faults: [String: FaultPlan], seed: UInt64, rateLimits: Bool) {
        self.server = server
        enforcesRateLimits = rateLimits
        self.providers = providers
        self.seed = seed
        var rngs: [String: SeededGenerator] = [:]
        for (i, prefix) in providers.keys.sorted().enumerated() { rngs[prefix] = SeededGenerator(seed: seed &+ UInt64(i) &* 0x9E37_79B9) }
        state = Locked((faults: [:], rng: rngs, injected: [:], requests: [:]))
        for (kind, plan) in faults { setFaults(kind, plan) }
    }

    /// Stops the server.
    public func shutdown() async { await server.shutdown() }

    /// Replaces a provider's fault plan at run time (`chargebee` covers both its hosts).
    public func setFaults(_ kind: String, _ plan: FaultPlan) {
        state.with { s in
            for prefix in Self.prefixes(of: kind) { s.faults[prefix] = plan }
        }
    }

    static func prefixes(of kind: String) -> [String] {
        switch kind {
        case "chargebee": ["chargebee", "chargebee-ingest"]
        case "orb": ["orb"]
        default: [kind]
        }
    }

    /// Settings that point each adapter at the emulator (merge them into a provider's settings).
    public var endpoints: [String: [String: String]] {
        let b = baseURL
        return [
            "stripe": ["endpoint": "\(b)/stripe", "meter_events_endpoint": "\(b)/stripe-meter-events"], "orb": ["endpoint": "\(b)/orb/v1"], "metronome": ["endpoint": "\(b)/metronome"],
            "openmeter": ["endpoint": "\(b)/openmeter"],
            "chargebee": ["endpoint": "\(b)/chargebee", "ingest_endpoint": "\(b)/chargebee-ingest"],
            "recurly": ["endpoint": "\(b)/recurly"], "paddle": ["endpoint": "\(b)/paddle"],
        ]
    }

    /// What a provider kind accepted (both Chargebee hosts for `chargebee`).
    public func accepted(_ kind: String) async -> [AcceptedUsage] {
        var all: [AcceptedUsage] = []
        for prefix in Self.prefixes(of: kind) { all += await providers[prefix]?.accepted() ?? [] }
        return all
    }

    /// Requests a provider kind has seen (both Chargebee hosts for `chargebee`).
    public func requests(_ kind: String) -> Int {
        let seen = statistics.requests
        return Self.prefixes(of: kind).reduce(0) { $0 + (seen[$1] ?? 0) }
    }

    /// Per provider prefix: requests seen and failures injected, by the fault spec's names (`429`, `500`, `reset`, ...).
    public var statistics: (requests: [String: Int], injected: [String: [String: Int]]) {
        state.with { ($0.requests, $0.injected) }
    }

    /// Second hosts of a provider, served by its emulation under a path marker.
    static let hostAliases: [String: (prefix: String, marker: String)] = ["stripe-meter-events": ("stripe", StripeEmulation.meterEventsHost)]

    /// Forgets what a provider kind (or, nil, every provider) accepted and its counters, as a
    /// fresh emulator would have it; fault plans stay.
    public func reset(_ kind: String? = nil) {
        let prefixes = kind.map(Self.prefixes(of:)) ?? Array(providers.keys)
        for prefix in prefixes { providers[prefix]?.reset() }
        state.with { s in
            for prefix in prefixes {
                s.requests[prefix] = nil
                s.injected[prefix] = nil
            }
        }
    }

    /// The control API under `/_emulator/` (loopback only, no key), for a running `emulate`:
    /// `GET /_emulator/stats`; `PUT /_emulator/faults/{provider|all}` with a fault spec as the body
    /// (`429=0.1,500=0.05`), `DELETE` to clear it; `POST /_emulator/reset[?provider=…]`.
    private func control(_ request: LoopbackHTTPServer.Request) async -> HTTPResponse {
        let parts = Array(request.path.split(separator: "/").map(String.init).dropFirst())  // after "_emulator"
        let kinds = Self.kinds
        func failure(_ status: Int, _ message: String) -> HTTPResponse { Reply.json(status, .object(["error": .string(message)])) }
        if request.method == "GET", parts == ["stats"] {
            let (requests, injected) = statistics
            var out: [String: JSONValue] = [:]
            for kind in kinds {
                let prefixes = Self.prefixes(of: kind)
                var failures: [String: Double] = [:]
                for prefix in prefixes { for (what, n) in injected[prefix] ?? [:] { failures[what, default: 0] += Double(n) } }
                out[kind] = .object([
                    "requests": .number(Double(prefixes.reduce(0) { $0 + (requests[$1] ?? 0) })),
                    "accepted": .number(Double(await accepted(kind).count)),
                    "injected": .object(failures.mapValues(JSONValue.number)),
                ])
            }
            return Reply.json(200, .object(["providers": .object(out)]))
        }
        if request.method == "PUT" || request.method == "DELETE", parts.count == 2, parts[0] == "faults" {
            let kind = parts[1]
            guard kind == "all" || kinds.contains(kind) else { return failure(404, "no provider '\(kind)'; use all or one of \(kinds.joined(separator: ", "))") }
            let plan: FaultPlan
            do {
                plan = request.method == "DELETE" ? FaultPlan() : try FaultPlan.parse(String(decoding: request.body, as: UTF8.self))
            } catch {
                return failure(400, "\(error)")
            }
            for k in kind == "all" ? kinds : [kind] { setFaults(k, plan) }
            return Reply.json(200, .object(["provider": .string(kind), "failure_rate": .number(plan.failureRate), "delay_rate": .number(plan.delayRate)]))
        }
        if request.method == "POST", parts == ["reset"] {
            let kind = request.query.first { $0.0 == "provider" }?.1
            if let kind, !kinds.contains(kind) { return failure(404, "no provider '\(kind)'; use one of \(kinds.joined(separator: ", "))") }
            reset(kind)
            return Reply.json(200, .object(["reset": .array((kind.map { [$0] } ?? kinds).map(JSONValue.string))]))
        }
        return failure(404, "the control API has GET /_emulator/stats, PUT|DELETE /_emulator/faults/{provider|all} (body: a fault spec such as 429=0.1,500=0.05) and POST /_emulator/reset[?provider=…]")
    }

    /// Routes a request on the event loop: answered there unless an injected delay (or the
    /// control API, which awaits the ledgers) needs a task.
    func route(_ request: LoopbackHTTPServer.Request) -> LoopbackHTTPServer.Answer {
        let path = request.path
        if path == "/_emulator" || path.hasPrefix("/_emulator/") { return .later { .respond(await self.control(request)) } }
        let parts = path.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: true)
        let alias = parts.first.flatMap { Self.hostAliases[String($0)] }
        guard let first = parts.first, let provider = providers[alias?.prefix ?? String(first)] else {
            return .now(.respond(Reply.json(404, .object(["error": .string("no emulated provider at \(path); use one of /\(providers.keys.sorted().joined(separator: ", /"))")]))))
        }
        let prefix = alias?.prefix ?? String(first)
        var inner = EmulatedRequest(method: request.method, path: (alias?.marker ?? "") + "/" + (parts.count > 1 ? String(parts[1]) : ""), query: request.query,
                                    headers: request.headers, body: request.body)
        let isWrite = request.method != "GET" && request.method != "HEAD"
            && !(prefix == "metronome" && inner.path == "/v1/usage")  // Metronome's read-back is a POST
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
            guard isWrite, let plan = s.faults[prefix], plan.failureRate > 0 || plan.delayRate > 0 else { return (.pass, nil) }
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
struct Refusal: Error { var response: HTTPResponse }

/// Shared answers.
enum Reply {
    static func json(_ status: Int, _ body: JSONValue, headers: HeaderFields = [:]) -> HTTPResponse {
        json(status, encoded: body.encoded(), headers: headers)
    }

    /// A JSON answer already encoded (`JSONValue.encodeObject` writes an object's members without
    /// hashing them into a dictionary first: the answer to every Stripe v1 event).
    static func json(_ status: Int, encoded body: Data, headers: HeaderFields = [:]) -> HTTPResponse {
        var h = headers
        h["Content-Type"] = "application/json"
        return HTTPResponse(status: status, headers: h, body: body)
    }

    static func empty(_ status: Int) -> HTTPResponse { HTTPResponse(status: status) }

    static func decimal(_ value: JSONValue?) -> Decimal? {
        switch value {
        case .number(let n)?: return Decimal(reported: n)
        case .string(let s)?: return DecimalFormat.parse(s)
        default: return nil
        }
    }

    static func number(_ d: Decimal) -> JSONValue { .number(NSDecimalNumber(decimal: d).doubleValue) }
}

