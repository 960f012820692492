import Foundation
import Yams

/// A problem in a routing config, with where it is and how to fix it.
public struct ConfigIssue: Sendable, Hashable, CustomStringConvertible {
    /// The config file.
    public var file: String
    /// The 1-based line, when known.
    public var line: Int?
    /// The key path (`routes[1].to`).
    public var key: String
    /// What is wrong.
    public var message: String
    /// What to do.
    public var fix: String

    /// `file:line: key: message. Fix: fix` (no full stop after a question).
    public var description: String {
        let stop = message.hasSuffix("?") || message.hasSuffix(".") ? "" : "."
        return "\(file)\(line.map { ":\($0)" } ?? ""): \(key.isEmpty ? "" : key + ": ")\(message)\(stop) Fix: \(fix)"
    }
}

extension ConfigIssue {
    /// A problem at `key` (a key path such as `routes[1].to`), with the line of the key or, when
    /// it has none (a key that is missing), of its nearest parent.
    static func at(_ key: String, lines: [String: Int], file: String, _ message: String, _ fix: String) -> ConfigIssue {
        var path = key
        var line = lines[path]
        while line == nil, let cut = path.lastIndex(where: { $0 == "." || $0 == "[" }) {
            path = String(path[..<cut])
            line = lines[path]
        }
        return ConfigIssue(file: file, line: line, key: key, message: message, fix: fix)
    }
}

/// Every problem found in a config, thrown by ``RoutingConfig/load(path:registry:environment:)``.
public struct ConfigIssues: Error, Sendable, CustomStringConvertible {
    /// The problems, in file order.
    public var issues: [ConfigIssue]
    /// One problem per line.
    public var description: String { issues.map(\.description).joined(separator: "\n") }

    public init(issues: [ConfigIssue]) {
        self.issues = issues
    }
}

/// A YAML (or JSON) document as ``JSONValue`` with the line of every key path, `${VAR}`
/// substituted from the environment.
struct ConfigDocument {
    var root: JSONValue
    var lines: [String: Int]
    /// Key paths whose value came from an environment variable (treated as secret when shown).
    var fromEnvironment: Set<String>
    /// Under `serve:`, key paths whose variable is not set, with its name: only `serve` needs
    /// them (so `worker` and `import` run with a config whose ingest token is not in their
    /// environment), and it says which.
    var unsetServeVariables: [String: String] = [:]
    /// Under `providers:`, key paths whose variable is not set, with its name: the validator
    /// decides (a secret a command does not use may stay unset; anything else is an issue).
    var unsetProviderVariables: [String: String] = [:]

    static func parse(_ text: String, file: String, environment: [String: String]) -> (ConfigDocument?, [ConfigIssue]) {
        let node: Node?
        do {
            // `${NAME}` is not valid inside a YAML flow mapping (`{ key: ${NAME} }`), so it is
            // swapped for a flow-safe token on the same line and expanded after parsing.
            node = try Yams.compose(yaml: protectVariables(text))
        } catch YamlError.duplicatedKeysInMapping(let duplicates, let context) {
            return (
                nil,
                duplicates.map {
                    ConfigIssue(
                        file: file, line: context.mark.line, key: $0, message: "the key appears twice", fix: "keep one")
                }
            )
        } catch let error as YamlError {
            var line: Int?
            var message = "\(error)"
            switch error {
            case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _),
                .composer(_, let problem, let mark, _):
                line = mark.line
                message = problem
            default:
                break
            }
            return (
                nil,
                [
                    ConfigIssue(
                        file: file, line: line, key: "", message: "not valid YAML or JSON: \(message)",
                        fix: "check indentation and quoting around that line")
                ]
            )
        } catch {
            return (
                nil,
                [
                    ConfigIssue(
                        file: file, line: nil, key: "", message: "not valid YAML or JSON: \(error)",
                        fix: "check the syntax")
                ]
            )
        }
        guard let node else {
            return (
                nil,
                [
                    ConfigIssue(
                        file: file, line: 1, key: "", message: "the file is empty", fix: "start with `version: 1`")
                ]
            )
        }
        var document = ConfigDocument(root: .null, lines: [:], fromEnvironment: [])
        var issues: [ConfigIssue] = []
        document.root = convert(node, path: "", into: &document, issues: &issues, file: file, environment: environment)
        return (document, issues)
    }

    private static func convert(
        _ node: Node, path: String, into doc: inout ConfigDocument, issues: inout [ConfigIssue],
        file: String, environment: [String: String]
    ) -> JSONValue {
        if let line = node.mark?.line { doc.lines[path] = doc.lines[path] ?? line }
        switch node {
        case .scalar(let scalar):
            if scalar.style == .plain {
                switch scalar.string {
                case "true", "True", "TRUE": return .bool(true)
                case "false", "False", "FALSE": return .bool(false)
                case "null", "~", "": return .null
                default:
                    if let number = Double(scalar.string),
                        scalar.string.first.map({ $0.isNumber || $0 == "-" }) == true,
                        !scalar.string.contains(":")
                    {
                        return .number(number)
                    }
                }
            }
            return .string(
                substitute(
                    scalar.string, path: path, line: node.mark?.line, doc: &doc, issues: &issues, file: file,
                    environment: environment))
        case .mapping(let mapping):
            var object: [String: JSONValue] = [:]
            for (keyNode, valueNode) in mapping {
                let key = keyNode.scalar?.string ?? "\(keyNode)"
                let child = path.isEmpty ? key : "\(path).\(key)"
                if object[key] != nil {
                    issues.append(
                        ConfigIssue(
                            file: file, line: keyNode.mark?.line, key: child, message: "the key appears twice",
                            fix: "keep one"))
                }
                if let line = keyNode.mark?.line { doc.lines[child] = line }
                object[key] = convert(
                    valueNode, path: child, into: &doc, issues: &issues, file: file, environment: environment)
            }
            return .object(object)
        case .sequence(let sequence):
            return .array(
                sequence.enumerated().map { index, item in
                    convert(
                        item, path: "\(path)[\(index)]", into: &doc, issues: &issues, file: file,
                        environment: environment)
                })
        case .alias:
            return .null
        }
    }

    static let tokenStart = "__UB_ENV_", tokenEnd = "__"

    /// `${NAME}` → `__UB_ENV_NAME__` (names are letters, digits and underscores).
    static func protectVariables(_ text: String) -> String {
        text.replacing(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/) { tokenStart + String($0.output.1) + tokenEnd }
    }

    /// Replaces each protected `${NAME}` with the environment's value; a missing variable is an
    /// issue naming it.
    private static func substitute(
        _ text: String, path: String, line: Int?, doc: inout ConfigDocument, issues: inout [ConfigIssue],
        file: String, environment: [String: String]
    ) -> String {
        if text.contains("${") {
            issues.append(
                ConfigIssue(
                    file: file, line: line, key: path, message: "'\(text)' has a malformed ${…}",
                    fix: "write ${NAME} with letters, digits and underscores"))
            return text
        }
        guard text.contains(tokenStart) else { return text }
        var out = ""
        var rest = Substring(text)
        while let start = rest.range(of: tokenStart) {
            out += rest[..<start.lowerBound]
            guard let end = rest[start.upperBound...].range(of: tokenEnd) else { break }
            let name = String(rest[start.upperBound..<end.lowerBound])
            if let value = environment[name], !value.isEmpty {
                out += value
            } else if path == "serve" || path.hasPrefix("serve.") {
                doc.unsetServeVariables[path] = name
            } else if path.hasPrefix("providers."), path.split(separator: ".").count == 3 {
                doc.unsetProviderVariables[path] = name
            } else {
                issues.append(
                    ConfigIssue(
                        file: file, line: line, key: path, message: "environment variable \(name) is not set",
                        fix: "export \(name)=… before running, or put the value in the file"))
            }
            doc.fromEnvironment.insert(path)
            rest = rest[end.upperBound...]
        }
        return out + rest
    }
}
