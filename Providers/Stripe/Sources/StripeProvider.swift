import UsageBilling

extension StripeMeterEventSink {
    /// The `stripe` provider kind for the routing config.
    public static let kind = ProviderKind(name: "stripe", settingsKeys: StripeSettings.keys, secretKeys: ["secret_key"]) { settings, client, clock, name in
        try StripeMeterEventSink(settings: StripeSettings.decode(settings), client: client, clock: clock, name: name)
    }
}
