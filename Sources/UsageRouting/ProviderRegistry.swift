@_exported import UsageBilling

/// The provider kinds a routing config may name, by `kind:`.
public struct ProviderRegistry: Sendable {
    private var kinds: [String: ProviderKind]

    /// A registry of `kinds`.
    public init(_ kinds: [ProviderKind] = []) {
        self.kinds = Dictionary(kinds.map { ($0.name, $0) }, uniquingKeysWith: { $1 })
    }

    /// Adds (or replaces) a kind.
    public mutating func register(_ kind: ProviderKind) { kinds[kind.name] = kind }

    /// The kind named `name`.
    public func kind(_ name: String) -> ProviderKind? { kinds[name] }

    /// Every registered kind name, sorted.
    public var names: [String] { kinds.keys.sorted() }
}
