import Foundation
import UsageBilling
import UsageRouting

/// What the emulator's meters need to know from a routing config, so its read-back reports what
/// the real providers would: for emulations whose meters sum a property, which property each
/// meter sums (a route's `quantity_property`); for emulations whose meters must exist, which
/// meters the routes send to. Each emulation says which it is (`EmulationKind.meters`).
public struct EmulatedMeters: Sendable {
    /// Per meter name or event pattern, the property its meter sums; meters not named use the
    /// adapters' defaults, which the emulator shares.
    public var valueProperties: [String: String] = [:]
    /// Per provider kind whose meters must exist, the meters the routes send to, by name; nil when
    /// a route takes an event pattern without a fixed meter, so the emulator makes a meter for
    /// every name seen.
    public var declaredMeters: [String: [String]?] = [:]
    private var setters: [String: @Sendable ([String]?, EmulationOptions) -> EmulationOptions] = [:]

    /// Nothing declared: every meter sums its adapter's default property; meters that must exist
    /// are made on first use.
    public init() {}

    /// The meters `config`'s routes send to, for every provider each route names (primary and
    /// shadows) with that route's overrides, read through `emulations`.
    public init(config: RoutingConfig, emulations: [EmulationKind] = UsageEmulator.standard) throws {
        let client = NoNetwork()
        let byKind = Dictionary(emulations.map { ($0.kind, $0.meters) }) { first, _ in first }
        var declared: [String: Set<String>?] = [:]
        for route in config.routes {
            for provider in [route.primary] + route.shadows {
                guard let kind = config.providers[provider]?.kind, let meters = byKind[kind.name] else { continue }
                if case .none = meters { continue }
                let settings = config.settings(for: provider, route: route.index)
                guard let readBack = try kind.makeReadBack?(settings, client) else { continue }
                for pattern in route.patterns {
                    // A pattern's meter is fixed when two names it matches map to one meter
                    // (an `event_name` override); otherwise each name is its own meter.
                    let names = Set(
                        [
                            pattern.text,
                            pattern.text.replacingOccurrences(of: "*", with: "a").replacingOccurrences(
                                of: "?", with: "b"),
                        ]
                        .map {
                            readBack.names(
                                for: UsageEvent(
                                    id: "probe", name: $0, customer: "probe", timestamp: Date(), quantity: 1)
                            ).meter
                        })
                    let fixed = pattern.isExact || (names.count == 1 && !(names.first ?? "").contains("*"))
                    let meter = fixed ? (names.first ?? pattern.text) : pattern.text
                    switch meters {
                    case .none: break
                    case .sumQuantityProperty:
                        if let property = settings["quantity_property"]?.stringValue {
                            valueProperties[meter] = property
                        }
                    case .declared(let set):
                        setters[kind.name] = set
                        let known = declared[kind.name] ?? Set<String>()
                        declared[kind.name] = fixed ? known.map { $0.union([meter]) } : .some(nil)
                    }
                }
            }
        }
        for (kind, meters) in declared {
            declaredMeters[kind] = meters.flatMap { $0.isEmpty ? nil : $0.sorted() }
        }
    }

    /// What was declared, in words (printed by `emulate -c`).
    public var description: String {
        let sums = valueProperties.sorted { $0.key < $1.key }.map { "\($0.key) sums \($0.value)" }
        let declared = declaredMeters.sorted { $0.key < $1.key }.map { kind, meters in
            meters.map { "\(kind) meters \($0.joined(separator: ", "))" } ?? "a \(kind) meter for every event name"
        }
        return (sums + declared).joined(separator: "; ")
    }

    /// The emulator's options these meters set: ``MeterSums`` and each declaring emulation's own.
    public var options: EmulationOptions {
        var options = EmulationOptions().with(MeterSums(valueProperties))
        for (kind, meters) in declaredMeters.sorted(by: { $0.key < $1.key }) {
            options = setters[kind]?(meters, options) ?? options
        }
        return options
    }

    /// Read-backs are built only for their names; they never send.
    private struct NoNetwork: HTTPClient {
        func send(_ request: HTTPRequest) async throws -> HTTPResponse {
            throw UsageBillingError(.transport, "the emulator's meter setup sends no requests", fix: "none needed")
        }
    }
}
