import Foundation
import UsageBilling

/// The exclusive lock one running worker holds on its spool: `flock` on `<spool>.worker-lock`,
/// which names the holder's pid for the error a second worker gets.
final class WorkerLock: DeliveryLock {
    private let fd: Int32

    private init(fd: Int32) { self.fd = fd }

    /// Waits for a lock an exiting worker still holds: jittered, up to 0.1 s a wait, 1 s in all.
    static let retry = RetryPolicy(
        baseDelay: .milliseconds(20), maxDelay: .milliseconds(100), maxAttempts: 60, maxElapsed: .seconds(1))

    static func acquire(spoolPath: String) async throws -> WorkerLock {
        let path = spoolPath + ".worker-lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw UsageBillingError(
                .configuration, "cannot open the worker lock \(path): \(String(cString: strerror(errno)))",
                fix: "make the spool's directory writable by this user")
        }
        // A worker killed a moment ago may still be exiting (its lock goes with it): wait up to a
        // second, by the retry engine.
        let started = ContinuousClock.now
        for attempt in 1... {
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { break }
            // Read before anything else can set it.
            let failure = errno
            guard failure == EWOULDBLOCK || failure == EINTR else {
                close(fd)
                throw UsageBillingError(
                    .configuration, "cannot lock the worker lock \(path): \(String(cString: strerror(failure)))",
                    fix: "put the spool on a local file system that supports flock")
            }
            guard
                let wait = Self.retry.delay(
                    attemptsMade: attempt, elapsed: ContinuousClock.now - started, retryAfter: nil)
            else {
                let holder = Self.holder(fd)
                close(fd)
                let who = holder.map { $0 == getpid() ? "this process (pid \($0))" : "pid \($0)" } ?? "another process"
                throw UsageBillingError(
                    .configuration, "another worker, in \(who), is already delivering from the spool \(spoolPath)",
                    fix:
                        "stop that worker first, or let it deliver: two workers on one spool would send the same rows twice"
                )
            }
            try await Task.sleep(for: wait)
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        return WorkerLock(fd: fd)
    }

    /// Who holds the lock on `spoolPath` now ("pid N", or "another process"), or nil when no
    /// worker does. Creates nothing: a spool without a lock file has no worker.
    static func holder(spoolPath: String) -> String? {
        let fd = open(spoolPath + ".worker-lock", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        if flock(fd, LOCK_EX | LOCK_NB) == 0 {
            _ = flock(fd, LOCK_UN)
            return nil
        }
        return holder(fd).map { "pid \($0)" } ?? "another process"
    }

    /// The pid the holder wrote, if readable.
    private static func holder(_ fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        return Int32(String(decoding: buffer[..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    func release() {
        _ = flock(fd, LOCK_UN)
        close(fd)
    }
}
