import Foundation
import UsageBilling

/// Stripe validates most meter events after accepting them and reports failures as
/// `v1.billing.meter.error_report_triggered` / `v1.billing.meter.no_meter_found` events. This
/// turns such an event (as a webhook handler receives it, or fetched via the v2 events API)
/// into per-event rejections keyed by identifier, so they can be fed back as dead letters.
///
/// Stripe includes only *sample* errors per error type, so ``unattributed`` counts the failures
/// whose identifiers the report does not name: reconcile those through event summaries.
public struct StripeMeterErrorReport: Sendable, Hashable {
    /// The event type (`v1.billing.meter.error_report_triggered` or `v1.billing.meter.no_meter_found`).
    public var type: String
    /// The meter concerned, when the report names one.
    public var meterID: String?
    /// The validation window the report covers.
    public var validationStart: Date?
    /// The end of the validation window.
    public var validationEnd: Date?
    /// Rejections of identified events, in report order.
    public var rejections: [(identifier: String, reason: RejectionReason)]
    /// Per error code, how many failures the report counted but did not name.
    public var unattributed: [String: Int]

    /// Event types this parser understands.
    public static let eventTypes: Set<String> = [
        "v1.billing.meter.error_report_triggered", "v1.billing.meter.no_meter_found",
    ]

    /// Parses a thin or fetched event body.
    /// - Throws: `.invalidInput` naming what is missing when the JSON is not such an event.
    public static func parse(_ data: Data) throws -> StripeMeterErrorReport {
        guard let root = JSONValue.parse(data), case .object = root else {
            throw UsageBillingError(
                .invalidInput, "the webhook body is not a JSON object", fix: "pass the raw request body", field: "body")
        }
        guard let type = root["type"]?.stringValue, eventTypes.contains(type) else {
            throw UsageBillingError(
                .invalidInput, "not a meter error event (type \(root["type"]?.stringValue ?? "missing"))",
                fix: "only pass \(eventTypes.sorted().joined(separator: " or ")) events", field: "type")
        }
        guard let payload = root["data"], let reason = payload["reason"],
            let errorTypes = reason["error_types"]?.arrayValue
        else {
            throw UsageBillingError(
                .invalidInput, "the event has no data.reason.error_types; it is the thin form",
                fix: "fetch the full event (GET /v2/core/events/{id}) and pass that", field: "data")
        }
        var rejections: [(String, RejectionReason)] = []
        var unattributed: [String: Int] = [:]
        for errorType in errorTypes {
            let code = errorType["code"]?.stringValue ?? "unknown"
            let samples = errorType["sample_errors"]?.arrayValue ?? []
            var named = 0
            for sample in samples {
                guard let identifier = sample["request"]?["identifier"]?.stringValue else { continue }
                named += 1
                let message = sample["error_message"]?.stringValue ?? "Stripe reported \(code) for this event"
                rejections.append(
                    (
                        identifier,
                        RejectionReason(
                            code: code, message: message, field: field(for: code),
                            origin: .provider, providerRequestID: root["id"]?.stringValue)
                    ))
            }
            let count = Int(errorType["error_count"]?.numberValue ?? Double(samples.count))
            if count > named { unattributed[code, default: 0] += count - named }
        }
        return StripeMeterErrorReport(
            type: type,
            meterID: root["related_object"]?["id"]?.stringValue,
            validationStart: payload["validation_start"]?.stringValue.flatMap(RFC3339.parse),
            validationEnd: payload["validation_end"]?.stringValue.flatMap(RFC3339.parse),
            rejections: rejections, unattributed: unattributed)
    }

    /// The event field a Stripe async error code points at.
    static func field(for code: String) -> String? {
        switch code {
        case "meter_event_customer_not_found", "meter_event_no_customer_defined": "customer"
        case "meter_event_invalid_value", "meter_event_value_too_many_digits": "quantity"
        case "timestamp_in_future", "timestamp_too_far_in_past": "timestamp"
        case "no_meter", "archived_meter": "name"
        case "meter_event_dimension_count_too_high", "missing_dimension_payload_keys": "properties"
        default: nil
        }
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.type == rhs.type && lhs.meterID == rhs.meterID && lhs.unattributed == rhs.unattributed
            && lhs.rejections.map(\.identifier) == rhs.rejections.map(\.identifier)
            && lhs.rejections.map(\.reason) == rhs.rejections.map(\.reason)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(type)
        hasher.combine(meterID)
        for r in rejections { hasher.combine(r.identifier) }
    }
}
