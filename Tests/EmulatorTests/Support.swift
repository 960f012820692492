import Foundation
import UsageBillingProviders
import UsageEmulator
import UsageRouting

/// A routing config of every emulated provider pointed at `emulator`, with `routes` (YAML list
/// items, indented two spaces); `extra` adds settings per provider (`"orb": "customers: {…}"`).
/// Each provider's settings are its emulation's `adapterSettings`: placeholder keys, rate
/// limits raised so tests run at loopback speed.
func emulatorConfig(_ emulator: UsageEmulator, routes: String, extra: [String: String] = [:]) throws -> RoutingConfig {
    let providers = UsageEmulator.standard.map { emulation -> String in
        let endpoints = (emulator.endpoints[emulation.kind] ?? [:]).sorted { $0.key < $1.key }.map {
            "\($0.key): \"\($0.value)\""
        }
        let settings =
            ["kind: \(emulation.kind)", emulation.adapterSettings] + endpoints
            + [extra[emulation.kind]].compactMap { $0 }
        return "  \(emulation.kind): { " + settings.filter { !$0.isEmpty }.joined(separator: ", ") + " }"
    }
    return try RoutingConfig.parse(
        "version: 1\nproviders:\n" + providers.joined(separator: "\n") + "\nroutes:\n" + routes,
        file: "emulator.yaml", directory: "/tmp", registry: .standard, environment: [:])
}
