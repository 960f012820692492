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

    /// Whether a problem at `key` is already reported (a value that did not decode reads as
    /// absent; it is not "missing" as well).
    func reported(_ key: String) -> Bool { issues.contains { $0.key == key } }

    mutating func validate(_ root: JSONValue, directory: String) -> RoutingConfig? {
        guard case .object = root else {
            issue("", "the config must be a mapping of version, providers, routes", "start with `version: 1`")
            return nil
        }
        let (decoded, found) = ConfigReader(file: file, lines: lines).decode(RoutingDocument.self, from: root, at: "")
        issues += found
        guard let document = decoded else { return nil }
        if document.version == nil, !reported("version") { issue("version", "version is missing", "add `version: 1`") }
        let providers = validateProviders(document.providers)
        let declared = Set(document.providers?.keys ?? [])
        let customers = validateCustomers(document.customers, providers: providers, directory: directory)
        let routes = validateRoutes(document.routes, providers: providers, declared: declared)
        var config = RoutingConfig(
            file: file, providers: providers, routes: routes, customers: customers,
            unrouted: document.unrouted ?? .reject)
        config.serve = document.serve
        if issues.isEmpty { checkSinks(config) }
        return config
    }

    mutating func validateProviders(_ map: ConfigMap<ProviderDocument>?) -> [String: RoutingConfig.Provider] {
        guard let map, !map.keys.isEmpty else {
            if !reported("providers") {
                issue(
                    "providers", map == nil ? "providers is missing" : "providers must be a non-empty mapping",
                    "add e.g. `providers: { stripe: { kind: stripe, secret_key: ${STRIPE_SECRET_KEY} } }`")
            }
            return [:]
        }
        let kinds = registry.names.joined(separator: ", ")
        var result: [String: RoutingConfig.Provider] = [:]
        for name in map.keys {
            let key = "providers.\(name)"
            if let problem = Lane.problem(inName: name, of: "a provider name") {
                issue(
                    key, problem,
                    "rename it with letters, digits, _ . - only (it names the provider's lanes: `\(name.filter { $0.isLetter || $0.isNumber || "_.-".contains($0) })/…`)"
                )
                continue
            }
            guard var provider = map.values[name] else {
                if !reported(key) {
                    issue(
                        key, "a provider must be a mapping with a kind",
                        "write `\(name): { kind: \(registry.names.first ?? "<kind>"), ... }`")
                }
                continue
            }
            guard let kindName = provider.kind else {
                if !reported("\(key).kind") {
                    issue(key, "provider '\(name)' has no kind", "add `kind:` with one of \(kinds)")
                }
                continue
            }
            guard let kind = registry.kind(kindName) else {
                let (message, fix) = ConfigReader.unknownName(
                    kindName, among: registry.names, "unknown provider kind '\(kindName)'",
                    otherwise: "use one of \(kinds)", rename: { "write `kind: \($0)`" })
                issue("\(key).kind", message, fix)
                continue
            }
            for (path, variable) in unsetProviderVariables.sorted(by: { $0.key < $1.key })
            where path.hasPrefix(key + ".") {
                let setting = String(path.dropFirst(key.count + 1))
                if !secretsNeeded && kind.secretKeys.contains(setting) {
                    provider.settings[setting] = .string(kind.tools.placeholderSecret)
                    unsetSecrets[path] = variable
                } else {
                    issue(
                        path, "environment variable \(variable) is not set",
                        "export \(variable)=… before running, or put the value in the file")
                }
            }
            let known = kind.settingsKeys.union(SharedProviderSettings.keys)
            for setting in provider.settings.keys.sorted() where !kind.settingsKeys.contains(setting) {
                let (message, fix) = ConfigReader.unknownName(
                    setting, among: known, "\(kindName) has no setting '\(setting)'",
                    otherwise: "use one of \(known.sorted().joined(separator: ", "))")
                issue("\(key).\(setting)", message, fix)
            }
            result[name] = RoutingConfig.Provider(
                name: name, kind: kind, settings: provider.settings, shared: provider.shared)
        }
        return result
    }

    mutating func validateRoutes(
        _ list: ConfigList<RouteDocument>?, providers: [String: RoutingConfig.Provider], declared: Set<String>
    ) -> [RoutingConfig.Route] {
        guard let list, !list.items.isEmpty else {
            if !reported("routes") {
                issue(
                    "routes", list == nil ? "routes is missing" : "routes must be a non-empty list",
                    "add e.g. `routes: [{ events: [\"api_request\"], to: \(providers.keys.sorted().first ?? "<provider>") }]`"
                )
            }
            return []
        }
        var routes: [RoutingConfig.Route] = []
        let defined = declared.sorted().joined(separator: ", ")
        /// A provider name the route refers to: fine when defined; when declared but broken its
        /// own problem stands; else a problem here.
        func undefined(_ name: String) -> Bool { providers[name] == nil && !declared.contains(name) }
        for (index, item) in list.items.enumerated() {
            let key = "routes[\(index)]"
            guard let r = item else { continue }
            for field in r.others.keys.sorted() where undefined(field) {
                let (message, fix) = ConfigReader.unknownName(
                    field, among: RouteDocument.keys.union(declared), "unknown route key '\(field)'",
                    otherwise:
                        "use \(RouteDocument.keys.sorted().joined(separator: ", ")), or a provider name for its settings on this route"
                )
                issue("\(key).\(field)", message, fix)
            }
            var patterns: [EventPattern] = []
            let texts = r.events?.items ?? []
            if texts.isEmpty, !reported("\(key).events") {
                issue(
                    "\(key).events", "the route names no events",
                    "add `events: [\"api_request\"]` (exact names or globs like `storage.*`)")
            }
            for (i, text) in texts.enumerated() {
                guard let text else { continue }
                if let problem = EventPattern.problem(in: text) {
                    issue("\(key).events[\(i)]", problem, "use letters, digits, _ . - : / and the wildcards * and ?")
                } else if let p = EventPattern(text) {
                    patterns.append(p)
                }
            }
            let primary = r.to ?? ""
            if primary.isEmpty {
                if !reported("\(key).to") {
                    issue("\(key).to", "the route has no primary provider", "add `to:` with one of \(defined)")
                }
            } else if undefined(primary) {
                issue(
                    "\(key).to", "'\(primary)' is not a defined provider",
                    "define it under providers or use one of \(defined)")
            }
            var shadows: [String] = []
            for name in (r.shadow?.items ?? []).compactMap({ $0 }) {
                if undefined(name) {
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
            let from = r.from?.date, until = r.until?.date
            if let from, let until, from >= until {
                issue(
                    "\(key).until", "until \(RFC3339.format(until)) is not after from \(RFC3339.format(from))",
                    "swap them or fix one")
            }
            var cohort: Set<String>?
            if let list = r.customers {
                let ids = list.items.compactMap { $0 }
                if list.items.isEmpty {
                    issue(
                        "\(key).customers", "a cohort must list at least one customer id",
                        "write `customers: [acme, globex]`")
                }
                cohort = Set(ids)
            }
            var overrides: [String: [String: JSONValue]] = [:]
            for (name, provider) in providers {
                guard let value = r.others[name] else { continue }
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
            if let text = r.id {
                if let problem = Lane.problem(inName: text, of: "a route id") {
                    issue(
                        "\(key).id", problem,
                        "use letters, digits, _ . - (e.g. `id: api-requests`); it names the route's lanes, so keep it once chosen"
                    )
                } else {
                    id = text
                    explicit = true
                }
            }
            routes.append(
                RoutingConfig.Route(
                    index: index, id: id, hasExplicitID: explicit, patterns: patterns, primary: primary,
                    shadows: shadows, from: from, until: until, cohort: cohort, overrides: overrides))
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
