import Foundation
import UsageBilling
#if canImport(Glibc)
    import Glibc
#endif

/// glibc's GNU extensions, which the Glibc module does not export, looked up once at run time.
private enum GNU: Sendable {
    typealias Pipe2 = @convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32
    typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    typealias AddChdir =
        @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32

    static func symbol<T>(_ name: String, as type: T.Type) -> T? {
        guard let handle = dlopen(nil, RTLD_NOW), let pointer = dlsym(handle, name) else { return nil }
        return unsafeBitCast(pointer, to: type)
    }
    static let pipe2 = symbol("pipe2", as: Pipe2.self)
    static let addCloseFrom = symbol("posix_spawn_file_actions_addclosefrom_np", as: AddCloseFrom.self)
    static let addChdir = symbol("posix_spawn_file_actions_addchdir_np", as: AddChdir.self)
}

/// A child process started with `posix_spawn`, for tests that run the CLI or a script.
///
/// Foundation's `Process.run()` lists the parent's open descriptors to close them in the child;
/// with many sockets opening and closing on other threads (parallel tests, curl, the emulator) it
/// crashed a full test run here (SIGSEGV in `memcpy` inside `Process.run`). This spawns directly:
/// the output pipe is close-on-exec in the parent, so only this child holds its write end (a
/// concurrently spawned child cannot keep it open), and the child closes every other descriptor
/// above 2 before it runs.
public struct ChildProcess: Sendable {
    /// The child's pid.
    public let pid: pid_t
    /// The read end of the child's stdout+stderr pipe, when its output is captured.
    private let outputFD: Int32?

    /// Starts `executable` (a path) with `arguments`; its stdout and stderr go to a pipe read by
    /// `readOutput()` or, with `outputFile`, are appended to that file.
    /// - Throws: `UsageBillingError` naming the executable when it cannot be started.
    public static func spawn(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil,
        directory: String? = nil, outputFile: String? = nil
    ) throws -> ChildProcess {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var readEnd: Int32?
        var writeEnd: Int32 = -1
        if let outputFile {
            writeEnd = open(outputFile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            guard writeEnd >= 0 else { throw failure(executable, "cannot open \(outputFile): errno \(errno)") }
        } else {
            var fds: [Int32] = [-1, -1]
            guard let pipe2 = GNU.pipe2 else { throw failure(executable, "this libc has no pipe2 (glibc 2.9+)") }
            guard pipe2(&fds, O_CLOEXEC) == 0 else { throw failure(executable, "pipe2 failed: errno \(errno)") }
            readEnd = fds[0]
            writeEnd = fds[1]
        }
        defer { close(writeEnd) }
        posix_spawn_file_actions_adddup2(&actions, writeEnd, 1)
        posix_spawn_file_actions_adddup2(&actions, writeEnd, 2)
        if let closeFrom = GNU.addCloseFrom { _ = closeFrom(&actions, 3) }
        if let directory {
            guard let chdir = GNU.addChdir else {
                throw failure(executable, "this libc cannot set a child's directory (glibc 2.29+)")
            }
            _ = chdir(&actions, directory)
        }

        let argv = ([executable] + arguments).map { strdup($0) }
        let env = (environment ?? ProcessInfo.processInfo.environment).map { strdup("\($0.key)=\($0.value)") }
        defer { (argv + env).forEach { free($0) } }
        var pid: pid_t = 0
        let code: Int32 = (argv + [nil]).withUnsafeBufferPointer { a in
            (env + [nil]).withUnsafeBufferPointer { e in
                guard let av = a.baseAddress, let ev = e.baseAddress else { return EINVAL }
                return posix_spawn(&pid, executable, &actions, nil, av, ev)
            }
        }
        guard code == 0 else {
            if let readEnd { close(readEnd) }
            throw failure(executable, "posix_spawn failed: \(String(cString: strerror(code)))")
        }
        return ChildProcess(pid: pid, outputFD: readEnd)
    }

    private static func failure(_ executable: String, _ why: String) -> UsageBillingError {
        UsageBillingError(
            .configuration, "cannot start \(executable): \(why)", fix: "build it first (swift build) and check the path"
        )
    }

    /// Everything the child wrote until it closed its output (read with `read(2)`, retried on
    /// `EINTR`); empty when the output went to a file. Call once.
    public func readOutput() -> Data {
        guard let fd = outputFD else { return Data() }
        defer { close(fd) }
        return readToEnd(fd: fd)
    }

    /// Whether the child has not ended yet (Linux: its `/proc` state is not zombie); it is not
    /// reaped, so `waitForExit` still reads its status.
    public var isRunning: Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")"),
            let state = stat[close...].dropFirst(2).first
        else { return false }
        return state != "Z" && state != "X"
    }

    /// Sends `signal` to the child.
    public func kill(_ signal: Int32) { _ = Glibc.kill(pid, signal) }

    /// Waits for the child to end (blocking the calling thread) and returns its exit status, or
    /// 128 + the signal that ended it.
    public func waitForExit() -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { return -1 }
        }
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    /// Waits for the child on a GCD thread, never blocking Swift's cooperative pool.
    public func exitStatus() async -> Int32 {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: waitForExit()) }
        }
    }

    /// Runs to the end, capturing the output, off the cooperative pool.
    public static func run(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil,
        directory: String? = nil
    ) async throws -> (status: Int32, output: String) {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                do {
                    let child = try spawn(executable, arguments, environment: environment, directory: directory)
                    let output = child.readOutput()
                    continuation.resume(returning: (child.waitForExit(), String(decoding: output, as: UTF8.self)))
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }
}
