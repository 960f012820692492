import UsageBilling

extension OpenMeterIngestSink {
    /// The `openmeter` provider kind for the routing config.
    public static let kind = ProviderKind(name: "openmeter", settingsKeys: OpenMeterSettings.keys, secretKeys: ["api_key"]) { settings, client, clock, name in
        try OpenMeterIngestSink(settings: OpenMeterSettings.decode(settings), client: client, clock: clock, name: name)
    }
}
