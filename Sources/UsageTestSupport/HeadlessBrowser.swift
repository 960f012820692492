import Foundation
import UsageBilling

/// Headless Chromium (Debian's `chromium`), for tests that load a page in a real browser.
///
/// Every request the page makes off this machine goes to a recording proxy instead of the
/// network, so a test can assert that a page loaded nothing from anywhere. Chromium's own
/// background services (updates, time, sign-in) are sent direct, away from the proxy: they are
/// not the page's doing.
public struct HeadlessBrowser: Sendable {
    public let executable: String
    let proxy: LoopbackHTTPServer
    private let seen: Locked<[String]>

    /// Chromium's own hosts, which it calls whatever page it shows.
    static let backgroundHosts = [
        "update.googleapis.com", "accounts.google.com", "clients2.google.com", "redirector.gvt1.com", "*.gvt1.com",
        "optimizationguide-pa.googleapis.com", "safebrowsingohttpgateway.googleapis.com",
    ]

    /// A browser and its recording proxy; throws naming the package to install when Chromium
    /// is missing.
    public static func start() async throws -> HeadlessBrowser {
        guard
            let executable = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].first(
                where: FileManager.default.isExecutableFile)
        else {
            throw UsageBillingError(
                .configuration, "no headless Chromium on this machine",
                fix: "run scripts/setup.sh (it installs Debian's chromium package)")
        }
        let seen = Locked<[String]>([])
        let proxy = try await LoopbackHTTPServer.start(immediate: { request in
            seen.with { $0.append("\(request.method) \(request.target) (Host: \(request.headers["Host"] ?? "?"))") }
            return .now(.respond(HTTPResponse(status: 502, headers: [:], body: Data())))
        })
        return HeadlessBrowser(executable: executable, proxy: proxy, seen: seen)
    }

    private init(executable: String, proxy: LoopbackHTTPServer, seen: Locked<[String]>) {
        self.executable = executable
        self.proxy = proxy
        self.seen = seen
    }

    /// Requests that went for the network since the browser started.
    public var networkRequests: [String] { seen.current }

    /// Loads `url` and returns the DOM once the page has loaded.
    public func dumpDOM(_ url: String) async throws -> String {
        let profile = FileManager.default.temporaryDirectory.appending(
            path: "ub-chromium-\(UUID().uuidString.prefix(8))"
        ).path
        defer { try? FileManager.default.removeItem(atPath: profile) }
        let (status, output) = try await ChildProcess.run(
            executable,
            [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
                "--disable-sync",
                "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
                "--disable-domain-reliability",
                "--user-data-dir=\(profile)", "--proxy-server=http://127.0.0.1:\(proxy.port)",
                "--proxy-bypass-list=" + Self.backgroundHosts.joined(separator: ";"),
                "--virtual-time-budget=3000", "--dump-dom", url,
            ])
        guard status == 0, let start = output.range(of: "<html") else {
            throw UsageBillingError(
                .unexpectedResponse, "chromium could not load \(url) (exit \(status)): \(output.suffix(2_000))",
                fix: "run it by hand: \(executable) --headless --no-sandbox --dump-dom \(url)")
        }
        let dom = output[start.lowerBound...]
        return String(dom[..<(dom.range(of: "</html>")?.upperBound ?? dom.endIndex)])
    }

    public func shutdown() async { await proxy.shutdown() }

}
