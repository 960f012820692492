import Foundation
import UsageBilling

/// The config's customer table (`customers:`): your customer ids mapped to each provider's, from
/// a CSV file beside the config or inline.
extension Validator {
    mutating func validateCustomers(_ value: JSONValue?, providers: [String: RoutingConfig.Provider], directory: String)
        -> [String: [String: String]]
    {
        switch value {
        case nil:
            return [:]
        case .string(let path)?:
            let full = path.hasPrefix("/") ? path : URL(fileURLWithPath: directory).appending(path: path).path
            guard let data = FileManager.default.contents(atPath: full) else {
                issue(
                    "customers", "cannot read the customer table \(path)",
                    "put a CSV with a `customer` column and one column per provider next to the config")
                return [:]
            }
            return parseCustomerCSV(String(decoding: data, as: UTF8.self), name: path, providers: providers)
        case .object(let object)?:
            var table: [String: [String: String]] = [:]
            for (customer, ids) in object {
                guard case .object(let perProvider) = ids else {
                    issue(
                        "customers.\(customer)", "each customer maps provider names to ids",
                        "write `\(customer): { stripe: cus_…, orb: … }`")
                    continue
                }
                for (provider, id) in perProvider {
                    if providers[provider] == nil {
                        issue(
                            "customers.\(customer).\(provider)", "'\(provider)' is not a defined provider",
                            "define it under providers or remove the column")
                    }
                    guard let id = id.stringValue, !id.isEmpty else {
                        issue("customers.\(customer).\(provider)", "the id must be a non-empty string", "quote it")
                        continue
                    }
                    table[customer, default: [:]][provider] = id
                }
            }
            return table
        default:
            issue("customers", "customers must be a CSV path or a mapping", "write `customers: customers.csv`")
            return [:]
        }
    }

    mutating func parseCustomerCSV(_ text: String, name: String, providers: [String: RoutingConfig.Provider])
        -> [String: [String: String]]
    {
        let rows = CSV.rows(text)
        guard let header = rows.first, header.first == "customer", header.count >= 2 else {
            issue("customers", "\(name) must start with a header `customer,<provider>,…`", "e.g. `customer,stripe,orb`")
            return [:]
        }
        // A table shared by several configs has columns for providers this one does not define:
        // those are ignored with a warning, unless the column is a near miss of a defined
        // provider's name (a typo would silently send that provider your own customer ids).
        for column in header.dropFirst() where providers[column] == nil {
            if let near = providers.keys.sorted().first(where: { Self.isNearMiss(column, $0) }) {
                issue(
                    "customers",
                    "\(name) has a column '\(column)' that is not a defined provider; did you mean '\(near)'?",
                    "rename the column to '\(near)' (or define a provider '\(column)')")
            } else {
                warnings.append(
                    ConfigIssue(
                        file: file, line: lines["customers"], key: "customers",
                        message:
                            "\(name) has a column '\(column)' for a provider this config does not define; it is ignored",
                        fix: "nothing, if another config uses it; else remove the column"))
            }
        }
        var table: [String: [String: String]] = [:]
        for (number, row) in rows.dropFirst().enumerated() where !(row.count == 1 && row[0].isEmpty) {
            guard row.count == header.count, !row[0].isEmpty else {
                issue(
                    "customers", "\(name) line \(number + 2) has \(row.count) fields, the header \(header.count)",
                    "give every row the header's columns")
                continue
            }
            for (column, id) in zip(header.dropFirst(), row.dropFirst()) where !id.isEmpty && providers[column] != nil {
                table[row[0], default: [:]][column] = id
            }
        }
        return table
    }
}
