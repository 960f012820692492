import Foundation

/// An ``HTTPClient`` that sends nothing: it answers every request `200 {}` and keeps the first
/// few requests, credentials masked, to show what would have gone out.
public final class DryRunHTTPClient: HTTPClient, Sendable {
    private let keep: Int
    private let secrets: [String]
    private let seen = Locked((kept: [HTTPRequest](), count: 0))

    /// - Parameters:
    ///   - keep: how many requests to keep for display.
    ///   - secrets: values to mask wherever they appear.
    public init(keep: Int, secrets: [String]) {
        self.keep = keep
        self.secrets = secrets.filter { $0.count >= 4 }.sorted { $0.count > $1.count }
    }

    public func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        seen.with { seen in
            seen.count += 1
            if seen.kept.count < keep { seen.kept.append(request) }
        }
        return HTTPResponse(status: 200, headers: ["Content-Type": "application/json"], body: Data("{}".utf8))
    }

    /// Requests seen.
    public var requestCount: Int { seen.current.count }

    /// The kept requests as text (method, URL, headers, body), every secret masked.
    public func transcript() -> String {
        seen.current.kept.map { request in
            var text = "\(request.method) \(request.url)\n\(request.headers.description)"
            if let body = request.body, !body.isEmpty { text += "\n\n" + String(decoding: body, as: UTF8.self) }
            return mask(text)
        }.joined(separator: "\n\n")
    }

    /// `text` with every configured secret replaced by its masked form.
    public func mask(_ text: String) -> String {
        secrets.reduce(text) { $0.replacingOccurrences(of: $1, with: Redaction.mask($1)) }
    }
}

extension RoutingConfig {
    /// The values of every provider's secret settings and of every setting taken from the
    /// environment (to mask in output).
    public var secretValues: [String] {
        providers.values.flatMap { p in
            p.settings.keys.filter { isMasked(provider: p.name, key: $0) }.compactMap { p.settings[$0]?.stringValue }
        }
    }
}
