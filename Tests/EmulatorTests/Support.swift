import Foundation
import UsageBillingProviders
import UsageEmulator
import UsageRouting

/// A routing config of all seven providers pointed at `emulator`, with `routes` (YAML list
/// items, indented two spaces); `extra` adds settings per provider (`"orb": "customers: {…}"`).
/// Keys are placeholders; rate limits are raised so tests run at loopback speed.
func emulatorConfig(_ emulator: UsageEmulator, routes: String, extra: [String: String] = [:]) throws -> RoutingConfig {
    let base: [String: String] = [
        "stripe": "kind: stripe, secret_key: sk_live_REDACTED, requests_per_second: 100000",
        "orb": "kind: orb, api_key: orb_REDACTED, requests_per_second: 1000, events_per_minute: 100000000",
        "metronome": "kind: metronome, api_key: metronome_REDACTED, events_per_second: 1000000",
        "openmeter": "kind: openmeter, api_key: om_REDACTED",
        "chargebee": "kind: chargebee, api_key: cb_REDACTED, site: acme-test, item_price_id: seats-USD, requests_per_minute: 60000",
        "recurly": "kind: recurly, api_key: recurly_REDACTED, add_on_id: code-seats, requests_per_minute: 60000",
        "paddle": "kind: paddle, api_key: pdl_sdbx_apikey_REDACTED, price_id: pri_01emu, max_quantity: 999999999, requests_per_minute: 60000",
    ]
    let providers = UsageEmulator.kinds.map { kind -> String in
        let endpoints = (emulator.endpoints[kind] ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key): \"\($0.value)\"" }
        return "  \(kind): { " + ([base[kind] ?? ""] + endpoints + [extra[kind]].compactMap { $0 }).joined(separator: ", ") + " }"
    }
    return try RoutingConfig.parse("version: 1\nproviders:\n" + providers.joined(separator: "\n") + "\nroutes:\n" + routes,
                                   file: "emulator.yaml", directory: "/tmp", registry: .standard, environment: [:])
}
