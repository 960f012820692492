import Foundation
import UsageBilling

/// Paddle's read-back for reconciliation: the charges waiting in the subscription's next
/// transaction, one total per price for the whole range (Paddle keeps no usage windows).
/// Quantities are turned back into your units (× `units_per_quantity`), so with rounding a
/// window may differ from the ledger by less than one Paddle unit.
public struct PaddleReadBack: UsageReadBack {
    let settings: PaddleSettings
    let client: PaddleClient

    /// A read-back over `settings`.
    public init(settings: PaddleSettings, client: any HTTPClient) {
        self.settings = settings
        self.client = PaddleClient(settings: settings, client: client)
    }

    public func names(for event: UsageEvent) -> ProviderNames {
        ProviderNames(
            customer: settings.mapping.providerCustomer(for: event), meter: settings.price(for: event.name) ?? "")
    }

    /// Paddle allows 240 requests a minute per IP.
    public var requestsPerSecond: Double { 3 }

    public func windowing(customer: String) async throws -> ReadBackWindowing { .wholeRange }

    public func usage(customer: String, meters: [String], from: Date, to: Date, granularity: ReadBackGranularity)
        async throws -> [ReportedUsage]
    {
        try await client.nextTransactionLines(subscription: customer)
            .filter { line in meters.isEmpty || line.priceID.map(meters.contains) == true }
            .map {
                ReportedUsage(
                    customer: customer, meter: $0.priceID ?? "", start: from, end: to,
                    value: Decimal($0.quantity) * settings.unitsPerQuantity)
            }
    }
}
