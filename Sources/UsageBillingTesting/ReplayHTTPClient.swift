import Foundation
import UsageBilling

/// An ``HTTPClient`` that answers from recorded exchanges, in order, and fails on any request
/// that does not match the next one: method, scheme/host/path, query (as a multiset), the
/// headers the fixture lists, and the body (form fields as a multiset, JSON by value).
/// After the run, ``unconsumed`` lists exchanges never requested; ``failures`` every mismatch.
public final class ReplayHTTPClient: HTTPClient {
    private let state: Locked<(next: Int, received: [HTTPRequest], failures: [String])>
    private let exchanges: [FixtureExchange]

    /// A client that answers with `exchanges`, in order.
    public init(_ exchanges: [FixtureExchange]) {
        self.exchanges = exchanges
        self.state = Locked((next: 0, received: [], failures: []))
    }

    /// Sends `request` (see the type's documentation for how it is answered).
    public func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        let (index, count) = state.with { s -> (Int, Int) in
            s.received.append(request)
            defer { s.next += 1 }
            return (s.next, s.received.count)
        }
        guard index < exchanges.count else {
            let message =
                "unexpected request #\(count): \(request.method) \(request.url) (fixture has \(exchanges.count) exchanges)"
            state.with { $0.failures.append(message) }
            throw UsageBillingError(.fixtureMismatch, message, fix: "record the missing exchange or fix the adapter")
        }
        let exchange = exchanges[index]
        let problems = Self.mismatches(request, exchange.request)
        guard problems.isEmpty else {
            let message =
                "request #\(count) \(request.method) \(request.url) does not match the fixture: "
                + problems.joined(separator: "; ")
            state.with { $0.failures.append(message) }
            throw UsageBillingError(.fixtureMismatch, message, fix: "fix the adapter or re-record the fixture")
        }
        if let failure = exchange.failure { throw failure.error }
        guard let response = exchange.response else {
            throw UsageBillingError(.fixtureMismatch, "exchange #\(count) has neither response nor failure")
        }
        return response.httpResponse
    }

    /// Requests received so far, in order.
    public var received: [HTTPRequest] { state.with { $0.received } }
    /// Every mismatch or unexpected request seen.
    public var failures: [String] { state.with { $0.failures } }
    /// Exchanges never requested.
    public var unconsumed: [FixtureExchange] {
        let next = state.with { $0.next }
        return next < exchanges.count ? Array(exchanges[next...]) : []
    }

    /// Why `actual` does not match `expected`; empty when it does.
    public static func mismatches(_ actual: HTTPRequest, _ expected: FixtureRequest) -> [String] {
        var problems: [String] = []
        if actual.method.rawValue != expected.method.uppercased() {
            problems.append("method \(actual.method), expected \(expected.method)")
        }
        let (actualBase, actualQuery) = split(actual.url)
        let (expectedBase, expectedQuery) = split(expected.url)
        if actualBase != expectedBase { problems.append("URL \(actualBase), expected \(expectedBase)") }
        if !sameMultiset(actualQuery, expectedQuery) {
            problems.append("query \(describe(actualQuery)), expected \(describe(expectedQuery))")
        }
        for (name, value) in expected.headers.sorted(by: { $0.key < $1.key }) {
            guard let got = actual.headers[name] else {
                problems.append("header \(name) missing")
                continue
            }
            if value != "*", got != value {
                let shown = Redaction.isSensitiveHeader(name) ? Redaction.mask(got) : got
                problems.append("header \(name) is '\(shown)', expected '\(value)'")
            }
        }
        let body = actual.body ?? Data()
        if let form = expected.form {
            let got = FormEncoding.decode(String(decoding: body, as: UTF8.self))
            let want = FormEncoding.decode(form)
            if !sameMultiset(got, want) {
                let missing = difference(want, got), extra = difference(got, want)
                problems.append("form body differs; missing \(describe(missing)), unexpected \(describe(extra))")
            }
        } else if let json = expected.json {
            if let got = JSONValue.parse(body) {
                if got != json { problems.append("JSON body \(got), expected \(json)") }
            } else {
                problems.append("body is not JSON: \(String(decoding: body.prefix(200), as: UTF8.self))")
            }
        } else if let text = expected.body {
            if String(decoding: body, as: UTF8.self) != text { problems.append("body differs") }
        } else if !body.isEmpty {
            problems.append("unexpected body of \(body.count) bytes")
        }
        return problems
    }

    private static func split(_ url: String) -> (String, [(String, String)]) {
        guard let q = url.firstIndex(of: "?") else { return (url, []) }
        return (String(url[..<q]), FormEncoding.decode(String(url[url.index(after: q)...])))
    }

    private static func sameMultiset(_ a: [(String, String)], _ b: [(String, String)]) -> Bool {
        a.map { "\($0.0)=\($0.1)" }.sorted() == b.map { "\($0.0)=\($0.1)" }.sorted()
    }

    private static func difference(_ a: [(String, String)], _ b: [(String, String)]) -> [(String, String)] {
        var remaining = b.map { "\($0.0)=\($0.1)" }
        return a.filter { pair in
            if let i = remaining.firstIndex(of: "\(pair.0)=\(pair.1)") {
                remaining.remove(at: i)
                return false
            }
            return true
        }
    }

    private static func describe(_ pairs: [(String, String)]) -> String {
        pairs.isEmpty ? "[]" : "[" + pairs.map { "\($0.0)=\($0.1)" }.joined(separator: ", ") + "]"
    }
}
