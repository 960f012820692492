import UsageBilling

extension OrbIngestSink {
    /// The `orb` provider kind for the routing config.
    public static let kind = ProviderKind(name: "orb", settingsKeys: OrbSettings.keys, secretKeys: ["api_key"]) { settings, client, clock, name in
        try OrbIngestSink(settings: OrbSettings.decode(settings), client: client, clock: clock, name: name)
    }
}
