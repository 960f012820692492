import Foundation
import Testing
import UsageBilling
@testable import UsageBillingCurl
import UsageBillingTesting
import UsageTestSupport

/// CurlHTTPClient against a loopback server the tests start (127.0.0.1 only, bounded loops).
@Suite("CurlHTTPClient", .timeLimit(.minutes(2)))
struct CurlHTTPClientTests {
    static func echo(_ request: LoopbackHTTPServer.Request) -> LoopbackHTTPServer.Action {
        var headers = HeaderFields()
        headers.add(name: "X-Method", value: request.method)
        headers.add(name: "X-Target", value: request.target)
        headers.add(name: "X-Multi", value: "one")
        headers.add(name: "X-Multi", value: "two")
        headers.add(name: "X-Got-Header", value: request.headers["X-Custom"] ?? "none")
        return .respond(
            HTTPResponse(status: request.path == "/missing" ? 404 : 200, headers: headers, body: request.body))
    }

    @Test func sendsMethodHeadersBodyAndReturnsAllResponseHeaders() async throws {
        let server = try await LoopbackHTTPServer.start { Self.echo($0) }
        let client = try CurlHTTPClient()
        defer { client.shutdown() }
        let body = Data("event_name=x&payload[value]=5".utf8)
        let response = try await client.send(
            HTTPRequest(
                method: .post, url: server.baseURL + "/v1/echo?a=1&b=two",
                headers: ["X-Custom": "hello", "Content-Type": "text/plain"], body: body))
        #expect(response.status == 200)
        #expect(response.body == body)
        #expect(response.headers["x-method"] == "POST")
        #expect(response.headers["X-Target"] == "/v1/echo?a=1&b=two")
        #expect(response.headers.values(for: "X-Multi") == ["one", "two"])
        #expect(response.headers["X-Got-Header"] == "hello")
        let missing = try await client.send(HTTPRequest(method: .get, url: server.baseURL + "/missing"))
        #expect(missing.status == 404)
        let delete = try await client.send(HTTPRequest(method: .delete, url: server.baseURL + "/thing"))
        #expect(delete.headers["X-Method"] == "DELETE")
        await server.shutdown()
    }

    /// A server answering on its event loop: requests answered at once and requests handed to
    /// a task (here a slow one) share one kept-alive connection and each gets its own answer.
    @Test func immediateAndLaterAnswersShareAConnection() async throws {
        let server = try await LoopbackHTTPServer.start(immediate: { request in
            if request.path == "/slow" {
                return .later {
                    try? await Task.sleep(for: .milliseconds(30))
                    return .respond(HTTPResponse(status: 202, body: Data("slow".utf8)))
                }
            }
            return .now(Self.echo(request))
        })
        let client = try CurlHTTPClient(configuration: .init(threads: 1))
        defer { client.shutdown() }
        for i in 0..<6 {
            let path = i % 2 == 0 ? "/fast" : "/slow"
            let response = try await client.send(
                HTTPRequest(method: .post, url: server.baseURL + path, body: Data("n=\(i)".utf8)))
            #expect(response.status == (i % 2 == 0 ? 200 : 202))
            #expect(response.body == Data((i % 2 == 0 ? "n=\(i)" : "slow").utf8))
        }
        #expect(server.connectionsAccepted == 1)
        #expect(server.requestsReceived == 6)
        await server.shutdown()
    }

    /// Sequential requests keep one connection per curl thread alive: one with one thread, and
    /// with two each thread takes every other request on a connection of its own.
    @Test(arguments: [1, 2])
    func sequentialRequestsReuseAConnectionPerThread(_ threads: Int) async throws {
        let server = try await LoopbackHTTPServer.start { request in
            var response = Self.echo(request)
            if case .respond(var r) = response {
                r.headers["X-Connection"] = String(request.connectionNumber)
                response = .respond(r)
            }
            return response
        }
        let client = try CurlHTTPClient(configuration: .init(threads: threads))
        defer { client.shutdown() }
        var connections: [String] = []
        for i in 0..<25 {
            let r = try await client.send(
                HTTPRequest(method: .post, url: server.baseURL + "/ka", body: Data("\(i)".utf8)))
            #expect(r.status == 200 && r.body == Data("\(i)".utf8))
            connections.append(r.headers["X-Connection"] ?? "?")
        }
        #expect(server.requestsReceived == 25)
        #expect(server.connectionsAccepted == threads)
        #expect(client.diagnostics.connectionsOpened == threads)
        #expect(client.diagnostics.completed == 25 && client.diagnostics.inFlight == 0)
        if threads == 2 {
            #expect(
                connections[0] != connections[1]
                    && Set(connections.enumerated().filter { $0.offset % 2 == 0 }.map(\.element)).count == 1)
        }
        await server.shutdown()
    }

    @Test func largeBodiesBothWays() async throws {
        let server = try await LoopbackHTTPServer.start { Self.echo($0) }
        let client = try CurlHTTPClient()
        defer { client.shutdown() }
        var rng = SeededGenerator(seed: 3)
        let big = Data((0..<(8 << 20)).map { _ in UInt8.random(in: 0...255, using: &rng) })
        let response = try await client.send(HTTPRequest(method: .post, url: server.baseURL + "/big", body: big))
        #expect(response.body.count == big.count)
        #expect(response.body == big)
        await server.shutdown()
    }

    /// The request's own timeout applies, not the client's (ten minutes here). The bound on the
    /// elapsed time only separates the two: it is far above 300 ms so that a loaded machine,
    /// which resumes the caller late, never fails it.
    @Test func slowServerGivesATimeoutAfterSending() async throws {
        let server = try await LoopbackHTTPServer.start { _ in .hang }
        let client = try CurlHTTPClient(configuration: .init(timeout: .seconds(600)))
        defer { client.shutdown() }
        let started = ContinuousClock.now
        await #expect {
            try await client.send(
                HTTPRequest(
                    method: .post, url: server.baseURL + "/slow", body: Data("x".utf8), timeout: .milliseconds(300)))
        } throws: { error in
            guard let error = error as? UsageBillingError else { return false }
            return error.code == .timeout && error.mayHaveReachedServer
        }
        #expect(ContinuousClock.now - started < .seconds(60))
        await server.shutdown()
    }

    @Test func connectionResetIsATransportErrorThatMayHaveReachedTheServer() async throws {
        let server = try await LoopbackHTTPServer.start { _ in .reset }
        let client = try CurlHTTPClient()
        defer { client.shutdown() }
        await #expect {
            try await client.send(HTTPRequest(method: .post, url: server.baseURL + "/reset", body: Data("x".utf8)))
        } throws: { error in
            guard let error = error as? UsageBillingError else { return false }
            return error.code == .transport && error.mayHaveReachedServer
        }
        await server.shutdown()
    }

    /// A port nothing listens on (bound, never listening, so no parallel test's server can take it).
    @Test func refusedConnectionWasCertainlyNotSent() async throws {
        let closed = try ClosedPort()
        let url = closed.baseURL + "/gone"
        let client = try CurlHTTPClient()
        defer { client.shutdown() }
        await #expect {
            try await client.send(HTTPRequest(method: .post, url: url, body: Data("x".utf8)))
        } throws: { error in
            guard let error = error as? UsageBillingError else { return false }
            return error.code == .transport && !error.mayHaveReachedServer && error.fix != nil
        }
        withExtendedLifetime(closed) {}
    }

    @Test func concurrentRequestsAllCompleteWithTheirOwnBodies() async throws {
        let server = try await LoopbackHTTPServer.start(threads: 2) { request in
            try? await Task.sleep(for: .milliseconds(Int.random(in: 0...20)))
            return Self.echo(request)
        }
        let client = try CurlHTTPClient()
        defer { client.shutdown() }
        let results = try await withThrowingTaskGroup(of: (Int, Data).self) { group in
            for i in 0..<64 {
                group.addTask {
                    let r = try await client.send(
                        HTTPRequest(method: .post, url: server.baseURL + "/c/\(i)", body: Data("body-\(i)".utf8)))
                    return (i, r.body)
                }
            }
            return try await group.reduce(into: [Int: Data]()) { $0[$1.0] = $1.1 }
        }
        #expect(results.count == 64)
        #expect(results.allSatisfy { $0.value == Data("body-\($0.key)".utf8) })
        #expect(client.diagnostics.inFlight == 0)
        await server.shutdown()
    }

    /// Cancelling a request to a server that never answers ends it as `.cancelled`, not at the
    /// client's timeout (ten minutes here); the bound on the elapsed time only separates the two.
    @Test func cancellationAbortsTheTransfer() async throws {
        let server = try await LoopbackHTTPServer.start { _ in .hang }
        let client = try CurlHTTPClient(configuration: .init(timeout: .seconds(600)))
        defer { client.shutdown() }
        let task = Task { try await client.send(HTTPRequest(method: .get, url: server.baseURL + "/hang")) }
        #expect(
            try await eventually { server.requestsReceived > 0 }, "the request reached the server before the cancel")
        task.cancel()
        let started = ContinuousClock.now
        let result = await task.result
        #expect(ContinuousClock.now - started < .seconds(60))
        #expect(throws: UsageBillingError.self) { try result.get() }
        if case .failure(let error as UsageBillingError) = result { #expect(error.code == .cancelled) }
        #expect(client.diagnostics.inFlight == 0)
        await server.shutdown()
    }

    @Test func handlesAreRecycledWithoutGrowth() async throws {
        let server = try await LoopbackHTTPServer.start { _ in
            .respond(HTTPResponse(status: 200, body: Data("{}".utf8)))
        }
        let client = try CurlHTTPClient()
        defer { client.shutdown() }
        for round in 0..<4 {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<500 {
                    if i >= 16 { try await group.next() }  // at most 16 in flight
                    group.addTask {
                        _ = try await client.send(
                            HTTPRequest(method: .post, url: server.baseURL + "/r\(round)/\(i)", body: Data("x".utf8)))
                    }
                }
                try await group.waitForAll()
            }
        }
        let d = client.diagnostics
        #expect(d.completed == 2000)
        #expect(d.inFlight == 0)
        #expect(d.pooledHandles <= 32)  // up to 16 in flight on each of the two curl threads
        #expect(server.connectionsAccepted <= 32)
        await server.shutdown()
    }

    @Test func shutDownClientRefusesNewRequests() async throws {
        let client = try CurlHTTPClient()
        client.shutdown()
        await #expect {
            try await client.send(HTTPRequest(method: .get, url: "http://127.0.0.1:9/"))
        } throws: { ($0 as? UsageBillingError)?.code == .cancelled }
    }
}

@Suite("Header lines")
struct HeaderLineTests {
    /// Names and values lose surrounding blanks and the line end, and keep inner spaces.
    @Test(arguments: [
        ("  Retry-After \t", "Retry-After"), (" 2 \r\n", "2"), ("a b\t c\r\n", "a b\t c"), ("\r\n", ""), ("", ""),
    ])
    func trimsBlanksAndLineEnds(_ raw: String, _ expected: String) {
        let bytes = Array(raw.utf8)
        let trimmed = bytes.withUnsafeBufferPointer { HeaderLine.trimmed($0[...]) }
        #expect(trimmed == expected)
    }
}
