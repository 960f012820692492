import Foundation
import UsageBilling

extension ChargebeeSink {
    /// The routing-config kind `chargebee`.
    public static let kind = ProviderKind(
        name: "chargebee", settings: ChargebeeSettings.self, secretKeys: ["api_key"],
        sink: { try ChargebeeSink(settings: $0, client: $1, clock: $2, name: $3) },
        readBack: { settings, client in
            // Usage Events have no read-back in Chargebee: only the Usages mode can be reconciled.
            guard settings.mode == .usages, settings.itemPriceID != nil || !settings.itemPrices.isEmpty else {
                return nil
            }
            return try ChargebeeReadBack(settings: settings, client: client)
        })
}
