import UsageBilling

extension PaddleSink {
    /// The `paddle` provider kind for the routing config.
    public static let kind = ProviderKind(name: "paddle", settingsKeys: PaddleSettings.keys, secretKeys: ["api_key"]) { settings, client, clock, name in
        try PaddleSink(settings: PaddleSettings.decode(settings), client: client, clock: clock, name: name)
    }
}
