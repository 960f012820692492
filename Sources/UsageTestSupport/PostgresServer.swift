import Foundation
import UsageBilling

/// A real PostgreSQL server for tests: Debian's `postgresql` package (`scripts/setup.sh` installs
/// it), a fresh cluster in a temporary directory, listening on a free loopback port, started
/// once per test process and stopped when the process exits (or, if it dies, by a watchdog that
/// outlives it). Each test takes a database of its own (``database(_:)``), so tests in parallel
/// never share rows.
public final class PostgresServer: Sendable {
    /// The port on 127.0.0.1.
    public let port: Int
    /// The cluster's directory (data, socket, log).
    public let directory: String
    private let bin: String
    private let asPostgres: Bool
    private let tls: Bool

    /// The server this process shares, started on first use.
    public static func shared() async throws -> PostgresServer {
        let task = starting.with { starting in
            if let task = starting { return task }
            let task = Task { try await start() }
            starting = task
            return task
        }
        return try await task.value
    }
    private static let starting = Locked<Task<PostgresServer, any Error>?>(nil)

    private init(port: Int, directory: String, bin: String, asPostgres: Bool, tls: Bool) {
        self.port = port
        self.directory = directory
        self.bin = bin
        self.asPostgres = asPostgres
        self.tls = tls
    }

    /// A server of the caller's own, for a test that stops or restarts it (others share
    /// ``shared()``). With `tls`, it takes TCP connections only over TLS, with a self-signed
    /// certificate for 127.0.0.1 made for it (`openssl`), as a managed database does.
    public static func dedicated(tls: Bool = false) async throws -> PostgresServer { try await start(tls: tls) }

    private static func start(tls: Bool = false) async throws -> PostgresServer {
        guard let bin = findBin() else {
            throw PostgresServerError(
                "no PostgreSQL server binaries under /usr/lib/postgresql: run scripts/setup.sh (installs Debian's postgresql)"
            )
        }
        let asPostgres = getuid() == 0  // the server refuses to run as root
        let dir = FileManager.default.temporaryDirectory.appending(path: "ub-pg-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        func tool(_ name: String, _ args: [String]) async throws -> (Int32, String) {
            try await ChildProcess.run(
                asPostgres ? "/usr/sbin/runuser" : bin + "/" + name,
                (asPostgres ? ["-u", "postgres", "--", bin + "/" + name] : []) + args)
        }
        if asPostgres { _ = try await ChildProcess.run("/bin/chown", ["postgres:postgres", dir]) }
        let (status, output) = try await tool(
            "initdb", ["-D", dir + "/data", "-A", "trust", "-U", "postgres", "--no-sync"])
        guard status == 0 else { throw PostgresServerError("initdb failed: \(output)") }
        if tls {
            let (made, why) = try await ChildProcess.run(
                "/usr/bin/openssl",
                [
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", dir + "/data/server.key", "-out", dir + "/data/server.crt",
                ])
            guard made == 0 else { throw PostgresServerError("openssl could not make a certificate: \(why)") }
            try Data(
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n".utf8
            )
            .write(to: URL(fileURLWithPath: dir + "/data/pg_hba.conf"))
            _ = try await ChildProcess.run("/bin/chmod", ["600", dir + "/data/server.key"])
            if asPostgres { _ = try await ChildProcess.run("/bin/chown", ["-R", "postgres:postgres", dir + "/data"]) }
        }
        var lastError = ""
        for _ in 0..<5 {
            let port = try ClosedPort().port  // free now; the server binds it next
            let (status, output) = try await tool(
                "pg_ctl",
                [
                    "-D", dir + "/data", "-o", options(port: port, directory: dir, tls: tls), "-l", dir + "/log.txt",
                    "-w", "-t", "60", "start",
                ])
            if status == 0 {
                // Stops the server when this process ends, however it ends.
                let stop =
                    (asPostgres ? "/usr/sbin/runuser -u postgres -- " : "")
                    + "\(bin)/pg_ctl -D \(dir)/data stop -m immediate"
                _ = try? ChildProcess.spawn(
                    "/bin/sh",
                    [
                        "-c",
                        "while kill -0 \(getpid()) 2>/dev/null; do sleep 1; done; \(stop) >/dev/null 2>&1; rm -rf \(dir)",
                    ],
                    outputFile: "/dev/null")
                return PostgresServer(port: port, directory: dir, bin: bin, asPostgres: asPostgres, tls: tls)
            }
            lastError = output + ((try? String(contentsOfFile: dir + "/log.txt", encoding: .utf8)) ?? "")
        }
        throw PostgresServerError("the server did not start: \(lastError)")
    }

    private static func options(port: Int, directory: String, tls: Bool) -> String {
        "-p \(port) -k \(directory) -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300 -c shared_buffers=64MB"
            + (tls ? " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key" : "")
    }

    /// A new, empty database on the server and its URL (`postgres://postgres@127.0.0.1:PORT/NAME`).
    public func database(_ tag: String = "t") async throws -> String {
        let name =
            "ub_\(tag.lowercased().filter { $0.isLetter || $0.isNumber })_\(UUID().uuidString.prefix(8).lowercased())"
        try await psql("CREATE DATABASE \(name)")
        return url(name)
    }

    /// The URL of database `name`.
    public func url(_ name: String, sslmode: String? = nil) -> String {
        "postgres://postgres@127.0.0.1:\(port)/\(name)?sslmode=\(sslmode ?? (tls ? "require" : "disable"))"
    }

    /// Runs SQL through `psql` against the `postgres` database.
    @discardableResult
    public func psql(_ sql: String, database: String = "postgres") async throws -> String {
        let (status, output) = try await ChildProcess.run(
            bin + "/psql",
            [
                "-h", "127.0.0.1", "-p", "\(port)", "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-Atc",
                sql,
            ])
        guard status == 0 else { throw PostgresServerError("psql failed: \(output)") }
        return output
    }

    /// Stops the server at once (as a crash would) and starts it again on the same port:
    /// every connection drops, committed data stays.
    public func restart() async throws {
        for args in [
            ["-D", directory + "/data", "stop", "-m", "immediate", "-w"],
            [
                "-D", directory + "/data", "-o", Self.options(port: port, directory: directory, tls: tls), "-l",
                directory + "/log.txt", "-w", "-t", "60", "start",
            ],
        ] {
            let (status, output) = try await ChildProcess.run(
                asPostgres ? "/usr/sbin/runuser" : bin + "/pg_ctl",
                (asPostgres ? ["-u", "postgres", "--", bin + "/pg_ctl"] : []) + args)
            guard status == 0 else { throw PostgresServerError("pg_ctl \(args.last ?? "") failed: \(output)") }
        }
    }

    private static func findBin() -> String? {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init)
            .sorted()
        return versions.reversed().map { "\(root)/\($0)/bin" }.first {
            FileManager.default.isExecutableFile(atPath: $0 + "/pg_ctl")
        }
    }

}

/// The test server could not be set up; the message says why and what to install.
public struct PostgresServerError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
