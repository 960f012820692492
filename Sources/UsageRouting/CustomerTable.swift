import Foundation
import UsageBilling

/// The config's customer table (`customers:`): your customer ids mapped to each provider's, from
/// a CSV file beside the config or inline.
extension Validator {
    mutating func validateCustomers(
        _ value: CustomersDocument?, providers: [String: RoutingConfig.Provider], directory: String
    ) -> [String: [String: String]] {
        switch value {
        case nil:
            return [:]
        case .file(let path):
            let full = path.hasPrefix("/") ? path : URL(fileURLWithPath: directory).appending(path: path).path
            guard let data = FileManager.default.contents(atPath: full) else {
                issue(
                    "customers", "cannot read the customer table \(path)",
                    "put a CSV with a `customer` column and one column per provider next to the config")
                return [:]
            }
            return parseCustomerCSV(String(decoding: data, as: UTF8.self), name: path, providers: providers)
        case .inline(let map):
            var table: [String: [String: String]] = [:]
            for customer in map.keys {
                for provider in map.values[customer]?.keys ?? [] {
                    let key = "customers.\(customer).\(provider)"
                    if providers[provider] == nil {
                        issue(key, "'\(provider)' is not a defined provider", "define it under providers or remove it")
                    }
                    guard let id = map.values[customer]?.values[provider] else { continue }
                    guard !id.isEmpty else {
                        issue(key, "the id must not be empty", "write the provider's customer id, or remove it")
                        continue
                    }
                    table[customer, default: [:]][provider] = id
                }
            }
            return table
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
            if let near = providers.keys.sorted().first(where: { ConfigReader.isNearMiss(column, $0) }) {
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
