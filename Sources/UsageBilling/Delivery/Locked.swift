import Foundation

/// A value behind a lock: the package's one way to share mutable state between threads outside
/// an actor. The value is only reachable inside ``with(_:)``, so no access can forget the lock.
///
/// A class with a lock rather than an actor where callers are synchronous (a server's event loop,
/// a limiter taken per request): hopping onto an actor and back costs more than the guarded work.
/// Inlinable, so a caller in another module gets it specialised for its value (it is on the
/// hot paths of the curl engine, the rate limiter and the emulator).
public final class Locked<Value>: @unchecked Sendable {
    @usableFromInline let lock = NSLock()
    @usableFromInline var value: Value

    /// A box holding `value`.
    @inlinable public init(_ value: Value) { self.value = value }

    /// Runs `body` with the value, under the lock; what it returns leaves the lock with it.
    @inlinable public func with<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }

    /// A copy of the value now.
    @inlinable public var current: Value { with { $0 } }
}
