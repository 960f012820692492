import Foundation
import UsageBilling

extension ChargebeeSink {
    /// The routing-config kind `chargebee`.
    public static let kind = ProviderKind(name: "chargebee", settingsKeys: ChargebeeSettings.keys, secretKeys: ["api_key"], makeSink: { settings, client, clock, name in
        try ChargebeeSink(settings: ChargebeeSettings.decode(settings), client: client, clock: clock, name: name)
    }, makeReadBack: { settings, client in
        let decoded = try ChargebeeSettings.decode(settings)
        // Usage Events have no read-back in Chargebee: only the Usages mode can be reconciled.
        guard decoded.mode == .usages, decoded.itemPriceID != nil || !decoded.itemPrices.isEmpty else { return nil }
        return try ChargebeeReadBack(settings: decoded, client: client)
    })
}
