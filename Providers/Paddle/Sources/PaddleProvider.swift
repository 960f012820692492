import Foundation
import UsageBilling

extension PaddleSink {
    /// The routing-config kind `paddle`.
    public static let kind = ProviderKind(name: "paddle", settings: PaddleSettings.self, secretKeys: ["api_key"],
                                          sink: { try PaddleSink(settings: $0, client: $1, clock: $2, name: $3) },
                                          readBack: { try PaddleReadBack(settings: $0, client: $1) }, tools: ProviderTools(placeholderSecret: "pdl_sdbx_apikey_REDACTED_demo"))
}
