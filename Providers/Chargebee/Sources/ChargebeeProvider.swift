import UsageBilling

extension ChargebeeSink {
    /// The `chargebee` provider kind for the routing config.
    public static let kind = ProviderKind(name: "chargebee", settingsKeys: ChargebeeSettings.keys, secretKeys: ["api_key"]) { settings, client, clock, name in
        try ChargebeeSink(settings: ChargebeeSettings.decode(settings), client: client, clock: clock, name: name)
    }
}
