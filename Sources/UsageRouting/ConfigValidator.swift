import Foundation
import UsageBilling

/// Checks a parsed config, collecting every issue.
struct Validator {
    let file: String
    let registry: ProviderRegistry
    var lines: [String: Int] = [:]
    var issues: [ConfigIssue] = []
    var warnings: [ConfigIssue] = []
    var secretsNeeded = true
    var unsetProviderVariables: [String: String] = [:]
    var unsetSecrets: [String: String] = [:]

    init(file: String, registry: ProviderRegistry) {
        self.file = file
        self.registry = registry
    }

    mutating func issue(_ key: String, _ message: String, _ fix: String) {
        issues.append(.at(key, lines: lines, file: file, message, fix))
    }

    static let topKeys: Set<String> = ["version", "providers", "routes", "customers", "unrouted", "serve"]
    static let routeKeys: Set<String> = ["id", "events", "to", "shadow", "from", "until", "customers"]

    mutating func validate(_ root: JSONValue, directory: String) -> RoutingConfig? {
        guard case .object(let top) = root else {
            issue("", "the config must be a mapping of version, providers, routes", "start with `version: 1`")
            return nil
        }
        for key in top.keys.sorted() where !Self.topKeys.contains(key) {
            issue(key, "unknown key '\(key)'", "use only \(Self.topKeys.sorted().joined(separator: ", "))")
        }
        switch top["version"] {
        case .number(1)?: break
        case nil: issue("version", "version is missing", "add `version: 1`")
        default: issue("version", "version \(top["version"]?.description ?? "") is not supported", "use `version: 1`")
        }
        let providers = validateProviders(top["providers"])
        let customers = validateCustomers(top["customers"], providers: providers, directory: directory)
        let routes = validateRoutes(top["routes"], providers: providers)
        var unrouted = RoutingConfig.Unrouted.reject
        if let value = top["unrouted"] {
            if let text = value.stringValue, let policy = RoutingConfig.Unrouted(rawValue: text) {
                unrouted = policy
            } else {
                issue(
                    "unrouted", "unrouted is \(value), not reject or dead-letter",
                    "write `unrouted: reject` or `unrouted: dead-letter`")
            }
        }
        var config = RoutingConfig(
            file: file, providers: providers, routes: routes, customers: customers, unrouted: unrouted)
        config.serve = top["serve"]
        if issues.isEmpty { checkSinks(config) }
        return config
    }

    mutating func validateProviders(_ value: JSONValue?) -> [String: RoutingConfig.Provider] {
        guard case .object(let object)? = value, !object.isEmpty else {
            issue(
                "providers", value == nil ? "providers is missing" : "providers must be a non-empty mapping",
                "add e.g. `providers: { stripe: { kind: stripe, secret_key: ${STRIPE_SECRET_KEY} } }`")
            return [:]
        }
        var result: [String: RoutingConfig.Provider] = [:]
        for name in object.keys.sorted() {
            let key = "providers.\(name)"
            if let problem = Lane.problem(inName: name, of: "a provider name") {
                issue(
                    key, problem,
                    "rename it with letters, digits, _ . - only (it names the provider's lanes: `\(name.filter { $0.isLetter || $0.isNumber || "_.-".contains($0) })/…`)"
                )
                continue
            }
            guard case .object(var settings)? = object[name] else {
                issue(
                    key, "a provider must be a mapping with a kind",
                    "write `\(name): { kind: \(registry.names.first ?? "<kind>"), ... }`")
                continue
            }
            guard let kindName = settings.removeValue(forKey: "kind")?.stringValue else {
                issue(
                    key, "provider '\(name)' has no kind",
                    "add `kind:` with one of \(registry.names.joined(separator: ", "))")
                continue
            }
            guard let kind = registry.kind(kindName) else {
                issue(
                    "\(key).kind", "unknown provider kind '\(kindName)'",
                    "use one of \(registry.names.joined(separator: ", "))")
                continue
            }
            for (path, variable) in unsetProviderVariables.sorted(by: { $0.key < $1.key })
            where path.hasPrefix(key + ".") {
                let setting = String(path.dropFirst(key.count + 1))
                if !secretsNeeded && kind.secretKeys.contains(setting) {
                    settings[setting] = .string(kind.tools.placeholderSecret)
                    unsetSecrets[path] = variable
                } else {
                    issue(
                        path, "environment variable \(variable) is not set",
                        "export \(variable)=… before running, or put the value in the file")
                }
            }
            if let value = settings[RoutingConfig.maxInFlightKey] {
                if value.numberValue.map({ $0 == $0.rounded() && (1...1_000).contains($0) }) != true {
                    issue(
                        "\(key).\(RoutingConfig.maxInFlightKey)", "max_in_flight must be a whole number from 1 to 1000",
                        "omit it for the adapter's default, or size it to the provider's rate limit times its latency (e.g. 64)"
                    )
                }
            }
            if let value = settings[RoutingConfig.timeoutKey], RoutingConfig.parseTimeout(value) == nil {
                let shown = value.stringValue.map { "'\($0)'" } ?? value.numberValue.map { "\($0)" } ?? "\(value)"
                issue(
                    "\(key).\(RoutingConfig.timeoutKey)", "timeout \(shown) is not a duration from 1s to 5m, e.g. 10s",
                    "omit it for \(kindName)'s default (\(Int(kind.requestTimeout.seconds)) s), or set how long one request may wait for its answer"
                )
            }
            if let value = settings[RoutingConfig.hedgeKey], value.boolValue == nil {
                issue(
                    "\(key).\(RoutingConfig.hedgeKey)", "hedge must be true or false",
                    "omit it to resend a batch that waits far past the lane's usual latency (true), or write false")
            }
            for setting in settings.keys.sorted()
            where !kind.settingsKeys.contains(setting) && !RoutingConfig.routingKeys.contains(setting) {
                // The settings every provider takes (timeout, max_in_flight, hedge) are offered too.
                let all = kind.settingsKeys.union(RoutingConfig.routingKeys).sorted()
                let near = all.first {
                    Self.isNearMiss(setting, $0)
                        || $0.replacingOccurrences(of: "_", with: "")
                            == setting.lowercased().replacingOccurrences(of: "_", with: "").replacingOccurrences(
                                of: "-", with: "")
                }
                issue(
                    "\(key).\(setting)",
                    "\(kindName) has no setting '\(setting)'" + (near.map { "; did you mean '\($0)'?" } ?? ""),
                    near.map { "rename it to '\($0)'" } ?? "use one of \(all.joined(separator: ", "))")
            }
            result[name] = RoutingConfig.Provider(name: name, kind: kind, settings: settings)
        }
        return result
    }

    /// Whether `a` looks like a misspelling of `b`: at most two edits apart (case ignored).
    static func isNearMiss(_ a: String, _ b: String) -> Bool {
        let x = Array(a.lowercased()), y = Array(b.lowercased())
        guard x != y, abs(x.count - y.count) <= 2 else { return x == y && a != b }
        var previous = Array(0...y.count)
        for i in 1...max(1, x.count) where !x.isEmpty {
            var row = [i] + Array(repeating: 0, count: y.count)
            for j in 1...max(1, y.count) where !y.isEmpty {
                row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
            }
            previous = row
        }
        return previous[y.count] <= 2
    }

    mutating func validateRoutes(_ value: JSONValue?, providers: [String: RoutingConfig.Provider]) -> [RoutingConfig
        .Route]
    {
        guard case .array(let items)? = value, !items.isEmpty else {
            issue(
                "routes", value == nil ? "routes is missing" : "routes must be a non-empty list",
                "add e.g. `routes: [{ events: [\"api_request\"], to: \(providers.keys.sorted().first ?? "<provider>") }]`"
            )
            return []
        }
        var routes: [RoutingConfig.Route] = []
        let defined = providers.keys.sorted().joined(separator: ", ")
        for (index, item) in items.enumerated() {
            let key = "routes[\(index)]"
            guard case .object(let r) = item else {
                issue(key, "a route must be a mapping", "write `- { events: [...], to: ... }`")
                continue
            }
            for field in r.keys.sorted() where !Self.routeKeys.contains(field) && providers[field] == nil {
                issue(
                    "\(key).\(field)", "unknown route key '\(field)'",
                    "use \(Self.routeKeys.sorted().joined(separator: ", ")), or a provider name for its settings on this route"
                )
            }
            var patterns: [EventPattern] = []
            let texts: [JSONValue] = r["events"]?.arrayValue ?? (r["events"]?.stringValue).map { [.string($0)] } ?? []
            if texts.isEmpty {
                issue(
                    "\(key).events", "the route names no events",
                    "add `events: [\"api_request\"]` (exact names or globs like `storage.*`)")
            }
            for (i, t) in texts.enumerated() {
                guard let text = t.stringValue else {
                    issue("\(key).events[\(i)]", "an event pattern must be a string", "quote it")
                    continue
                }
                if let problem = EventPattern.problem(in: text) {
                    issue("\(key).events[\(i)]", problem, "use letters, digits, _ . - : / and the wildcards * and ?")
                } else if let p = EventPattern(text) {
                    patterns.append(p)
                }
            }
            let primary = r["to"]?.stringValue ?? ""
            if primary.isEmpty {
                issue("\(key).to", "the route has no primary provider", "add `to:` with one of \(defined)")
            } else if providers[primary] == nil {
                issue(
                    "\(key).to", "'\(primary)' is not a defined provider",
                    "define it under providers or use one of \(defined)")
            }
            var shadows: [String] = []
            if let s = r["shadow"] {
                let names = s.arrayValue?.compactMap(\.stringValue) ?? s.stringValue.map { [$0] } ?? []
                for name in names {
                    if providers[name] == nil {
                        issue(
                            "\(key).shadow", "shadow '\(name)' is not a defined provider",
                            "define it under providers or use one of \(defined)")
                    } else if name == primary {
                        issue(
                            "\(key).shadow", "'\(name)' is both primary and shadow",
                            "a provider cannot shadow itself; remove it from shadow")
                    } else {
                        shadows.append(name)
                    }
                }
            }
            let from = time(r["from"], key: "\(key).from")
            let until = time(r["until"], key: "\(key).until")
            if let from, let until, from >= until {
                issue(
                    "\(key).until", "until \(RFC3339.format(until)) is not after from \(RFC3339.format(from))",
                    "swap them or fix one")
            }
            var cohort: Set<String>?
            if let c = r["customers"] {
                let list = c.arrayValue?.compactMap(\.stringValue) ?? []
                if list.isEmpty {
                    issue(
                        "\(key).customers", "a cohort must list at least one customer id",
                        "write `customers: [acme, globex]`")
                }
                cohort = Set(list)
            }
            var overrides: [String: [String: JSONValue]] = [:]
            for (name, provider) in providers {
                guard let value = r[name] else { continue }
                guard case .object(let o) = value else {
                    issue(
                        "\(key).\(name)", "per-provider route settings must be a mapping",
                        "write `\(name): { event_name: … }`")
                    continue
                }
                if name != primary && !shadows.contains(name) {
                    issue(
                        "\(key).\(name)", "settings for '\(name)', which this route does not send to",
                        "add it as `to` or `shadow`, or remove these settings")
                }
                for setting in o.keys.sorted() where !provider.kind.settingsKeys.contains(setting) {
                    issue(
                        "\(key).\(name).\(setting)", "\(provider.kind.name) has no setting '\(setting)'",
                        "use one of \(provider.kind.settingsKeys.sorted().joined(separator: ", "))")
                }
                overrides[name] = o
            }
            var id = RoutingConfig.Route.derivedID(patterns: patterns.map(\.text), cohort: cohort)
            var explicit = false
            if let value = r["id"] {
                if let text = value.stringValue, Lane.problem(inName: text, of: "a route id") == nil {
                    id = text
                    explicit = true
                } else {
                    issue(
                        "\(key).id",
                        Lane.problem(inName: value.stringValue ?? "\(value)", of: "a route id")
                            ?? "the route id must be a string",
                        "use letters, digits, _ . - (e.g. `id: api-requests`); it names the route's lanes, so keep it once chosen"
                    )
                }
            }
            routes.append(
                RoutingConfig.Route(
                    index: index, id: id, hasExplicitID: explicit, patterns: patterns, primary: primary,
                    shadows: shadows,
                    from: from, until: until, cohort: cohort, overrides: overrides))
        }
        checkCutovers(routes)
        checkLaneIdentities(routes)
        return routes
    }

    /// Route ids are unique. Two routes whose identities meet on a provider share that lane,
    /// which is right when they send it the same way (a cutover that turns a primary into a
    /// shadow keeps its mapping) and wrong when their overrides differ: its queued rows would
    /// go out under one mapping, so that needs ids of their own.
    mutating func checkLaneIdentities(_ routes: [RoutingConfig.Route]) {
        var ids: [String: RoutingConfig.Route] = [:]
        var lanes: [Lane: RoutingConfig.Route] = [:]
        for route in routes {
            if route.hasExplicitID, let other = ids[route.id], other.hasExplicitID {
                issue(
                    "routes[\(route.index)].id",
                    "routes[\(other.index)] and routes[\(route.index)] both have id '\(route.id)'",
                    "give each route an id of its own")
                continue
            }
            if route.hasExplicitID { ids[route.id] = route }
            for provider in route.providers {
                let lane = route.lane(provider)
                if let other = lanes[lane], other.overrides[provider] != route.overrides[provider] {
                    let which = route.hasExplicitID && other.hasExplicitID ? "id" : "event patterns"
                    issue(
                        route.hasExplicitID ? "routes[\(route.index)].id" : "routes[\(route.index)]",
                        "routes[\(other.index)] and routes[\(route.index)] would share the lane '\(lane.name)' (same \(which) and provider) with different \(provider) settings",
                        "give both routes an `id:` of their own (e.g. `id: \(provider)-before` and `id: \(provider)-after`); the id names their lanes, so keep it once chosen"
                    )
                } else if lanes[lane] == nil {
                    lanes[lane] = route
                }
            }
        }
    }

    mutating func time(_ value: JSONValue?, key: String) -> Date? {
        guard let value else { return nil }
        guard let text = value.stringValue, let date = RFC3339.parse(text) else {
            issue(key, "'\(value)' is not an RFC 3339 time", "write e.g. 2026-12-01T00:00:00Z")
            return nil
        }
        return date
    }

    /// Routes sharing an event pattern and cohort must not be active at the same instant, and a
    /// cutover must hand over at one instant (no gap).
    mutating func checkCutovers(_ routes: [RoutingConfig.Route]) {
        for (i, a) in routes.enumerated() {
            for b in routes[(i + 1)...] where a.cohort == b.cohort {
                let shared = Set(a.patterns.map(\.text)).intersection(b.patterns.map(\.text))
                guard let pattern = shared.sorted().first else { continue }
                let start = max(a.from ?? .distantPast, b.from ?? .distantPast)
                let end = min(a.until ?? .distantFuture, b.until ?? .distantFuture)
                if start < end {
                    issue(
                        "routes[\(b.index)]",
                        "routes[\(a.index)] and routes[\(b.index)] both take '\(pattern)' from \(start == .distantPast ? "the start" : RFC3339.format(start))",
                        "give them adjacent windows: `until: T` on one and `from: T` on the other (or a shadow for dual-write)"
                    )
                } else if let until = a.until ?? b.until, let from = (a.until != nil ? b.from : a.from), until < from,
                    Set(a.patterns.map(\.text)) == Set(b.patterns.map(\.text))
                {
                    issue(
                        "routes[\(b.index)]",
                        "'\(pattern)' has no route between \(RFC3339.format(until)) and \(RFC3339.format(from))",
                        "make the cutover one instant: the same time in `until` and `from`")
                }
            }
        }
    }

    /// Builds every (route, provider) sink once, with a client that never sends, so bad or
    /// missing settings surface now, naming the key.
    mutating func checkSinks(_ config: RoutingConfig) {
        struct NoNetwork: HTTPClient {
            func send(_ request: HTTPRequest) async throws -> HTTPResponse {
                throw UsageBillingError(.transport, "config check sends nothing")
            }
        }
        var checked = Set<String>()
        let used = Set(config.routes.flatMap { [$0.primary] + $0.shadows })
        for name in config.providers.keys.sorted() where !used.contains(name) {
            guard let p = config.providers[name] else { continue }
            do {
                _ = try p.kind.makeSink(config.settings(for: name, route: nil), NoNetwork(), SystemClock(), name)
            } catch let error as UsageBillingError {
                issue(
                    error.field.map { "providers.\(name).\($0)" } ?? "providers.\(name)", error.message,
                    error.fix ?? "see Providers/\(p.kind.name)/README.md")
            } catch {
                issue("providers.\(name)", "\(error)", "see the provider's README")
            }
        }
        for route in config.routes {
            for provider in [route.primary] + route.shadows {
                guard let p = config.providers[provider] else { continue }
                let overrides = route.overrides[provider] != nil
                let id = overrides ? "\(provider)@\(route.index)" : provider
                guard checked.insert(id).inserted else { continue }
                do {
                    _ = try p.kind.makeSink(
                        config.settings(for: provider, route: route.index), NoNetwork(), SystemClock(), provider)
                } catch let error as UsageBillingError {
                    let prefix = overrides ? "routes[\(route.index)].\(provider)" : "providers.\(provider)"
                    issue(
                        error.field.map { "\(prefix).\($0)" } ?? prefix, error.message,
                        error.fix ?? "see Providers/\(p.kind.name)/README.md")
                } catch {
                    issue("providers.\(provider)", "\(error)", "see the provider's README")
                }
            }
        }
    }
}
