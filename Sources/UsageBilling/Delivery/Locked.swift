import Foundation

/// A value behind a lock: the package's one way to share mutable state between threads outside
/// an actor. The value is only reachable inside ``with(_:)``, so no access can forget the lock.
///
/// A class with a lock rather than an actor where callers are synchronous (a server's event loop,
/// a limiter taken per request): hopping onto an actor and back costs more than the guarded work.
public final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    /// A box holding `value`.
    public init(_ value: Value) { self.value = value }

    /// Runs `body` with the value, under the lock; what it returns leaves the lock with it.
    public func with<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        try lock.withLock { try body(&value) }
    }

    /// A copy of the value now.
    public var current: Value { with { $0 } }
}
