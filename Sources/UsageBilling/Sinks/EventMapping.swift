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
    public static let keys: Set<String> = ["event_name", "event_names", "quantity_property", "extra_properties", "customers"]

    /// A mapping; `quantityProperty` is the provider's conventional default.
    public init(eventName: String? = nil, eventNames: [String: String] = [:], quantityProperty: String,
                extraProperties: [String: UsageValue] = [:], customers: [String: String] = [:]) {
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

    /// The event's properties plus the extra ones plus the quantity under ``quantityProperty``,
    /// or a local rejection when a property would overwrite the quantity.
    public func properties(for event: UsageEvent) -> Result<[String: UsageValue], RejectionReason> {
        if event.properties[quantityProperty] != nil {
            return .failure(.local("property_conflicts_with_quantity", field: "properties.\(quantityProperty)",
                                   "property '\(quantityProperty)' would overwrite the quantity; rename the property or set quantity_property"))
        }
        if event.properties.keys.contains(where: \.isEmpty) {
            return .failure(.local("property_name_empty", field: "properties", "a property has an empty name"))
        }
        var all = extraProperties.merging(event.properties) { _, own in own }
        all[quantityProperty] = .number(event.quantity)
        return .success(all)
    }
}
