import Foundation
import UsageBilling

extension PaddleSink {
    /// The routing-config kind `paddle`.
    public static let kind = ProviderKind(name: "paddle", settingsKeys: PaddleSettings.keys, secretKeys: ["api_key"], makeSink: { settings, client, clock, name in
        try PaddleSink(settings: PaddleSettings.decode(settings), client: client, clock: clock, name: name)
    }, makeReadBack: { settings, client in
        PaddleReadBack(settings: try PaddleSettings.decode(settings), client: client)
    }, tools: ProviderTools(placeholderSecret: "pdl_sdbx_apikey_REDACTED_demo"))
}
