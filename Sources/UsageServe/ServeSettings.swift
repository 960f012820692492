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

    public static let keys: Set<String> = [
        "tokens", "max_body_bytes", "max_events_per_request", "max_backlog", "max_lag", "compat",
    ]

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
        guard case .object(let section)? = config.serve else {
            bad(
                "tokens", "the config has no serve section, so no token could authorise a request",
                "add `serve: { tokens: [${INGEST_TOKEN}] }` and set INGEST_TOKEN to a long random value (e.g. `openssl rand -hex 32`)"
            )
            throw ConfigIssues(issues: issues)
        }
        for unknown in section.keys.sorted() where !keys.contains(unknown) {
            bad(unknown, "unknown setting '\(unknown)'", "use \(keys.sorted().joined(separator: ", "))")
        }
        var tokens: [Secret] = []
        if case .array(let list)? = section["tokens"], !list.isEmpty {
            for (i, value) in list.enumerated() {
                if config.unsetServeVariables["serve.tokens[\(i)]"] != nil { continue }
                guard let text = value.stringValue, text.count >= 16 else {
                    bad(
                        "tokens[\(i)]", "a token must be a string of at least 16 characters",
                        "generate one with `openssl rand -hex 32` and pass it through the environment")
                    continue
                }
                tokens.append(Secret(text))
            }
        } else {
            bad("tokens", "tokens must be a non-empty list", "write `tokens: [${INGEST_TOKEN}]`")
        }
        var settings = ServeSettings(tokens: tokens)
        func number(_ key: String, _ range: ClosedRange<Int>, _ fix: String) -> Int? {
            guard let value = section[key] else { return nil }
            guard let n = value.numberValue, n == n.rounded(), range.contains(Int(n)) else {
                bad(key, "\(key) must be a whole number from \(range.lowerBound) to \(range.upperBound)", fix)
                return nil
            }
            return Int(n)
        }
        settings.maxBodyBytes =
            number("max_body_bytes", 1_024...(256 << 20), "e.g. 4194304 (4 MiB)") ?? settings.maxBodyBytes
        settings.maxEventsPerRequest =
            number("max_events_per_request", 1...1_000_000, "e.g. 10000") ?? settings.maxEventsPerRequest
        settings.maxBacklog =
            number("max_backlog", 1...1_000_000_000, "e.g. 1000000 queued rows") ?? settings.maxBacklog
        if let value = section["max_lag"] {
            if let text = value.stringValue, let lag = DurationText.parse(text), lag >= .seconds(60) {
                settings.maxLag = lag
            } else {
                bad(
                    "max_lag", "max_lag must be a duration of a minute or more",
                    "e.g. 1h (a lane whose oldest undelivered event is older is reported by /readyz)")
            }
        }
        if let value = section["compat"] {
            settings.compat = compat(value, doors: doors, bad: bad)
        }
        guard issues.isEmpty else { throw ConfigIssues(issues: issues.sorted { ($0.line ?? 0) < ($1.line ?? 0) }) }
        return settings
    }

    /// The provider APIs `serve.compat` switches on, with their settings; each problem reported
    /// through `bad` (key under `serve.`, message, fix).
    static func compat(_ value: JSONValue, doors: [any IngestDoor], bad: (String, String, String) -> Void) -> [String:
        [String: JSONValue]]
    {
        let names = doors.map(\.prefix).sorted().joined(separator: ", ")
        guard case .object(let compat) = value else {
            bad(
                "compat", "compat must be a mapping of provider APIs",
                "write e.g. `compat: { stripe: {}, orb: { quantity_property: tokens } }` (APIs: \(names))")
            return [:]
        }
        var switchedOn: [String: [String: JSONValue]] = [:]
        for name in compat.keys.sorted() {
            guard let door = doors.first(where: { $0.prefix == name }) else {
                bad("compat.\(name)", "serve speaks no '\(name)' API", "use one of \(names)")
                continue
            }
            var entry: [String: JSONValue] = [:]
            switch compat[name] {
            case .object(let o)?: entry = o
            case .null?: break
            default:
                bad(
                    "compat.\(name)", "compat.\(name) must be a mapping (its settings, or {})",
                    "write `\(name): {}` to switch it on with its defaults")
                continue
            }
            let known = door.settingsKeys.union(["enabled"])
            var fine = true
            for unknown in entry.keys.sorted() where !known.contains(unknown) {
                bad(
                    "compat.\(name).\(unknown)", "the \(name) API has no setting '\(unknown)'",
                    "use \(known.sorted().joined(separator: ", "))")
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
