import Foundation
import UsageBilling
import UsageRouting

/// What the emulator's meters need to know from a routing config, so its read-back reports what
/// the real providers would: which property each OpenMeter and Metronome meter sums (a route's
/// `quantity_property`), and which Stripe meters exist (each route's `event_name`).
public struct EmulatedMeters: Sendable, Equatable {
    /// Per meter name or event pattern, the property its meter sums; meters not named use the
    /// adapters' defaults, which the emulator shares.
    public var valueProperties: [String: String] = [:]
    /// The Stripe meters that exist, by event name; nil when a Stripe route takes an event
    /// pattern without a fixed `event_name`, so the emulator makes a meter for every name seen.
    public var stripeMeters: [String]?

    /// Nothing declared: every meter sums its adapter's default property; Stripe meters are made
    /// on first use.
    public init() {}

    /// The meters `config`'s routes send to, for every provider each route names (primary and
    /// shadows) with that route's overrides.
    public init(config: RoutingConfig) throws {
        let client = NoNetwork()
        var stripe: Set<String>? = []
        for route in config.routes {
            for provider in [route.primary] + route.shadows {
                guard let kind = config.providers[provider]?.kind, EmulatedMeters.summing.contains(kind.name) || kind.name == "stripe" else { continue }
                let settings = config.settings(for: provider, route: route.index)
                guard let readBack = try kind.makeReadBack?(settings, client) else { continue }
                for pattern in route.patterns {
                    // A pattern's meter is fixed when two names it matches map to one meter
                    // (an `event_name` override); otherwise each name is its own meter.
                    let names = Set([pattern.text, pattern.text.replacingOccurrences(of: "*", with: "a").replacingOccurrences(of: "?", with: "b")]
                        .map { readBack.names(for: UsageEvent(id: "probe", name: $0, customer: "probe", timestamp: Date(), quantity: 1)).meter })
                    let fixed = pattern.isExact || (names.count == 1 && !(names.first ?? "").contains("*"))
                    let meter = fixed ? (names.first ?? pattern.text) : pattern.text
                    if kind.name == "stripe" {
                        if fixed { stripe?.insert(meter) } else { stripe = nil }
                    } else if let property = settings["quantity_property"]?.stringValue {
                        valueProperties[meter] = property
                    }
                }
            }
        }
        stripeMeters = stripe.map { $0.sorted() }
        if stripeMeters?.isEmpty == true { stripeMeters = nil }
    }

    /// What was declared, in words (printed by `emulate -c`).
    public var description: String {
        let sums = valueProperties.sorted { $0.key < $1.key }.map { "\($0.key) sums \($0.value)" }
        return (sums + [stripeMeters.map { "Stripe meters \($0.joined(separator: ", "))" } ?? "a Stripe meter for every event name"]).joined(separator: "; ")
    }

    /// The emulator's options these meters set: ``MeterSums`` and Stripe's meters.
    public var options: EmulationOptions {
        EmulationOptions().with(MeterSums(valueProperties)).with(EmulatedStripe.Meters(stripeMeters))
    }

    /// Provider kinds whose emulated meters sum a property of the event.
    static let summing: Set<String> = ["openmeter", "metronome"]

    /// Read-backs are built only for their names; they never send.
    private struct NoNetwork: HTTPClient {
        func send(_ request: HTTPRequest) async throws -> HTTPResponse {
            throw UsageBillingError(.transport, "the emulator's meter setup sends no requests", fix: "none needed")
        }
    }
}
