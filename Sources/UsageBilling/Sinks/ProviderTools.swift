import Foundation

/// What a provider offers beyond delivery and reconciliation, for the CLI's commands that work
/// with one provider (`summary`, `meters`, `dlq reject`, the demo). Each provider folder fills in
/// what it has; the CLI asks the registry and names no provider.
public struct ProviderTools: Sendable {
    /// A credential the adapter accepts in form, for runs against the emulator (a placeholder,
    /// never a real key).
    public var placeholderSecret: String
    /// Reads the provider's own usage report (`usage-billing summary`).
    public var summary: (@Sendable (_ settings: JSONValue, _ client: any HTTPClient) throws -> any UsageSummarizer)?
    /// Lists and creates the provider's meters (`usage-billing meters`).
    public var meters: (@Sendable (_ settings: JSONValue, _ client: any HTTPClient) throws -> any MeterManager)?
    /// Parses a report of events the provider refused after taking them (`dlq reject`); throws
    /// `.invalidInput` on anything else.
    public var rejectionReport: (@Sendable (_ body: Data) throws -> RejectionReport)?

    public init(
        placeholderSecret: String = "REDACTED_demo",
        summary: (@Sendable (_ settings: JSONValue, _ client: any HTTPClient) throws -> any UsageSummarizer)? = nil,
        meters: (@Sendable (_ settings: JSONValue, _ client: any HTTPClient) throws -> any MeterManager)? = nil,
        rejectionReport: (@Sendable (_ body: Data) throws -> RejectionReport)? = nil
    ) {
        self.placeholderSecret = placeholderSecret
        self.summary = summary
        self.meters = meters
        self.rejectionReport = rejectionReport
    }
}

/// What `usage-billing summary` asks a provider for. Which fields a provider needs differs
/// (a meter id, a subscription, a customer); it names the missing one.
public struct SummaryQuery: Sendable {
    public var from: Date
    public var to: Date
    /// Per hour or day; nil: one total where the provider can give one.
    public var window: ReadBackGranularity?
    /// The provider's meter (an id or slug).
    public var meter: String?
    /// The provider's customer id.
    public var customer: String?
    /// The provider's subscription id.
    public var subscription: String?

    public init(
        from: Date, to: Date, window: ReadBackGranularity? = nil, meter: String? = nil, customer: String? = nil,
        subscription: String? = nil
    ) {
        self.from = from
        self.to = to
        self.window = window
        self.meter = meter
        self.customer = customer
        self.subscription = subscription
    }

    /// `value`, or `.invalidInput` saying that `provider` needs `--flag`.
    public func require(_ value: String?, _ flag: String, provider: String, what: String) throws -> String {
        guard let value, !value.isEmpty else {
            throw UsageBillingError(
                .invalidInput, "\(provider)'s summary needs --\(flag)", fix: "pass --\(flag) with \(what)", field: flag)
        }
        return value
    }
}

/// One row of a provider's usage report, as the provider states it.
public struct SummaryRow: Sendable, Hashable {
    public var start: String
    public var end: String
    public var customer: String
    public var metric: String
    public var value: String

    public init(start: String, end: String, customer: String, metric: String, value: String) {
        self.start = start
        self.end = end
        self.customer = customer
        self.metric = metric
        self.value = value
    }
}

/// A provider's own usage report.
public protocol UsageSummarizer: Sendable {
    func summary(_ query: SummaryQuery) async throws -> [SummaryRow]
}

/// A meter as a provider lists it.
public struct MeterInfo: Sendable, Hashable {
    public var id: String
    public var eventName: String
    public var displayName: String
    public var status: String
    public var formula: String

    public init(id: String, eventName: String, displayName: String, status: String, formula: String) {
        self.id = id
        self.eventName = eventName
        self.displayName = displayName
        self.status = status
        self.formula = formula
    }
}

/// A provider's meters: the objects that turn its events into billable quantities.
public protocol MeterManager: Sendable {
    /// Every meter, every page read.
    func list() async throws -> [MeterInfo]
    /// A new meter for `eventName`; `formula` is `sum`, `count` or `last`.
    func create(eventName: String, displayName: String, formula: String) async throws -> MeterInfo
}

/// Events a provider refused after taking them, as its report names them.
public struct RejectionReport: Sendable {
    /// The report's type, as the provider names it.
    public var type: String
    /// Each named event and why it was refused.
    public var rejections: [(identifier: String, reason: RejectionReason)]
    /// Refusals the report counts but does not name, by code.
    public var unattributed: [String: Int]

    public init(type: String, rejections: [(identifier: String, reason: RejectionReason)], unattributed: [String: Int])
    {
        self.type = type
        self.rejections = rejections
        self.unattributed = unattributed
    }
}
