import Foundation
import UsageBilling

extension PaddleSink {
    /// The routing-config kind `paddle`.
    public static let kind = ProviderKind(
        name: "paddle", settings: PaddleSettings.self, secretKeys: ["api_key"],
        sink: { try PaddleSink(settings: $0, client: $1, clock: $2, name: $3) },
        readBack: { PaddleReadBack(settings: $0, client: $1) },
        tools: ProviderTools(placeholderSecret: "pdl_sdbx_apikey_REDACTED_demo"))
}

extension PaddleUsageSink {
    /// The routing-config kind `paddle_usage`: Paddle's usage events (early access, beta).
    public static let kind = ProviderKind(
        name: "paddle_usage", settings: PaddleUsageSettings.self, secretKeys: ["api_key"],
        sink: { try PaddleUsageSink(settings: $0, client: $1, clock: $2, name: $3) },
        readBack: { PaddleUsageReadBack(settings: $0, client: $1) },
        tools: ProviderTools(placeholderSecret: "pdl_sdbx_apikey_REDACTED_demo"),
        notice:
            "beta: Paddle's usage-based billing is early access; this follows its docs as of \(PaddleUsageSettings.docsChecked)"
    )
}
