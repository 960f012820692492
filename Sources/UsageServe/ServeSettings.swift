import Foundation
import UsageBilling
import UsageRouting

/// The `serve:` section of the routing config:
///
/// ```yaml
/// serve:
///   tokens: [${INGEST_TOKEN}]      # bearer tokens a request may carry (from the environment)
///   max_body_bytes: 4194304        # larger bodies: 413
///   max_events_per_request: 10000  # more events: 413
///   max_backlog: 1000000           # queued rows above which requests get 503 + Retry-After
///   max_lag: 1h                    # /readyz fails while a lane's oldest undelivered event is older
///   compat:                        # providers' own ingest APIs, for their SDKs (see IngestDoor)
///     stripe: {}                   # on, with its default mapping keys
///     orb: { quantity_property: tokens }
/// ```
public struct ServeSettings: Sendable {
    /// The bearer tokens accepted; a request without one of them gets 401.
    public var tokens: [Secret]
    public var maxBodyBytes: Int
    public var maxEventsPerRequest: Int
    public var maxBacklog: Int
    /// How old a lane's oldest undelivered event may be before `/readyz` reports the lane stuck.
    public var maxLag: Duration
    /// The provider APIs switched on (`serve.compat`), by door prefix, with their settings.
    public var compat: [String: [String: JSONValue]] = [:]

    public init(
        tokens: [Secret], maxBodyBytes: Int = 4 << 20, maxEventsPerRequest: Int = 10_000, maxBacklog: Int = 1_000_000,
        maxLag: Duration = .seconds(3600)
    ) {
        self.tokens = tokens
        self.maxBodyBytes = maxBodyBytes
        self.maxEventsPerRequest = maxEventsPerRequest
        self.maxBacklog = maxBacklog
        self.maxLag = maxLag
    }

    /// The settings in `config`'s `serve:` section, checked in one pass: throws ``ConfigIssues``
    /// listing every problem, each with its file, line, key and fix. `doors`: the provider APIs
    /// `serve.compat` may switch on. With `requireVariables` false (`config check`), a token whose
    /// environment variable is not set is left out instead of being a problem: only `serve` reads it.
    public static func from(_ config: RoutingConfig, doors: [any IngestDoor] = [], requireVariables: Bool = true) throws
        -> ServeSettings
    {
        var issues: [ConfigIssue] = []
        func bad(_ key: String, _ message: String, _ fix: String) {
            issues.append(config.issue("serve.\(key)", message, fix))
        }
        if requireVariables {
            for (path, name) in config.unsetServeVariables.sorted(by: { $0.key < $1.key }) {
                issues.append(
                    config.issue(
                        path, "environment variable \(name) is not set",
                        "export \(name)=… (a long random value, e.g. `openssl rand -hex 32`) before `serve`"))
            }
        }
        guard let section = config.serve, section != .null else {
            bad(
                "tokens", "the config has no serve section, so no token could authorise a request",
                "add `serve: { tokens: [${INGEST_TOKEN}] }` and set INGEST_TOKEN to a long random value (e.g. `openssl rand -hex 32`)"
            )
            throw ConfigIssues(issues: issues)
        }
        let (decoded, found) = config.reader.decode(ServeDocument.self, from: section, at: "serve")
        issues += found
        var settings = ServeSettings(tokens: [])
        if let document = decoded {
            let written = document.tokens?.items ?? []
            if written.isEmpty, !issues.contains(where: { $0.key == "serve.tokens" }) {
                bad("tokens", "tokens must be a non-empty list", "write `tokens: [${INGEST_TOKEN}]`")
            }
            for (i, token) in written.enumerated() where config.unsetServeVariables["serve.tokens[\(i)]"] == nil {
                guard let token else { continue }
                guard token.count >= 16 else {
                    bad(
                        "tokens[\(i)]", "a token must be a string of at least 16 characters",
                        "generate one with `openssl rand -hex 32` and pass it through the environment")
                    continue
                }
                settings.tokens.append(Secret(token))
            }
            settings.maxBodyBytes = document.maxBodyBytes?.value ?? settings.maxBodyBytes
            settings.maxEventsPerRequest = document.maxEventsPerRequest?.value ?? settings.maxEventsPerRequest
            settings.maxBacklog = document.maxBacklog?.value ?? settings.maxBacklog
            settings.maxLag = document.maxLag?.duration ?? settings.maxLag
            if let compat = document.compat {
                settings.compat = Self.compat(compat, doors: doors, bad: bad)
            }
        }
        guard issues.isEmpty else { throw ConfigIssues(issues: issues.sorted { ($0.line ?? 0) < ($1.line ?? 0) }) }
        return settings
    }

    /// The provider APIs `serve.compat` switches on, with their settings; each problem reported
    /// through `bad` (key under `serve.`, message, fix).
    static func compat(
        _ compat: ConfigMap<JSONValue>, doors: [any IngestDoor], bad: (String, String, String) -> Void
    ) -> [String: [String: JSONValue]] {
        let names = doors.map(\.prefix).sorted()
        var switchedOn: [String: [String: JSONValue]] = [:]
        for name in compat.keys {
            guard let door = doors.first(where: { $0.prefix == name }) else {
                let (message, fix) = ConfigReader.unknownName(
                    name, among: names, "serve speaks no '\(name)' API",
                    otherwise: "use one of \(names.joined(separator: ", "))")
                bad("compat.\(name)", message, fix)
                continue
            }
            var entry: [String: JSONValue] = [:]
            switch compat.values[name] {
            case .object(let o)?: entry = o
            case .null?, nil: break
            default:
                bad(
                    "compat.\(name)", "compat.\(name) must be a mapping (its settings, or {})",
                    "write `\(name): {}` to switch it on with its defaults")
                continue
            }
            let known = door.settingsKeys.union(["enabled"])
            var fine = true
            for unknown in entry.keys.sorted() where !known.contains(unknown) {
                let (message, fix) = ConfigReader.unknownName(
                    unknown, among: known, "the \(name) API has no setting '\(unknown)'",
                    otherwise: "use \(known.sorted().joined(separator: ", "))")
                bad("compat.\(name).\(unknown)", message, fix)
                fine = false
            }
            if let enabled = entry["enabled"], enabled.boolValue == nil {
                bad(
                    "compat.\(name).enabled", "enabled must be true or false",
                    "write `enabled: false` to switch it off, or leave it out")
                fine = false
            }
            for problem in door.check(entry) {
                bad("compat.\(name).\(problem.key)", problem.message, problem.fix)
                fine = false
            }
            if fine, entry["enabled"]?.boolValue != false {
                entry["enabled"] = nil
                switchedOn[name] = entry
            }
        }
        return switchedOn
    }
}

/// The `serve:` section as written, decoded by ``ConfigReader``.
struct ServeDocument: Decodable {
    var tokens: ConfigList<String>?
    var maxBodyBytes: WholeNumber<BodyBytes>?
    var maxEventsPerRequest: WholeNumber<EventsPerRequest>?
    var maxBacklog: WholeNumber<Backlog>?
    var maxLag: BoundedDuration<Lag>?
    /// The provider APIs by name, each checked against its door.
    var compat: ConfigMap<JSONValue>?

    enum CodingKeys: String, CodingKey {
        case tokens, compat
        case maxBodyBytes = "max_body_bytes", maxEventsPerRequest = "max_events_per_request"
        case maxBacklog = "max_backlog", maxLag = "max_lag"
    }

    enum BodyBytes: WholeNumberBounds {
        static let range = 1_024...(256 << 20)
        static let fix = "e.g. 4194304 (4 MiB)"
    }

    enum EventsPerRequest: WholeNumberBounds {
        static let range = 1...1_000_000
        static let fix = "e.g. 10000"
    }

    enum Backlog: WholeNumberBounds {
        static let range = 1...1_000_000_000
        static let fix = "e.g. 1000000 queued rows"
    }

    /// `max_lag`: a minute or more.
    enum Lag: DurationBounds {
        static let range: ClosedRange<Duration> = .seconds(60) ... .seconds(365 * 86_400)
        static let example = "1h"
        static let fix = "e.g. 1h (a lane whose oldest undelivered event is older is reported by /readyz)"
    }
}
