import Foundation

/// Everything a child process writes to `handle` until it closes its end, read with `read(2)`
/// and retried on `EINTR`. Foundation's `readDataToEndOfFile()` traps (`try!`) when a signal
/// interrupts the read, which happens when another test's child exits (SIGCHLD) mid-read.
public func readToEnd(_ handle: FileHandle) -> Data { readToEnd(fd: handle.fileDescriptor) }

/// Everything readable from `fd` until its writer closes it, read with `read(2)` and retried on
/// `EINTR` (the descriptor is left open).
public func readToEnd(fd: Int32) -> Data {
    var data = Data()
    var buffer = [UInt8](repeating: 0, count: 65_536)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n > 0 {
            data.append(contentsOf: buffer[..<n])
        } else if n == 0 || errno != EINTR {
            return data
        }
    }
}
