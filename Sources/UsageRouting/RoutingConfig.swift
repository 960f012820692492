import Foundation

/// A validated routing config: providers, routes (exact and glob event names, primary and
/// shadows, time cutovers, customer cohorts), the customer-id table and the unrouted policy.
///
/// ```yaml
/// version: 1
/// providers:
///   stripe: { kind: stripe, secret_key: ${STRIPE_SECRET_KEY} }
///   orb:    { kind: orb, api_key: ${ORB_API_KEY} }
/// routes:
///   - events: ["api_request", "storage.*"]
///     to: stripe
///     shadow: orb
///     until: 2026-12-01T00:00:00Z        # cutover: stripe before, orb from then on
///     stripe: { event_name: api_calls }
///   - events: ["api_request", "storage.*"]
///     to: orb
///     from: 2026-12-01T00:00:00Z
///   - events: ["api_request"]
///     customers: [acme]                  # a cohort already on orb
///     to: orb
/// customers: customers.csv               # customer,stripe,orb
/// unrouted: reject                       # or dead-letter
/// ```
public struct RoutingConfig: Sendable {
    /// A configured provider.
    public struct Provider: Sendable {
        /// Its name in the config (`stripe`).
        public var name: String
        /// Its kind.
        public var kind: ProviderKind
        /// Its adapter's settings (without `kind` and the ``shared`` settings), environment
        /// variables substituted.
        public var settings: [String: JSONValue]
        /// The settings every provider takes (`max_in_flight`, `timeout`, `hedge`).
        public var shared = SharedProviderSettings()

        /// See ``SharedProviderSettings/maxInFlight``.
        public var maxInFlight: Int? { shared.maxInFlight }
        /// See ``SharedProviderSettings/timeout``.
        public var timeout: Duration? { shared.timeout }
        /// See ``SharedProviderSettings/hedge``; true unless set to false.
        public var hedges: Bool { shared.hedge ?? true }
    }

    /// One route.
    public struct Route: Sendable {
        /// 0-based position in `routes`: where the file has it now, which changes with every edit
        /// above it, so nothing durable is keyed by it (lanes use ``id``).
        public var index: Int
        /// The route's identity, which names its lanes (`<provider>/<id>`): the `id:` the config
        /// gives it, or one derived from what the route takes (``derivedID(patterns:cohort:)``),
        /// never from its position, so reordering routes or inserting one leaves it unchanged.
        public var id: String
        /// Whether ``id`` was written in the config (`id:`) rather than derived.
        public var hasExplicitID: Bool
        /// The event names it takes.
        public var patterns: [EventPattern]
        /// The primary provider.
        public var primary: String
        /// Shadow providers (dual-write; they never block the primary).
        public var shadows: [String]
        /// Active from this instant (inclusive).
        public var from: Date?
        /// Active until this instant (exclusive).
        public var until: Date?
        /// Only these customers, when set (a cohort override).
        public var cohort: Set<String>?
        /// Per-provider settings overrides for this route (event names, value keys, ...).
        public var overrides: [String: [String: JSONValue]]

        /// The providers it sends to: the primary, then the shadows.
        public var providers: [String] { [primary] + shadows }

        /// The route's lane for `provider`.
        public func lane(_ provider: String) -> Lane { Lane(provider: provider, route: id) }

        /// The identity of a route without an `id:`: its event patterns, sorted and joined with
        /// `+` (`api_request+storage.*`), and for a cohort `@` and a hash of its customer ids
        /// (customer ids stay out of lane names, which appear in logs and metrics). Long pattern
        /// lists keep their first pattern and a hash of the rest.
        public static func derivedID(patterns: [String], cohort: Set<String>?) -> String {
            let sorted = Array(Set(patterns)).sorted()
            var id = sorted.joined(separator: "+")
            if id.count > 64, let first = sorted.first {
                id = first + "+" + StableHash.hex(sorted.dropFirst().joined(separator: "\u{1F}"))
            }
            if let cohort { id += "@" + StableHash.hex(cohort.sorted().joined(separator: "\u{1F}")) }
            return id
        }

        /// Whether the route takes `event`.
        public func takes(_ event: UsageEvent) -> Bool {
            patterns.contains { $0.matches(event.name) }
                && from.map { event.timestamp >= $0 } ?? true
                && until.map { event.timestamp < $0 } ?? true
                && cohort.map { $0.contains(event.customer) } ?? true
        }

        /// How specific the route is for `name`: cohort routes first, then the most specific pattern.
        func rank(for name: String) -> (Int, Int, Int) {
            (cohort == nil ? 0 : 1, patterns.filter { $0.matches(name) }.map(\.specificity).max() ?? 0, -index)
        }
    }

    /// What to do with an event no route takes.
    public enum Unrouted: String, Sendable {
        /// Refuse it (the caller sees a rejection).
        case reject
        /// Keep it as a dead letter to route later.
        case deadLetter = "dead-letter"
    }

    /// Where one event goes.
    public struct Decision: Sendable, Hashable {
        /// The route that took it.
        public var route: Int
        /// The primary provider.
        public var primary: String
        /// Shadow providers.
        public var shadows: [String]

        /// A decision.
        public init(route: Int, primary: String, shadows: [String]) {
            self.route = route
            self.primary = primary
            self.shadows = shadows
        }
    }

    /// The config file.
    public var file: String
    /// Providers by name.
    public var providers: [String: Provider]
    /// Routes, in file order.
    public var routes: [Route]
    /// Your customer id → provider name → that provider's customer id.
    public var customers: [String: [String: String]]
    /// The unrouted policy.
    public var unrouted: Unrouted
    /// Key paths whose values came from environment variables; shown masked like secrets.
    public var environmentKeys: Set<String> = []
    /// The `serve:` section as written (`usage-billing serve` reads and checks it: tokens,
    /// limits); nil when the config has none.
    public var serve: JSONValue?
    /// Key paths under `serve:` whose environment variable is not set, with the variable's name.
    public var unsetServeVariables: [String: String] = [:]
    /// The line of every key path in the file (`serve.compat.orb`), for problems found after
    /// loading (the `serve:` section is checked by the server's own settings).
    public internal(set) var lines: [String: Int] = [:]
    /// What the config holds that this config does not use but is not wrong (a customer table's
    /// column for a provider another config defines); the CLI prints them as warnings.
    public var warnings: [ConfigIssue] = []

    /// Provider secrets whose environment variable is not set (key path → variable), when the
    /// config was loaded for a command that sends nothing; they hold the kind's placeholder.
    public var unsetSecrets: [String: String] = [:]

    /// The provider kinds the config was checked against (its registry's names).
    public var kindNames: [String] = []

    /// The provider kind of a lane's provider name: the config's provider of that name, else a
    /// kind named like it (`orb`, `stripe-live` → `stripe`), else nil. A lane the config no longer
    /// has keeps only its name, so this is how its kind is told.
    public func kindName(ofProvider name: String) -> String? {
        if let kind = providers[name]?.kind.name { return kind }
        return kindNames.sorted { $0.count > $1.count }.first {
            name == $0 || name.hasPrefix($0 + "-") || name.hasPrefix($0 + "_") || name.hasPrefix($0)
        }
    }

    /// Whether a provider setting is shown masked: a declared secret, or a value from the environment.
    public func isMasked(provider: String, key: String) -> Bool {
        (providers[provider]?.kind.secretKeys.contains(key) ?? false)
            || environmentKeys.contains("providers.\(provider).\(key)")
    }

    /// The route a lane belongs to, if the config has that lane.
    public func route(of lane: Lane) -> Route? {
        routes.first { $0.id == lane.route && $0.providers.contains(lane.provider) }
    }

    /// Every lane of the config, in route order (primary, then shadows).
    public var lanes: [Lane] { routes.flatMap { route in route.providers.map(route.lane) } }

    /// The route an event takes, or `nil` when none does.
    public func decide(_ event: UsageEvent) -> Decision? {
        let matching = routes.filter { $0.takes(event) }
        guard let best = matching.max(by: { $0.rank(for: event.name) < $1.rank(for: event.name) }) else { return nil }
        return Decision(route: best.index, primary: best.primary, shadows: best.shadows)
    }

    /// The settings a lane's sink gets: its provider's settings, its route's overrides, and the
    /// provider's column of the customer table. Always the current config's: rows queued before
    /// an edit of a route's overrides are delivered with the edited mapping.
    public func settings(for lane: Lane) -> JSONValue {
        settings(for: lane.provider, route: route(of: lane)?.index)
    }

    /// The settings a provider's sink gets on the route at `route` (an index into ``routes``):
    /// its own settings, the route's overrides, and its column of the customer table.
    public func settings(for provider: String, route: Int?) -> JSONValue {
        var merged = providers[provider]?.settings ?? [:]
        if let route, let override = routes.first(where: { $0.index == route })?.overrides[provider] {
            merged.merge(override) { _, new in new }
        }
        let column = customers.compactMapValues { $0[provider] }
        if !column.isEmpty {
            var table =
                merged["customers"].flatMap { value -> [String: JSONValue]? in
                    if case .object(let o) = value { return o } else { return nil }
                } ?? [:]
            for (ours, theirs) in column where table[ours] == nil { table[ours] = .string(theirs) }
            merged["customers"] = .object(table)
        }
        return .object(merged)
    }

    /// The resolved routing table, secrets masked.
    public func describe() -> String {
        var lines = ["Providers:"]
        for name in providers.keys.sorted() {
            guard let p = providers[name] else { continue }
            let all = p.settings.merging(p.shared.written) { own, _ in own }
            let settings = all.keys.sorted().map { key -> String in
                let value = all[key] ?? .null
                let shown =
                    isMasked(provider: name, key: key)
                    ? Redaction.mask(value.stringValue ?? "\(value)") : value.description
                return "\(key)=\(shown)"
            }
            lines.append(
                "  \(name) (\(p.kind.name)\(p.kind.notice.map { ", \($0)" } ?? "")): \(settings.joined(separator: ", "))"
            )
        }
        lines.append("Routes:")
        for r in routes {
            var text = "  [\(r.index)] \(r.patterns.map(\.text).joined(separator: ", ")) → \(r.primary)"
            if !r.shadows.isEmpty { text += " + shadow \(r.shadows.joined(separator: ", "))" }
            if r.from != nil || r.until != nil {
                text +=
                    " during [\(r.from.map { RFC3339.format($0) } ?? "-∞"), \(r.until.map { RFC3339.format($0) } ?? "∞"))"
            }
            if let cohort = r.cohort { text += " for customers \(cohort.sorted().joined(separator: ", "))" }
            if !r.overrides.isEmpty {
                text += " with \(r.overrides.keys.sorted().map { "\($0) settings" }.joined(separator: ", "))"
            }
            text += "; lanes " + r.providers.map { r.lane($0).name }.joined(separator: ", ")
            lines.append(text)
        }
        lines.append("Customers mapped: \(customers.count)")
        lines.append("Unrouted events: \(unrouted.rawValue)")
        return lines.joined(separator: "\n")
    }

    // MARK: Loading

    /// Loads and validates `path` (YAML or JSON).
    /// - Parameter secretsNeeded: false for commands that send nothing (recording, status, lane
    ///   tools): a provider secret whose environment variable is not set then gets the kind's
    ///   placeholder and is listed in ``unsetSecrets`` instead of being an issue.
    /// - Throws: ``ConfigIssues`` listing every problem, each with line, key and fix.
    public static func load(
        path: String, registry: ProviderRegistry, secretsNeeded: Bool = true,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> RoutingConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            var isDirectory: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
            let (message, fix) =
                !exists
                ? ("no such file", "check the path, or pass the config with -c FILE")
                : isDirectory.boolValue
                    ? ("it is a directory", "pass the config file inside it")
                    : ("permission denied", "make the file readable by this user")
            throw ConfigIssues(issues: [
                ConfigIssue(file: path, line: nil, key: "", message: "cannot read the config: \(message)", fix: fix)
            ])
        }
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        return try parse(
            String(decoding: data, as: UTF8.self), file: path, directory: directory, registry: registry,
            secretsNeeded: secretsNeeded, environment: environment)
    }

    /// Parses and validates config text; `directory` resolves a relative customers CSV.
    public static func parse(
        _ text: String, file: String, directory: String, registry: ProviderRegistry, secretsNeeded: Bool = true,
        environment: [String: String]
    ) throws -> RoutingConfig {
        var v = Validator(file: file, registry: registry)
        v.secretsNeeded = secretsNeeded
        let (document, parseIssues) = ConfigDocument.parse(text, file: file, environment: environment)
        v.issues = parseIssues
        guard let document else { throw ConfigIssues(issues: v.issues) }
        v.lines = document.lines
        v.unsetProviderVariables = document.unsetProviderVariables
        let config = v.validate(document.root, directory: directory)
        if var config, v.issues.isEmpty {
            config.environmentKeys = document.fromEnvironment
            config.unsetServeVariables = document.unsetServeVariables
            config.lines = document.lines
            config.warnings = v.warnings
            config.kindNames = registry.names
            config.unsetSecrets = v.unsetSecrets
            return config
        }
        throw ConfigIssues(issues: v.issues.sorted { ($0.line ?? 0) < ($1.line ?? 0) })
    }
}

extension RoutingConfig {
    /// The decoder for further sections of the file (`serve:`), which keeps their lines.
    public var reader: ConfigReader { ConfigReader(file: file, lines: lines) }

    /// A problem at `key` (a key path such as `serve.compat.orb.quantity_property`), with the
    /// line of the key or, when it has none, of its nearest parent.
    public func issue(_ key: String, _ message: String, _ fix: String) -> ConfigIssue {
        .at(key, lines: lines, file: file, message, fix)
    }
}
