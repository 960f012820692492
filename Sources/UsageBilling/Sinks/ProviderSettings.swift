/// A provider's settings as the routing config gives them: decoded from snake_case keys, every
/// key known, with a working example to show when they are wrong.
public protocol ProviderSettings: Decodable, Sendable {
    /// The provider's name in messages (`Stripe`).
    static var providerName: String { get }
    /// Every key the settings read.
    static var keys: Set<String> { get }
    /// Settings that work, shown in the fix when these do not (`{api_key: ${ORB_API_KEY}}`).
    static var example: String { get }
}

extension ProviderSettings {
    /// Decodes settings, naming any unknown, missing or mistyped key.
    public static func decode(_ json: JSONValue) throws -> Self {
        try SettingsDecoding.decode(Self.self, from: json, provider: providerName, knownKeys: keys, example: example)
    }
}

extension ProviderKind {
    /// A kind whose sink and read-back are built from its decoded `Settings`, so the settings
    /// object is decoded, and its keys checked, the same way for both.
    public init<Settings: ProviderSettings>(
        name: String, settings: Settings.Type, secretKeys: Set<String>, requestTimeout: Duration = .seconds(30),
        answerTime: Duration = .milliseconds(500),
        sink:
            @escaping @Sendable (
                _ settings: Settings, _ client: any HTTPClient, _ clock: any UsageClock, _ name: String
            ) throws -> any UsageSink,
        readBack: (@Sendable (_ settings: Settings, _ client: any HTTPClient) throws -> (any UsageReadBack)?)? = nil,
        tools: ProviderTools = ProviderTools(), notice: String? = nil
    ) {
        let makeSink: SinkFactory = { json, client, clock, name in try sink(Settings.decode(json), client, clock, name)
        }
        var makeReadBack: ReadBackFactory?
        if let readBack {
            makeReadBack = { json, client in try readBack(Settings.decode(json), client) }
        }
        self.init(
            name: name, settingsKeys: Settings.keys, secretKeys: secretKeys, requestTimeout: requestTimeout,
            answerTime: answerTime,
            makeSink: makeSink, makeReadBack: makeReadBack, tools: tools, notice: notice)
    }
}
