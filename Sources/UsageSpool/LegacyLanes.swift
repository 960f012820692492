import Foundation
import UsageBilling
import UsageRouting

/// Positional lanes (`stripe#0`, written before lanes had names) read against a routing config:
/// the one place the ledger's lanes meet the config, kept out of the storage files.
extension UsageLedger {
    /// How the spool's positional lanes (`stripe#0`: a provider and a route's position, as spools
    /// were written before lanes had names) map to `config`'s lanes: route N of the config, which
    /// must send to that provider and take every event the lane holds by name. Changes nothing.
    /// - Throws: `.configuration` when a positional lane maps to no route, or to one that does not
    ///   take its events (the config was edited since they were recorded): the fix is to start
    ///   once with the config they were recorded with.
    public func legacyLaneRenames(for config: RoutingConfig) async throws -> [(from: String, to: String)] {
        var renames: [(from: String, to: String)] = []
        var problems: [String] = []
        for name in try await laneNames() {
            guard let (provider, index) = Lane.legacyPosition(name) else { continue }
            guard config.routes.indices.contains(index), config.routes[index].providers.contains(provider) else {
                problems.append(
                    "\(name) (from before lanes had names: provider \(provider), route \(index)) cannot map: routes[\(index)] of \(config.file) does not send to \(provider)"
                )
                continue
            }
            let route = config.routes[index]
            var stray: String?
            try await ledger(lane: name) { event, _ in
                if stray == nil, !route.patterns.contains(where: { $0.matches(event.name) }) { stray = event.name }
            }
            if let stray {
                problems.append(
                    "\(name) holds '\(stray)' events, which routes[\(index)] of \(config.file) (\(route.patterns.map(\.text).joined(separator: ", "))) does not take"
                )
                continue
            }
            renames.append((name, route.lane(provider).name))
        }
        if !problems.isEmpty {
            throw UsageBillingError(
                .configuration,
                "the spool's positional lanes do not match the config, which was edited since they were recorded: "
                    + problems.joined(separator: "; "),
                fix:
                    "start the new release once with the routing config these events were recorded with (it maps each positional lane to its route; from then on lanes keep their names through edits), or move the rows yourself: `usage-billing lanes reassign <positional lane> <provider>/<route>`",
                field: "routes")
        }
        return renames
    }

    /// Renames the spool's positional lanes to `config`'s lane names (``legacyLaneRenames(for:)``)
    /// in one transaction; returns what was renamed. Safe to call every start: a spool without
    /// positional lanes is left as it is.
    @discardableResult
    public func migrateLegacyLanes(to config: RoutingConfig) async throws -> [(from: String, to: String)] {
        let renames = try await legacyLaneRenames(for: config)
        guard !renames.isEmpty else { return [] }
        try await renameLanes(renames)
        return renames
    }
}
