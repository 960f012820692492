#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A loopback TCP port that refuses connections for as long as this value lives: a socket bound to
/// an ephemeral port on 127.0.0.1 that never listens. A test that needs "nothing answers here"
/// uses it instead of the port of a server it shut down, which the kernel may hand to another
/// test's server running in parallel (a request there gets that server's answer, not a refusal).
public final class ClosedPort: Sendable {
    /// The port number.
    public let port: Int
    private let fd: Int32

    /// Binds the socket; throws when the machine has no loopback port to give.
    public init() throws {
        #if canImport(Glibc)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
            let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw ClosedPortError(errno: errno) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else {
            let code = errno
            close(fd)
            throw ClosedPortError(errno: code)
        }
        self.fd = fd
        self.port = Int(UInt16(bigEndian: address.sin_port))
    }

    /// `http://127.0.0.1:<port>`.
    public var baseURL: String { "http://127.0.0.1:\(port)" }

    deinit { close(fd) }
}

/// Binding a loopback socket failed.
public struct ClosedPortError: Error, CustomStringConvertible {
    public let errno: Int32
    public var description: String { "could not bind a loopback socket (errno \(errno))" }
}
