import UsageBilling

extension MetronomeIngestSink {
    /// The `metronome` provider kind for the routing config.
    public static let kind = ProviderKind(name: "metronome", settingsKeys: MetronomeSettings.keys, secretKeys: ["api_key"]) { settings, client, clock, name in
        try MetronomeIngestSink(settings: MetronomeSettings.decode(settings), client: client, clock: clock, name: name)
    }
}
