import Foundation
import UsageBilling

extension RecurlySink {
    /// The routing-config kind `recurly`.
    public static let kind = ProviderKind(
        name: "recurly", settings: RecurlySettings.self, secretKeys: ["api_key"],
        sink: { try RecurlySink(settings: $0, client: $1, clock: $2, name: $3) },
        readBack: { RecurlyReadBack(settings: $0, client: $1) })
}
