import Foundation
import UsageBilling

/// The routing config file as written, decoded by ``ConfigReader``. Every key is optional here:
/// what is required, and what refers to what (a route's provider, a cutover's partner), is
/// checked after decoding by the validator, which builds ``RoutingConfig``.
struct RoutingDocument: Decodable {
    var version: ConfigVersion?
    var providers: ConfigMap<ProviderDocument>?
    var routes: ConfigList<RouteDocument>?
    var customers: CustomersDocument?
    var unrouted: RoutingConfig.Unrouted?
    /// Read by `serve` through its own document (`ServeSettings`), from the same file.
    var serve: JSONValue?
}

/// `version:`: the only format so far is 1.
struct ConfigVersion: Decodable {
    init(from decoder: any Decoder) throws {
        let value = try decoder.singleValueContainer().decode(JSONValue.self)
        guard value == .number(1) else {
            throw ConfigValueProblem("\(value) is not supported", fix: "use `version: 1`")
        }
    }
}

extension RoutingConfig.Unrouted: Decodable {
    public init(from decoder: any Decoder) throws {
        let value = try decoder.singleValueContainer().decode(JSONValue.self)
        guard let text = value.stringValue, let policy = Self(rawValue: text) else {
            throw ConfigValueProblem(
                "is \(value), not reject or dead-letter", fix: "write `unrouted: reject` or `unrouted: dead-letter`")
        }
        self = policy
    }
}

/// The settings every provider takes, handled by routing rather than by its adapter.
public struct SharedProviderSettings: Decodable, Sendable {
    /// `max_in_flight`: how many requests the provider's lanes keep in flight at once,
    /// overriding the adapter's default; nil keeps the default.
    public var maxInFlight: Int?
    /// `timeout`: how long one request may wait for its answer (`10s`, `2m`, or seconds as a
    /// number; within ``RequestTimeout/range``), overriding the kind's
    /// ``ProviderKind/requestTimeout``; nil keeps the default.
    public var timeout: Duration?
    /// `hedge`: whether a batch that has waited far past the lane's usual latency is sent again
    /// with the same ids (default true; only for providers that drop a repeated id). `false`
    /// where each request costs or is counted.
    public var hedge: Bool?

    /// The keys, which an adapter's settings never see.
    static let keys: Set<String> = Set(CodingKeys.allCases.map(\.rawValue))

    enum CodingKeys: String, CodingKey, CaseIterable {
        case maxInFlight = "max_in_flight", timeout, hedge
    }

    public init(maxInFlight: Int? = nil, timeout: Duration? = nil, hedge: Bool? = nil) {
        self.maxInFlight = maxInFlight
        self.timeout = timeout
        self.hedge = hedge
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        maxInFlight = try c.decodeIfPresent(WholeNumber<InFlightBounds>.self, forKey: .maxInFlight)?.value
        timeout = try c.decodeIfPresent(RequestTimeout.self, forKey: .timeout)?.duration
        hedge = try c.decodeIfPresent(Bool.self, forKey: .hedge)
    }

    /// The settings as written, for showing the config (`max_in_flight=64`).
    var written: [String: JSONValue] {
        var out: [String: JSONValue] = [:]
        if let maxInFlight { out[CodingKeys.maxInFlight.rawValue] = .number(Double(maxInFlight)) }
        if let timeout {
            let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
            out[CodingKeys.timeout.rawValue] = .number(seconds)
        }
        if let hedge { out[CodingKeys.hedge.rawValue] = .bool(hedge) }
        return out
    }

    enum InFlightBounds: WholeNumberBounds {
        static let range = 1...1_000
        static let fix =
            "omit it for the adapter's default, or size it to the provider's rate limit times its latency (e.g. 64)"
    }
}

/// `timeout`: between a second (below, a slow but healthy answer would be cut off) and five
/// minutes (past that, a hung request holds its slot, and for some providers its customer, that long).
public enum TimeoutBounds: DurationBounds {
    public static let range: ClosedRange<Duration> = .seconds(1) ... .seconds(300)
    public static let example = "10s"
    public static let fix = "omit it for the provider's default, or set how long one request may wait for its answer"
}

/// A provider's `timeout`.
public typealias RequestTimeout = BoundedDuration<TimeoutBounds>

/// One entry of `providers:`: its kind, the shared settings, and the adapter's own settings
/// (checked against the kind by the validator and by building its sink).
struct ProviderDocument: Decodable {
    var kind: String?
    var shared: SharedProviderSettings
    /// Everything else, environment variables substituted.
    var settings: [String: JSONValue] = [:]

    init(from decoder: any Decoder) throws {
        let c: KeyedDecodingContainer<AnyKey>
        do {
            c = try decoder.container(keyedBy: AnyKey.self)
        } catch {
            throw ConfigValueProblem(
                "must be a mapping with a kind", fix: "write it as `{ kind: <kind>, … }` with the provider's settings")
        }
        kind = try c.decodeIfPresent(String.self, forKey: AnyKey(stringValue: "kind"))
        shared = try SharedProviderSettings(from: decoder)
        for key in c.allKeys where key.stringValue != "kind" && !SharedProviderSettings.keys.contains(key.stringValue) {
            settings[key.stringValue] = try c.decode(JSONValue.self, forKey: key)
        }
    }
}

/// One entry of `routes:`. Its keys besides the fixed ones are per-provider settings
/// (`stripe: { event_name: … }`), which the validator matches against the defined providers.
struct RouteDocument: Decodable {
    var id: String?
    var events: OneOrList<String>?
    var to: String?
    var shadow: OneOrList<String>?
    var from: ConfigTime?
    var until: ConfigTime?
    var customers: ConfigList<String>?
    /// The other keys, as written.
    var others: [String: JSONValue] = [:]

    enum CodingKeys: String, CodingKey, CaseIterable {
        case id, events, to, shadow, from, until, customers
    }

    static let keys = Set(CodingKeys.allCases.map(\.rawValue))

    init(from decoder: any Decoder) throws {
        let c: KeyedDecodingContainer<CodingKeys>
        do {
            c = try decoder.container(keyedBy: CodingKeys.self)
        } catch {
            throw ConfigValueProblem("must be a mapping", fix: "write `- { events: [...], to: ... }`")
        }
        id = try c.decodeIfPresent(String.self, forKey: .id)
        events = try c.decodeIfPresent(OneOrList<String>.self, forKey: .events)
        to = try c.decodeIfPresent(String.self, forKey: .to)
        shadow = try c.decodeIfPresent(OneOrList<String>.self, forKey: .shadow)
        from = try c.decodeIfPresent(ConfigTime.self, forKey: .from)
        until = try c.decodeIfPresent(ConfigTime.self, forKey: .until)
        customers = try c.decodeIfPresent(ConfigList<String>.self, forKey: .customers)
        let all = try decoder.container(keyedBy: AnyKey.self)
        for key in all.allKeys where !Self.keys.contains(key.stringValue) {
            others[key.stringValue] = try all.decode(JSONValue.self, forKey: key)
        }
    }
}

/// `customers:`: a CSV file beside the config, or the table inline.
enum CustomersDocument: Decodable {
    case file(String)
    case inline(ConfigMap<ConfigMap<String>>)

    init(from decoder: any Decoder) throws {
        if let path = try? decoder.singleValueContainer().decode(String.self) {
            self = .file(path)
        } else if let table = try? ConfigMap<ConfigMap<String>>(from: decoder) {
            self = .inline(table)
        } else {
            throw ConfigValueProblem(
                "must be a CSV path or a mapping",
                fix: "write `customers: customers.csv` or `customers: { acme: { stripe: cus_… } }`")
        }
    }
}
