import Foundation

/// How events are folded into one billed quantity per window.
public enum AggregationFormula: String, Sendable, Hashable, Codable, CaseIterable {
    /// The sum of the events' quantities.
    case sum
    /// The number of events (their quantities are ignored).
    case count
    /// The largest quantity.
    case max
    /// The quantity of the latest event by timestamp (ties: the larger id).
    case last
}

/// What each emitted record of a window carries.
public enum AggregationReport: String, Sendable, Hashable, Codable {
    /// The change since the window's previous record (the first record carries the whole value).
    /// For providers that add records up: Chargebee "sum of usages", Recurly `cumulative`
    /// add-ons, Paddle charges.
    case increments
    /// The window's value so far. For providers that bill only the latest record: Chargebee
    /// "most recent usage", Recurly `last_in_period`.
    case totals
}

/// The length of an aggregation window. Windows are aligned in UTC.
public enum AggregationWindow: Sendable, Hashable, CustomStringConvertible {
    /// Fixed windows of `seconds`, aligned to the Unix epoch (1h windows start on the hour,
    /// 1d windows at UTC midnight).
    case fixed(seconds: Int64)
    /// Monthly windows starting at `anchor` (e.g. a billing period that renews on the 3rd);
    /// `month` is anchored at 1970-01-01, i.e. calendar months in UTC.
    case monthly(anchor: Date)

    /// Parses `30m`, `1h`, `1d`, `7d`, `month`, or `billing_period` (which needs `anchor`).
    public static func parse(_ text: String, anchor: Date?) -> AggregationWindow? {
        switch text {
        case "month": return .monthly(anchor: Date(timeIntervalSince1970: 0))
        case "billing_period": return anchor.map { .monthly(anchor: $0) }
        default:
            guard let duration = DurationText.parse(text) else { return nil }
            let seconds = duration.components.seconds
            return seconds >= 60 && seconds % 60 == 0 && 86_400 % seconds == 0 || seconds % 86_400 == 0 && seconds > 0
                ? .fixed(seconds: seconds) : nil
        }
    }

    /// The window holding `date`: [start, end).
    public func bounds(containing date: Date) -> (start: Date, end: Date) {
        switch self {
        case .fixed(let seconds):
            let t = Int64((date.timeIntervalSince1970).rounded(.down))
            let start = t >= 0 ? t / seconds * seconds : -((-t + seconds - 1) / seconds) * seconds
            return (
                Date(timeIntervalSince1970: TimeInterval(start)),
                Date(timeIntervalSince1970: TimeInterval(start + seconds))
            )
        case .monthly(let anchor):
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = TimeZone(identifier: "UTC") ?? calendar.timeZone
            let months = calendar.dateComponents([.month], from: anchor, to: date).month ?? 0
            var k = months
            func add(_ n: Int) -> Date { calendar.date(byAdding: .month, value: n, to: anchor) ?? anchor }
            while add(k) > date { k -= 1 }
            while add(k + 1) <= date { k += 1 }
            return (add(k), add(k + 1))
        }
    }

    public var description: String {
        switch self {
        case .fixed(let seconds) where seconds % 86_400 == 0: "\(seconds / 86_400)d"
        case .fixed(let seconds) where seconds % 3600 == 0: "\(seconds / 3600)h"
        case .fixed(let seconds): "\(seconds / 60)m"
        case .monthly(let anchor) where anchor.timeIntervalSince1970 == 0: "month"
        case .monthly(let anchor): "billing_period from \(RFC3339.format(anchor))"
        }
    }
}

/// Parses short durations: `90s`, `10m`, `1h`, `2d`.
public enum DurationText {
    /// The duration, or nil when `text` is not a positive whole number followed by s, m, h or d.
    public static func parse(_ text: String) -> Duration? {
        guard let unit = text.last, let n = Int64(text.dropLast()), n >= 0 else { return nil }
        switch unit {
        case "s": return .seconds(n)
        case "m": return .seconds(n * 60)
        case "h": return .seconds(n * 3600)
        case "d": return .seconds(n * 86_400)
        default: return nil
        }
    }
}

/// A route's aggregation: window, formula, grace period and what each record carries.
///
/// Decodes from the settings object `aggregate: {window: 1h, formula: sum, grace: 10m,
/// report: increments, anchor: 2026-11-03T00:00:00Z}`; only `window` is required.
public struct AggregationSpec: Sendable, Hashable, Decodable {
    /// The window length.
    public var window: AggregationWindow
    /// How quantities fold.
    public var formula: AggregationFormula
    /// How long after its end a window stays open for late events before it is emitted.
    public var grace: Duration
    /// Whether records carry increments or totals.
    public var report: AggregationReport

    /// The keys the `aggregate` object reads.
    public static let keys: Set<String> = ["window", "formula", "grace", "report", "anchor"]

    /// A spec; see each property.
    public init(
        window: AggregationWindow, formula: AggregationFormula = .sum, grace: Duration = .seconds(300),
        report: AggregationReport = .increments
    ) {
        self.window = window
        self.formula = formula
        self.grace = grace
        self.report = report
    }

    private enum CodingKeys: String, CodingKey { case window, formula, grace, report, anchor }

    public init(from decoder: any Decoder) throws {
        struct AnyKey: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }
        let all = try decoder.container(keyedBy: AnyKey.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let unknown = all.allKeys.sorted(by: { $0.stringValue < $1.stringValue }).first(where: {
            !Self.keys.contains($0.stringValue)
        }) {
            throw UsageBillingError(
                .invalidInput, "unknown aggregate setting '\(unknown.stringValue)'",
                fix: "use window, formula, grace, report, anchor", field: "aggregate.\(unknown.stringValue)")
        }
        let windowText = try c.decode(String.self, forKey: .window)
        var anchor: Date?
        if let text = try c.decodeIfPresent(String.self, forKey: .anchor) {
            guard let date = RFC3339.parse(text) else {
                throw UsageBillingError(
                    .invalidInput, "aggregate.anchor '\(text)' is not an RFC 3339 time",
                    fix: "write e.g. 2026-11-03T00:00:00Z (the start of a billing period)", field: "aggregate.anchor")
            }
            anchor = date
        }
        guard let window = AggregationWindow.parse(windowText, anchor: anchor) else {
            let fix =
                windowText == "billing_period"
                ? "add aggregate.anchor: the start of any billing period, e.g. 2026-11-03T00:00:00Z"
                : "use a whole number of minutes that divides a day (15m, 1h), whole days (1d, 7d), month, or billing_period with an anchor"
            throw UsageBillingError(
                .invalidInput, "aggregate.window '\(windowText)' is not a window", fix: fix, field: "aggregate.window")
        }
        self.window = window
        if let text = try c.decodeIfPresent(String.self, forKey: .formula) {
            guard let formula = AggregationFormula(rawValue: text) else {
                throw UsageBillingError(
                    .invalidInput, "aggregate.formula '\(text)' is not a formula", fix: "use sum, count, max or last",
                    field: "aggregate.formula")
            }
            self.formula = formula
        } else {
            formula = .sum
        }
        if let text = try c.decodeIfPresent(String.self, forKey: .grace) {
            guard let grace = DurationText.parse(text) else {
                throw UsageBillingError(
                    .invalidInput, "aggregate.grace '\(text)' is not a duration", fix: "write e.g. 10m or 1h",
                    field: "aggregate.grace")
            }
            self.grace = grace
        } else {
            grace = .seconds(300)
        }
        if let text = try c.decodeIfPresent(String.self, forKey: .report) {
            guard let report = AggregationReport(rawValue: text) else {
                throw UsageBillingError(
                    .invalidInput, "aggregate.report '\(text)' is not increments or totals",
                    fix: "use increments (the provider adds records up) or totals (it bills the latest)",
                    field: "aggregate.report")
            }
            self.report = report
        } else {
            report = .increments
        }
    }
}

/// Which window an event counts in: (customer, meter, window start).
public struct WindowKey: Sendable, Hashable, Codable, Comparable {
    /// Your customer id.
    public var customer: String
    /// The event name.
    public var meter: String
    /// The window's start, Unix seconds.
    public var start: Int64

    /// A key.
    public init(customer: String, meter: String, start: Int64) {
        self.customer = customer
        self.meter = meter
        self.start = start
    }

    public static func < (a: WindowKey, b: WindowKey) -> Bool {
        (a.start, a.customer, a.meter) < (b.start, b.customer, b.meter)
    }
}

/// One window's running state; stored by the spool so a restart neither loses nor double-counts.
public struct WindowState: Sendable, Hashable, Codable {
    /// The window's end, Unix seconds.
    public var end: Int64
    /// The value under the formula so far.
    public var value: Decimal
    /// Events folded in.
    public var events: Int
    /// The latest event's timestamp and id (for `last`).
    public var lastTimestamp: Double
    public var lastID: String
    /// The last emitted record's revision (-1: none yet) and the value it reported up to.
    public var emittedRevision: Int
    public var emittedValue: Decimal
    /// Whether events came in since the last record.
    public var dirty: Bool

    /// An empty window ending at `end`.
    public init(end: Int64) {
        self.end = end
        value = 0
        events = 0
        lastTimestamp = -.infinity
        lastID = ""
        emittedRevision = -1
        emittedValue = 0
        dirty = false
    }
}

/// What an aggregate record says about its window, read back from its event.
public struct AggregateInfo: Sendable, Hashable {
    /// Property names on an aggregate event (strings and numbers).
    public enum Key {
        public static let windowStart = "ub_window_start"
        public static let windowEnd = "ub_window_end"
        public static let revision = "ub_revision"
        public static let events = "ub_events"
        public static let total = "ub_window_total"
        /// Every aggregate property.
        public static let all: Set<String> = [windowStart, windowEnd, revision, events, total]
    }

    /// The window.
    public var windowStart: Date
    public var windowEnd: Date?
    /// 0 for a window's first record, then 1, 2, ... for records after late events.
    public var revision: Int
    /// Raw events folded into the window so far.
    public var events: Int?
    /// The window's value so far (the quantity is this or the increment, per the spec's report).
    public var total: Decimal?

    /// The info on `event`; an event that did not come from an aggregator is its own window
    /// (start = its timestamp, revision 0), so a sink can take hand-made records too.
    public init(_ event: UsageEvent) {
        func number(_ key: String) -> Decimal? {
            if case .number(let n)? = event.properties[key] { return n } else { return nil }
        }
        func date(_ key: String) -> Date? {
            if case .string(let s)? = event.properties[key] { return RFC3339.parse(s) } else { return nil }
        }
        windowStart = date(Key.windowStart) ?? event.timestamp
        windowEnd = date(Key.windowEnd)
        revision = number(Key.revision).map { NSDecimalNumber(decimal: $0).intValue } ?? 0
        events = number(Key.events).map { NSDecimalNumber(decimal: $0).intValue }
        total = number(Key.total)
    }

    /// A window record as a provider that takes raw events gets it: the window's quantity
    /// under the meter's name, without the aggregate bookkeeping properties. A window folds
    /// events whatever their properties, so none of theirs survive (the spool keeps them).
    /// Other events pass unchanged.
    public static func asEvent(_ event: UsageEvent) -> UsageEvent {
        guard event.properties[Key.windowStart] != nil else { return event }
        var record = event
        record.properties = userProperties(of: event)
        return record
    }

    /// The event's properties without the aggregate ones.
    public static func userProperties(of event: UsageEvent) -> [String: UsageValue] {
        event.properties.filter { !Key.all.contains($0.key) }
    }
}

/// Client-side windowed aggregation for providers that bill quantities per period (Chargebee
/// usages, Recurly, Paddle): sum, count, max or last per (customer, meter, window).
///
/// - Late events land in their own window (by timestamp), not the current one.
/// - A window is emitted once `now ≥ end + grace`, or on ``flush()``. Each emitted record is a
///   ``UsageEvent`` whose id is derived from (namespace, customer, meter, window start) — plus the
///   revision after the first — so re-emitting the same record never bills twice.
/// - Events arriving after a window was emitted make it dirty; it is emitted again as the next
///   revision, carrying the increment (or the new total, per ``AggregationSpec/report``).
///
/// A value type with injected time: the spool stores ``windows`` and rebuilds it after a restart.
public struct WindowAggregator: Sendable {
    /// The spec.
    public let spec: AggregationSpec
    /// The provider (lane) name the ids are derived with.
    public let namespace: String
    /// Every window seen and not yet forgotten.
    public private(set) var windows: [WindowKey: WindowState]

    /// An aggregator; `windows` restores saved state.
    public init(spec: AggregationSpec, namespace: String, windows: [WindowKey: WindowState] = [:]) {
        self.spec = spec
        self.namespace = namespace
        self.windows = windows
    }

    /// The window `event` counts in.
    public func key(for event: UsageEvent) -> (WindowKey, end: Int64) {
        var none: (start: Date, end: Date)?
        return key(for: event, reusing: &none)
    }

    /// The window `event` counts in, reusing `bounds` when the event falls inside them (and
    /// leaving there the bounds it used): month windows cost a calendar computation each, and a
    /// batch's events mostly share one window.
    public func key(for event: UsageEvent, reusing bounds: inout (start: Date, end: Date)?) -> (WindowKey, end: Int64) {
        let t = event.timestamp
        let window = bounds.flatMap { t >= $0.start && t < $0.end ? $0 : nil } ?? spec.window.bounds(containing: t)
        bounds = window
        return (
            WindowKey(customer: event.customer, meter: event.name, start: Int64(window.start.timeIntervalSince1970)),
            Int64(window.end.timeIntervalSince1970)
        )
    }

    /// Folds `event` into its window (by its timestamp, however late).
    public mutating func add(_ event: UsageEvent) {
        let (key, end) = self.key(for: event)
        var state = windows[key] ?? WindowState(end: end)
        Self.fold(event, into: &state, formula: spec.formula)
        windows[key] = state
    }

    /// Folds one event into a state under `formula`.
    public static func fold(_ event: UsageEvent, into state: inout WindowState, formula: AggregationFormula) {
        let t = event.timestamp.timeIntervalSince1970
        let isLatest = (t, event.id) > (state.lastTimestamp, state.lastID)
        switch formula {
        case .sum: state.value += event.quantity
        case .count: state.value += 1
        case .max: state.value = state.events == 0 ? event.quantity : Swift.max(state.value, event.quantity)
        case .last: if isLatest { state.value = event.quantity }
        }
        if isLatest {
            state.lastTimestamp = t
            state.lastID = event.id
        }
        state.events += 1
        state.dirty = true
    }

    /// Emits every dirty window whose end plus the grace period is at or before `now`.
    public mutating func closeDue(now: Date) -> [UsageEvent] {
        let limit = now.timeIntervalSince1970 - spec.grace.seconds
        return emit { Double($0.end) <= limit }
    }

    /// Emits every dirty window, open or not (an explicit flush).
    public mutating func flush() -> [UsageEvent] { emit { _ in true } }

    /// Drops clean windows that ended before `date` (their ids stay derivable; a later event
    /// for one would start again at revision 0, so keep this well past any late arrival).
    public mutating func forget(endedBefore date: Date) {
        let t = Int64(date.timeIntervalSince1970)
        windows = windows.filter { $0.value.dirty || $0.value.end >= t }
    }

    private mutating func emit(_ due: (WindowState) -> Bool) -> [UsageEvent] {
        var out: [UsageEvent] = []
        for key in windows.keys.sorted() {
            guard var state = windows[key], state.dirty, due(state) else { continue }
            if let event = Self.record(for: key, state: &state, spec: spec, namespace: namespace) { out.append(event) }
            windows[key] = state
        }
        return out
    }

    /// The record to emit for a dirty window, updating its emitted revision and value; nil when
    /// the window's value did not change since the last record (nothing to bill).
    public static func record(for key: WindowKey, state: inout WindowState, spec: AggregationSpec, namespace: String)
        -> UsageEvent?
    {
        state.dirty = false
        let increment = state.value - state.emittedValue
        if state.emittedRevision >= 0 && increment == 0 { return nil }
        let revision = state.emittedRevision + 1
        var parts = [namespace, key.customer, key.meter, String(key.start)]
        if revision > 0 { parts.append("r\(revision)") }
        let quantity = spec.report == .totals || revision == 0 ? state.value : increment
        state.emittedRevision = revision
        state.emittedValue = state.value
        let start = Date(timeIntervalSince1970: TimeInterval(key.start))
        return UsageEvent(
            id: EventID.derived(from: parts), name: key.meter, customer: key.customer, timestamp: start,
            quantity: quantity,
            properties: [
                AggregateInfo.Key.windowStart: .string(RFC3339.format(start)),
                AggregateInfo.Key.windowEnd: .string(
                    RFC3339.format(Date(timeIntervalSince1970: TimeInterval(state.end)))),
                AggregateInfo.Key.revision: .number(Decimal(revision)),
                AggregateInfo.Key.events: .number(Decimal(state.events)),
                AggregateInfo.Key.total: .number(state.value),
            ])
    }
}
