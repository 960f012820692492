import Foundation
import UsageBilling
import UsageEmulatorCore

/// Stripe's emulation as the emulator registers it: `/stripe` and the meter-events host at
/// `/stripe-meter-events`.
public enum EmulatedStripe {
    public static let kind = EmulationKind(
        kind: "stripe",
        hostAliases: [
            .init(prefix: "stripe-meter-events", emulation: "stripe", marker: StripeEmulation.meterEventsHost)
        ],
        settings: [
            EmulationSetting(
                name: "meters",
                help: "the meters that exist, by event name (comma-separated); others are refused as Stripe does"
            ) { value, options in
                let names = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter {
                    !$0.isEmpty
                }
                guard !names.isEmpty else {
                    throw UsageBillingError(
                        .invalidInput, "stripe.meters names no event name",
                        fix:
                            "list them, e.g. stripe.meters=api_requests,storage, or leave it out to make a meter for every event name"
                    )
                }
                options[Meters.self] = Meters(names)
            }
        ],
        adapterSettings: "secret_key: sk_live_REDACTED, requests_per_second: 1000000",
        realHosts: ["api.stripe.com": "stripe", "meter-events.stripe.com": "stripe-meter-events"],
        meters: .declared { meters, options in options.with(Meters(meters)) },
        endpoints: { ["endpoint": "\($0)/stripe", "meter_events_endpoint": "\($0)/stripe-meter-events"] },
        make: { [StripeEmulation(now: $0.now, meters: $0.options[Meters.self].eventNames)] })

    /// The Stripe meters that exist, by event name; nil (the default) makes a meter for every
    /// event name seen. With a list, an unknown event name is refused as Stripe does (v2
    /// `400 no_meter`; v1 and the stream take it and count nothing).
    public struct Meters: EmulationOption, Equatable {
        public var eventNames: [String]?
        public init(_ eventNames: [String]?) { self.eventNames = eventNames }
        public static let defaultValue = Meters(nil)
    }
}
