import ChargebeeUsage
import Foundation
import MetronomeUsage
import OpenMeterUsage
import OrbUsage
import PaddleUsage
import RecurlyUsage
import StripeUsage
import UsageBilling
import UsageRouting

/// One line of a totals comparison: a provider's customer and meter.
struct TotalsKey: Hashable, Comparable {
    var provider: String
    var customer: String
    var meter: String
    static func < (a: TotalsKey, b: TotalsKey) -> Bool { (a.provider, a.customer, a.meter) < (b.provider, b.customer, b.meter) }
}

/// How a provider names a recorded event: its customer id and its meter (event name, item price,
/// add-on or price), read from the lane's settings the way each adapter maps them.
func providerNames(for event: UsageEvent, kind: String, settings: JSONValue) -> (customer: String, meter: String) {
    func table(_ key: String) -> [String: String] {
        guard case .object(let o)? = settings[key] else { return [:] }
        return o.compactMapValues(\.stringValue)
    }
    let customer = table("customers")[event.customer] ?? event.customer
    let meter: String
    switch kind {
    case "chargebee":
        meter = settings["mode"]?.stringValue == "usage_events" ? "usage_events" : (table("item_prices")[event.name] ?? settings["item_price_id"]?.stringValue ?? "?")
    case "recurly": meter = table("add_ons")[event.name] ?? settings["add_on_id"]?.stringValue ?? "?"
    case "paddle": meter = table("prices")[event.name] ?? settings["price_id"]?.stringValue ?? "?"
    default: meter = table("event_names")[event.name] ?? settings["event_name"]?.stringValue ?? event.name
    }
    return (customer, meter)
}

/// What one provider reports, through its own read-back API, for these customers and meters
/// over [from, to). Conventions of the emulator where the real API needs more: an Orb
/// customer's subscription id is its external customer id.
func reportedTotals(provider: String, kind: String, settings: JSONValue, keys: [TotalsKey], from: Date, to: Date,
                    client: any HTTPClient) async throws -> [TotalsKey: Decimal] {
    var out: [TotalsKey: Decimal] = [:]
    func dec(_ d: Double) -> Decimal { Decimal(string: "\(d)", locale: Locale(identifier: "en_US_POSIX")) ?? 0 }
    let customers = Array(Set(keys.map(\.customer))).sorted()
    switch kind {
    case "stripe":
        let stripe = try StripeBillingClient(settings: try StripeSettings.decode(settings), client: client)
        let meters = try await stripe.listMeters()
        for key in keys {
            guard let meter = meters.first(where: { $0.eventName == key.meter }) else { continue }
            let start = Date(timeIntervalSince1970: (from.timeIntervalSince1970 / 60).rounded(.down) * 60)
            let end = Date(timeIntervalSince1970: (to.timeIntervalSince1970 / 60).rounded(.up) * 60)
            let rows = try await stripe.eventSummaries(meterID: meter.id, customer: key.customer, start: start, end: end)
            out[key] = rows.reduce(Decimal(0)) { $0 + dec($1.aggregatedValue) }
        }
    case "orb":
        let orb = try OrbClient(settings: try OrbSettings.decode(settings), client: client)
        for customer in customers {
            for usage in try await orb.subscriptionUsage(subscriptionID: customer, start: from, end: to, daily: false) {
                let key = TotalsKey(provider: provider, customer: customer, meter: usage.metricName)
                out[key, default: 0] += usage.windows.reduce(Decimal(0)) { $0 + dec($1.quantity) }
            }
        }
    case "metronome":
        let metronome = try MetronomeClient(settings: try MetronomeSettings.decode(settings), client: client)
        let start = Date(timeIntervalSince1970: (from.timeIntervalSince1970 / 86_400).rounded(.down) * 86_400)
        let end = max(start.addingTimeInterval(86_400), Date(timeIntervalSince1970: (to.timeIntervalSince1970 / 86_400).rounded(.up) * 86_400))
        for row in try await metronome.usage(start: start, end: end, window: "day", customerIDs: customers) {
            out[TotalsKey(provider: provider, customer: row.customerID, meter: row.billableMetricName), default: 0] += dec(row.value ?? 0)
        }
    case "openmeter":
        let openMeter = try OpenMeterClient(settings: try OpenMeterSettings.decode(settings), client: client)
        for meter in Set(keys.map(\.meter)).sorted() {
            for row in try await openMeter.query(meter: meter, from: from, to: to, subjects: customers) {
                out[TotalsKey(provider: provider, customer: row.subject ?? "", meter: meter), default: 0] += dec(row.value)
            }
        }
    case "chargebee":
        let chargebee = try ChargebeeClient(settings: try ChargebeeSettings.decode(settings), client: client)
        for customer in customers {
            for usage in try await chargebee.usages(from: from, to: to, subscriptionID: customer) {
                out[TotalsKey(provider: provider, customer: customer, meter: usage.itemPriceID), default: 0] += usage.decimalQuantity ?? 0
            }
        }
    case "recurly":
        let recurly = RecurlyClient(settings: try RecurlySettings.decode(settings), client: client)
        for key in keys {
            let rows = try await recurly.usage(subscription: key.customer, addOn: key.meter, begin: from, end: to)
            out[key] = rows.reduce(Decimal(0)) { $0 + dec($1.amount ?? 0) }
        }
    case "paddle":
        let paddle = PaddleClient(settings: try PaddleSettings.decode(settings), client: client)
        for customer in customers {
            for line in try await paddle.nextTransactionLines(subscription: customer) {
                out[TotalsKey(provider: provider, customer: customer, meter: line.priceID ?? "?"), default: 0] += Decimal(line.quantity)
            }
        }
    default:
        break
    }
    return out
}
