import Foundation
import UsageBilling

extension RecurlySink {
    /// The routing-config kind `recurly`.
    public static let kind = ProviderKind(name: "recurly", settingsKeys: RecurlySettings.keys, secretKeys: ["api_key"], makeSink: { settings, client, clock, name in
        try RecurlySink(settings: RecurlySettings.decode(settings), client: client, clock: clock, name: name)
    }, makeReadBack: { settings, client in
        RecurlyReadBack(settings: try RecurlySettings.decode(settings), client: client)
    })
}
