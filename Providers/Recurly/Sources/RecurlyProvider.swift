import UsageBilling

extension RecurlySink {
    /// The `recurly` provider kind for the routing config.
    public static let kind = ProviderKind(name: "recurly", settingsKeys: RecurlySettings.keys, secretKeys: ["api_key"]) { settings, client, clock, name in
        try RecurlySink(settings: RecurlySettings.decode(settings), client: client, clock: clock, name: name)
    }
}
