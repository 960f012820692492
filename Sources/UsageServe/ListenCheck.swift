import Foundation
#if canImport(Glibc)
    import Glibc
#endif

/// Whether `serve` can listen on an address, asked before it creates or announces anything: a
/// port in use, a port this user may not bind, or a host that is not this machine's, each in
/// words with the fix.
public enum ListenCheck {
    /// The problem with listening on `host:port`, or nil. Port 0 (any free port) only checks the
    /// host. The socket is closed again at once; the server binds it for real afterwards.
    public static func problem(host: String, port: Int) -> String? {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE
        var list: UnsafeMutablePointer<addrinfo>?
        let resolved = getaddrinfo(host, String(port), &hints, &list)
        guard resolved == 0, let first = list else {
            return
                "--host \(host) is not an address this machine can listen on (\(String(cString: gai_strerror(resolved)))). Fix: use 127.0.0.1, 0.0.0.0 or one of this machine's addresses"
        }
        defer { freeaddrinfo(list) }
        let fd = socket(first.pointee.ai_family, first.pointee.ai_socktype, first.pointee.ai_protocol)
        guard fd >= 0 else { return nil }  // no socket to test with: let the server report it
        defer { close(fd) }
        var on: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        guard bind(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else {
            switch errno {
            case EADDRINUSE:
                return
                    "port \(port) on \(host) is already in use (another `serve`, or another program). Fix: stop the process that holds it (`ss -ltnp 'sport = :\(port)'` names it) or pass --port with a free port (0 picks one)"
            case EACCES:
                return
                    "permission denied listening on port \(port): ports below 1024 need extra privileges. Fix: pass --port 8480 (or another port from 1024 up), and put a proxy in front for port \(port)"
            case EADDRNOTAVAIL:
                return
                    "--host \(host) is not an address of this machine. Fix: use 127.0.0.1, 0.0.0.0 or one of this machine's addresses"
            default:
                return
                    "cannot listen on \(host):\(port): \(String(cString: strerror(errno))). Fix: pass another --host or --port"
            }
        }
        return nil
    }
}
