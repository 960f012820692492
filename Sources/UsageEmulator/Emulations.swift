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
