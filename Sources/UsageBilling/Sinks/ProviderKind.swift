/// What the routing config needs to know about one kind of provider: its settings keys, which of
/// them are secrets, and how to build its sink. Each provider folder declares one; one line in
/// the provider registry makes it usable from a config file.
public struct ProviderKind: Sendable {
    /// Builds a sink from the provider's settings object.
    public typealias SinkFactory =
        @Sendable (_ settings: JSONValue, _ client: any HTTPClient, _ clock: any UsageClock, _ name: String) throws ->
        any UsageSink

    /// The `kind:` value in the config (`stripe`).
    public let name: String
    /// Every settings key the provider reads.
    public let settingsKeys: Set<String>
    /// The keys whose values are credentials (masked wherever settings are shown).
    public let secretKeys: Set<String>
    /// Builds the sink; throws `.invalidInput`/`.configuration` naming the bad key.
    public let makeSink: SinkFactory
    /// Builds the provider's read-back (for reconciliation), or nil when the provider has none.
    public typealias ReadBackFactory =
        @Sendable (_ settings: JSONValue, _ client: any HTTPClient) throws -> (any UsageReadBack)?
    /// Builds the read-back; nil when the provider cannot report totals at all.
    public let makeReadBack: ReadBackFactory?
    /// How long one request may wait for its answer unless the config's `timeout` says otherwise:
    /// fitted to the provider's ingest latency (a hung request holds its lane's slot this long,
    /// or until a hedge answers for it).
    public let requestTimeout: Duration
    /// How long the provider's ingest is expected to take to answer one request when healthy. A
    /// worker that has no latencies of its own yet (every fresh start) hedges a request after a
    /// few times this, well before ``requestTimeout``, then learns the lane's real latency.
    public let answerTime: Duration
    /// What else the provider offers the CLI (its usage report, meters, rejection reports).
    public let tools: ProviderTools
    /// Shown wherever the kind is configured (`config check`): a beta API and the date of the
    /// provider docs it follows. Nil for a generally available API.
    public let notice: String?

    /// A provider kind.
    public init(
        name: String, settingsKeys: Set<String>, secretKeys: Set<String>, requestTimeout: Duration = .seconds(30),
        answerTime: Duration = .milliseconds(500),
        makeSink: @escaping SinkFactory, makeReadBack: ReadBackFactory? = nil, tools: ProviderTools = ProviderTools(),
        notice: String? = nil
    ) {
        self.name = name
        self.notice = notice
        self.tools = tools
        self.requestTimeout = requestTimeout
        self.answerTime = answerTime
        self.settingsKeys = settingsKeys
        self.secretKeys = secretKeys
        self.makeSink = makeSink
        self.makeReadBack = makeReadBack
    }
}
