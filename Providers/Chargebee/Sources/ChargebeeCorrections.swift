import Foundation
import UsageBilling

/// A window lowered after it was billed (events voided from it): Chargebee usages take no
/// negative quantity, and its way to correct a usage is to delete it and add it again. The
/// window's earlier records (`usage_date` from the window's start up to this revision's) are
/// deleted and one record with the window's new total is created under this revision's id. Every
/// step may be repeated: a record already deleted is gone from the list, and the new record's id
/// dedupes. A record already on an invoice cannot be deleted: that is final, with the manual fix.
extension ChargebeeSink {
    func replaceWindow(_ event: UsageEvent, info: AggregateInfo, total: Decimal) async throws -> DeliveryOutcome {
        var replacement = event
        replacement.quantity = total
        // The record to create, checked as any usage is, before anything is deleted.
        guard case .success(let (subscription, fields)) = usageFields(replacement),
            let itemPrice = fields.first(where: { $0.0 == "item_price_id" })?.1
        else { return try await deliverUsage(replacement) }
        let start = info.windowStart
        do {
            let chargebee = try ChargebeeClient(settings: settings, client: client)
            let earlier = try await chargebee.usages(
                from: start, to: start.addingTimeInterval(TimeInterval(info.revision - 1)),
                subscriptionID: subscription,
                itemPriceID: itemPrice)
            if let invoiced = earlier.first(where: { $0.invoiceID != nil }) {
                return .rejected(
                    .local(
                        "usage_invoiced", field: "quantity",
                        "events were voided from a window Chargebee already invoiced (invoice \(invoiced.invoiceID ?? "")); usage on an invoice cannot be deleted. By hand: issue a credit note on that invoice for \(DecimalFormat.plain(-event.quantity)) of \(itemPrice)"
                    ))
            }
            for record in earlier {
                guard let id = record.id else { continue }
                do {
                    try await chargebee.deleteUsage(
                        subscriptionID: subscription, usageID: id,
                        idempotencyKey: EventID.derived(from: [event.id, "delete", id]))
                } catch let error as UsageBillingError where error.code == .notFound {
                    continue  // deleted by an earlier attempt
                }
            }
        } catch {
            return try DeliveryOutcome.ofCorrection(failingWith: error)
        }
        return try await deliverUsage(replacement)
    }
}
