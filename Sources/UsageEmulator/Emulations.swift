@_exported import UsageEmulatorCore
@_exported import ChargebeeEmulation
import Foundation
@_exported import MetronomeEmulation
@_exported import OpenMeterEmulation
@_exported import OrbEmulation
@_exported import PaddleEmulation
@_exported import RecurlyEmulation
@_exported import StripeEmulation

extension UsageEmulator {
    /// Every provider's emulation: one line per provider, as in the provider registry.
    public static let standard: [EmulationKind] = [
        EmulatedStripe.kind, EmulatedOrb.kind, EmulatedMetronome.kind, EmulatedOpenMeter.kind,
        EmulatedChargebee.kind, EmulatedRecurly.kind, EmulatedPaddle.kind, EmulatedPaddleUsage.kind,
    ]

    /// The provider kinds of ``standard``, by routing-config kind.
    public static var kinds: [String] { standard.map(\.kind) }

    /// A routing config's `providers:` section naming every provider of ``standard`` by its
    /// kind, pointed at this emulator with its placeholder keys (`extra`: more settings, by kind).
    public func providersSection(extra: [String: String] = [:]) -> String {
        let lines = Self.standard.map { emulation -> String in
            let endpoints = (endpoints[emulation.kind] ?? [:]).sorted { $0.key < $1.key }.map {
                "\($0.key): \"\($0.value)\""
            }
            let settings =
                ["kind: \(emulation.kind)", emulation.adapterSettings] + endpoints
                + [extra[emulation.kind]].compactMap { $0 }
            return "  \(emulation.kind): { " + settings.filter { !$0.isEmpty }.joined(separator: ", ") + " }"
        }
        return "providers:\n" + lines.joined(separator: "\n") + "\n"
    }

    /// Starts the emulator of every provider (``standard``) on 127.0.0.1:`port` (0: any free port).
    public static func start(
        port: Int = 0, faults: [String: FaultPlan] = [:], seed: UInt64 = 1,
        options: EmulationOptions = EmulationOptions(),
        rateLimits: Bool = false, now: @escaping @Sendable () -> Date = { Date() }
    ) async throws -> UsageEmulator {
        try await start(
            emulations: standard, port: port, faults: faults, seed: seed, options: options, rateLimits: rateLimits,
            now: now)
    }
}
