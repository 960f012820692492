import Foundation
import UsageBilling

/// One provider's emulation as the emulator registers it: the routing-config kind it stands in
/// for, the path prefixes it serves, the settings that point the provider's adapter at it, and
/// how to build it from the options. Each provider folder declares one (`Emulation/`); the
/// `UsageEmulator` module's registry lists them.
public struct EmulationKind: Sendable {
    /// A second host of a provider (Stripe's meter-events host), served by one of its emulations
    /// under a path marker.
    public struct HostAlias: Sendable, Hashable {
        /// The alias's path prefix (`stripe-meter-events`).
        public var prefix: String
        /// The emulation that answers it (`stripe`).
        public var emulation: String
        /// What its paths start with there.
        public var marker: String
        public init(prefix: String, emulation: String, marker: String) {
            self.prefix = prefix
            self.emulation = emulation
            self.marker = marker
        }
    }

    /// The routing-config `kind:` (`chargebee`).
    public let kind: String
    /// The path prefixes its emulations serve (`chargebee`, `chargebee-ingest`); faults and
    /// statistics for the kind cover them all.
    public let prefixes: [String]
    /// Second hosts answered by one of its emulations.
    public let hostAliases: [HostAlias]
    /// The settings that point the adapter at an emulator whose base URL is given.
    public let endpoints: @Sendable (_ baseURL: String) -> [String: String]
    /// Builds the emulations, one per prefix.
    public let make: @Sendable (EmulationContext) -> [any EmulatedProvider]
    /// Its options as text settings, for `usage-billing emulate --set KIND.NAME=VALUE`.
    public let settings: [EmulationSetting]
    /// What the provider's adapter needs besides the endpoints to run against this emulation in
    /// tests, as routing-config settings (`api_key: …, site: …`): placeholder keys, and rate
    /// limits raised so a test runs at loopback speed.
    public let adapterSettings: String
    /// The provider's real hosts, as its recorded fixtures name them, each with the path prefix
    /// that answers it here (`api.stripe.com` → `stripe`): how a fixture's requests replay
    /// against the emulator.
    public let realHosts: [String: String]
    /// How its meters follow a routing config (`emulate -c`), when they do.
    public let meters: ConfiguredMeters

    public init(
        kind: String, prefixes: [String]? = nil, hostAliases: [HostAlias] = [], settings: [EmulationSetting] = [],
        adapterSettings: String = "", realHosts: [String: String] = [:], meters: ConfiguredMeters = .none,
        endpoints: @escaping @Sendable (_ baseURL: String) -> [String: String],
        make: @escaping @Sendable (EmulationContext) -> [any EmulatedProvider]
    ) {
        self.kind = kind
        self.meters = meters
        self.settings = settings
        self.adapterSettings = adapterSettings
        self.realHosts = realHosts
        self.prefixes = prefixes ?? [kind]
        self.hostAliases = hostAliases
        self.endpoints = endpoints
        self.make = make
    }
}

/// What an emulation is built with: the options and the emulator's clock.
public struct EmulationContext: Sendable {
    public let options: EmulationOptions
    /// The emulator's clock: what each provider's time rules read.
    public let now: @Sendable () -> Date
}

/// An option an emulation reads, with the value it has when nobody sets it.
public protocol EmulationOption: Sendable {
    static var defaultValue: Self { get }
}

/// Every emulation's options, by type: each emulation declares its own option types and reads
/// them here, so the emulator takes one value whatever the providers.
public struct EmulationOptions: Sendable {
    private var values: [ObjectIdentifier: any Sendable] = [:]

    public init() {}

    public subscript<Option: EmulationOption>(_ option: Option.Type) -> Option {
        get { values[ObjectIdentifier(option)] as? Option ?? Option.defaultValue }
        set { values[ObjectIdentifier(option)] = newValue }
    }
}

/// How an emulation's meters follow the routing config it is started with, so its read-back
/// reports what the real provider would for the routes that send to it.
public enum ConfiguredMeters: Sendable {
    /// Its meters need nothing from the config.
    case none
    /// Each meter sums the property a route's `quantity_property` names (``MeterSums``).
    case sumQuantityProperty
    /// Only the meters the routes send to exist (by the meter names they map events to; nil when
    /// a route takes an event pattern without a fixed meter): `set` puts them into the options.
    case declared(set: @Sendable (_ meters: [String]?, _ options: EmulationOptions) -> EmulationOptions)
}

/// The property each meter sums, for emulations whose meters sum a property of the event
/// (OpenMeter's meters, Metronome's billable metrics): by meter name or event pattern, from the
/// routing config's `quantity_property` (see `EmulatedMeters`).
public struct MeterSums: EmulationOption, Equatable {
    public var properties: [String: String]
    public init(_ properties: [String: String] = [:]) { self.properties = properties }
    public static let defaultValue = MeterSums()
}

extension EmulationOptions {
    /// These options with `value` set: `EmulationOptions().with(MeterSums(["storage": "gb"]))`.
    public func with<Option: EmulationOption>(_ value: Option) -> EmulationOptions {
        var copy = self
        copy[Option.self] = value
        return copy
    }
}

/// One of an emulation's options as a text setting (`meters=api_requests,storage`): how a
/// command line sets it.
public struct EmulationSetting: Sendable {
    /// The setting's name (`meters`).
    public let name: String
    /// What it sets and the value's form.
    public let help: String
    /// Sets the option from `value`; throws `.invalidInput` with the fix on a bad value.
    public let apply: @Sendable (_ value: String, _ options: inout EmulationOptions) throws -> Void

    public init(
        name: String, help: String,
        apply: @escaping @Sendable (_ value: String, _ options: inout EmulationOptions) throws -> Void
    ) {
        self.name = name
        self.help = help
        self.apply = apply
    }
}

extension [EmulationKind] {
    /// Applies `KIND.NAME=VALUE` to `options`; throws `.invalidInput` naming what is wrong.
    public func apply(setting text: String, to options: inout EmulationOptions) throws {
        let known = flatMap { kind in kind.settings.map { "\(kind.kind).\($0.name)" } }.joined(separator: ", ")
        guard let eq = text.firstIndex(of: "="), let dot = text[..<eq].firstIndex(of: ".") else {
            throw UsageBillingError(.invalidInput, "'\(text)' is not KIND.NAME=VALUE", fix: "use one of \(known)")
        }
        let kind = String(text[..<dot]), name = String(text[text.index(after: dot)..<eq]),
            value = String(text[text.index(after: eq)...])
        guard let setting = first(where: { $0.kind == kind })?.settings.first(where: { $0.name == name }) else {
            throw UsageBillingError(.invalidInput, "no emulator setting \(kind).\(name)", fix: "use one of \(known)")
        }
        try setting.apply(value, &options)
    }
}
