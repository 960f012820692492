/// How a route turns your events into one provider's events: the provider's event name, where
/// the quantity goes, extra fixed properties, and your customer id → the provider's id.
///
/// Decodes from the same settings object as the adapter, with the keys `event_name`,
/// `event_names`, `quantity_property`, `extra_properties` and `customers`.
public struct EventMapping: Sendable, Hashable, Decodable {
    /// The provider event name for every event; default: the event's own name.
    public var eventName: String?
    /// Per event name, the provider event name (overrides ``eventName``).
    public var eventNames: [String: String]
    /// The property that carries the quantity.
    public var quantityProperty: String
    /// Properties added to every event (the event's own win on a clash).
    public var extraProperties: [String: UsageValue]
    /// Your customer id → the provider's customer id; ids not listed are sent as they are.
    public var customers: [String: String]

    /// The settings keys a mapping reads.
    public static let keys: Set<String> = [
        "event_name", "event_names", "quantity_property", "extra_properties", "customers",
    ]

    /// A mapping; `quantityProperty` is the provider's conventional default.
    public init(
        eventName: String? = nil, eventNames: [String: String] = [:], quantityProperty: String,
        extraProperties: [String: UsageValue] = [:], customers: [String: String] = [:]
    ) {
        self.eventName = eventName
        self.eventNames = eventNames
        self.quantityProperty = quantityProperty
        self.extraProperties = extraProperties
        self.customers = customers
    }

    private enum CodingKeys: String, CodingKey {
        case eventName = "event_name", eventNames = "event_names", quantityProperty = "quantity_property"
        case extraProperties = "extra_properties", customers
    }

    /// Decodes the mapping keys, using `defaultQuantityProperty` when `quantity_property` is absent.
    public init(from decoder: any Decoder, defaultQuantityProperty: String) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        eventName = try c.decodeIfPresent(String.self, forKey: .eventName)
        eventNames = try c.decodeIfPresent([String: String].self, forKey: .eventNames) ?? [:]
        quantityProperty = try c.decodeIfPresent(String.self, forKey: .quantityProperty) ?? defaultQuantityProperty
        extraProperties = try c.decodeIfPresent([String: UsageValue].self, forKey: .extraProperties) ?? [:]
        customers = try c.decodeIfPresent([String: String].self, forKey: .customers) ?? [:]
    }

    /// Decodes with the quantity property `quantity`.
    public init(from decoder: any Decoder) throws {
        try self.init(from: decoder, defaultQuantityProperty: "quantity")
    }

    /// The provider event name for `event`.
    public func providerEventName(for event: UsageEvent) -> String {
        eventNames[event.name] ?? eventName ?? event.name
    }

    /// The provider customer id for `event`.
    public func providerCustomer(for event: UsageEvent) -> String {
        customers[event.customer] ?? event.customer
    }

    /// The provider customer id and event name for `event` (the names its read-back reports under).
    public func providerNames(for event: UsageEvent) -> ProviderNames {
        ProviderNames(customer: providerCustomer(for: event), meter: providerEventName(for: event))
    }

    /// The event's properties plus the extra ones plus the quantity under ``quantityProperty``,
    /// or a local rejection when a property would overwrite the quantity.
    public func properties(for event: UsageEvent) -> Result<[String: UsageValue], RejectionReason> {
        if event.properties[quantityProperty] != nil {
            return .failure(
                .local(
                    "property_conflicts_with_quantity", field: "properties.\(quantityProperty)",
                    "property '\(quantityProperty)' would overwrite the quantity; rename the property or set quantity_property"
                ))
        }
        if event.properties.keys.contains(where: \.isEmpty) {
            return .failure(.local("property_name_empty", field: "properties", "a property has an empty name"))
        }
        var all =
            extraProperties.isEmpty ? event.properties : extraProperties.merging(event.properties) { _, own in own }
        all[quantityProperty] = .number(event.quantity)
        return .success(all)
    }

    /// An event as a provider will see it.
    public struct Mapped: Sendable, Hashable {
        /// The provider event name.
        public var eventName: String
        /// The provider customer id.
        public var customer: String
        /// The JSON properties, quantity included.
        public var properties: [String: JSONValue]
    }

    /// Maps `event` (name, customer, properties with the quantity, encoded in `style`), or a local
    /// rejection: no name, no customer, a property clashing with the quantity, a value `style`
    /// cannot carry. `provider` and `advice` go into the messages.
    public func map(_ event: UsageEvent, style: PropertyEncoding.Style, provider: String, advice: String) -> Result<
        Mapped, RejectionReason
    > {
        let name = providerEventName(for: event)
        if name.isEmpty {
            return .failure(.local("event_name_missing", field: "name", "the event has no name; \(provider) needs one"))
        }
        let customer = providerCustomer(for: event)
        if customer.isEmpty {
            return .failure(
                .local("customer_missing", field: "customer", "the event has no customer; \(provider) needs one"))
        }
        switch properties(for: event) {
        case .failure(let reason):
            return .failure(reason)
        case .success(let properties):
            return PropertyEncoding.encode(
                properties, style: style, quantityProperty: quantityProperty, provider: provider, advice: advice
            )
            .map { Mapped(eventName: name, customer: customer, properties: $0) }
        }
    }
}
