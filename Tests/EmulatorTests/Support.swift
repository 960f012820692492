import Foundation
import UsageBillingProviders
import UsageEmulator
import UsageRouting

/// A routing config of every emulated provider pointed at `emulator`, with `routes` (YAML list
/// items, indented two spaces); `extra` adds settings per provider (`"orb": "customers: {…}"`).
/// Each provider's settings are its emulation's `adapterSettings`: placeholder keys, rate
/// limits raised so tests run at loopback speed.
func emulatorConfig(_ emulator: UsageEmulator, routes: String, extra: [String: String] = [:]) throws -> RoutingConfig {
    try RoutingConfig.parse(
        "version: 1\n" + emulator.providersSection(extra: extra) + "routes:\n" + routes,
        file: "emulator.yaml", directory: "/tmp", registry: .standard, environment: [:])
}
