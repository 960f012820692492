import Foundation

/// The window a reconciliation compares totals in.
public enum ReadBackGranularity: String, Sendable, Hashable, CaseIterable, Codable {
    case hour, day

    /// The calendar component of one window.
    public var component: Calendar.Component { self == .hour ? .hour : .day }
}

/// How a provider cuts its totals into windows for one customer.
public enum ReadBackWindowing: Sendable, Hashable {
    /// Hour or day windows cut in this time zone (UTC for most providers; the customer's own
    /// time zone for Orb).
    case aligned(TimeZone)
    /// One total for the whole asked range (e.g. Paddle's next transaction): no windows.
    case wholeRange
}

/// One total a provider reports through its read-back API: a customer, a meter and a window.
public struct ReportedUsage: Sendable, Hashable {
    /// The provider's customer (or subscription) id.
    public var customer: String
    /// The provider's meter: event name, billable metric, item price, add-on or price id.
    public var meter: String
    /// The window's start (inclusive).
    public var start: Date
    /// The window's end (exclusive).
    public var end: Date
    /// The total, in the units your events are recorded in.
    public var value: Decimal

    /// A reported total.
    public init(customer: String, meter: String, start: Date, end: Date, value: Decimal) {
        self.customer = customer
        self.meter = meter
        self.start = start
        self.end = end
        self.value = value
    }
}

/// How an event is named at a provider: the provider's customer id and meter.
public struct ProviderNames: Sendable, Hashable, Comparable {
    /// The provider's customer (or subscription) id.
    public var customer: String
    /// The provider's meter.
    public var meter: String

    /// Names.
    public init(customer: String, meter: String) {
        self.customer = customer
        self.meter = meter
    }

    public static func < (a: ProviderNames, b: ProviderNames) -> Bool { (a.customer, a.meter) < (b.customer, b.meter) }
}

/// A provider's read-back: how it names your events, and the totals it now reports for them.
/// Each provider folder implements one, built from the same settings as its sink, so the names
/// it expects are the names the sink sent.
public protocol UsageReadBack: Sendable {
    /// The provider's names for `event`, as the sink maps it (customer table, event names,
    /// item prices, add-ons, prices).
    func names(for event: UsageEvent) -> ProviderNames

    /// Read-back requests per second the provider allows (read-back is limited harder than ingest).
    var requestsPerSecond: Double { get }

    /// How the provider cuts `customer`'s totals into windows.
    func windowing(customer: String) async throws -> ReadBackWindowing

    /// The totals the provider reports for `customer` and `meters` over [from, to), in windows
    /// of `granularity` (or one total, for ``ReadBackWindowing/wholeRange``). `from` and `to`
    /// are on the window grid of ``windowing(customer:)``. Every page is read.
    func usage(customer: String, meters: [String], from: Date, to: Date, granularity: ReadBackGranularity) async throws
        -> [ReportedUsage]
}

extension UsageReadBack {
    public func windowing(customer: String) async throws -> ReadBackWindowing {
        .aligned(TimeZone(identifier: "UTC") ?? .current)
    }
}

extension Decimal {
    /// A Double from a provider's JSON as the Decimal it printed (no binary noise: 0.1 stays 0.1).
    public init(reported value: Double) {
        if value.rounded() == value, abs(value) <= 9_007_199_254_740_992 {
            self = Decimal(Int64(value))
        } else {
            self = DecimalFormat.parse("\(value)") ?? Decimal(value)
        }
    }
}
