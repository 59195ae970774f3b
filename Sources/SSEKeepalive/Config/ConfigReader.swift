// Reads values out of the composed YAML tree. The config is composed into a
// `Yams.Node` tree (never decoded through Codable) so that every error can
// name the file, the line and column of the offending node and the dotted key
// path (`routes[1].heartbeat`). Which keys exist and where their values go is
// the key table's business (ConfigKeys.swift), not this file's.

import Yams

struct ConfigReader {
    let file: String

    typealias Entry = (name: String, keyNode: Node, value: Node)

    // MARK: Errors

    func error(_ node: Node?, _ key: String, _ message: String) -> ConfigError {
        ConfigError(file: file, line: node?.mark?.line, column: node?.mark?.column, key: key, message: message)
    }

    static func describe(_ node: Node) -> String {
        switch node {
        case .scalar(let s):
            if isNull(node) { return "nothing" }
            return "\"\(TextEscape.message(s.string))\""
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    func typeError(_ node: Node, _ key: String, expected: String) -> ConfigError {
        error(node, key, "expected \(expected), got \(Self.describe(node))")
    }

    // MARK: Node shapes

    static func isNull(_ node: Node) -> Bool {
        guard case .scalar(let s) = node, s.style == .plain || s.style == .any else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(s.string)
    }

    /// A plain `off` / `false` (which YAML 1.1 reads as boolean false) or a quoted "off".
    static func isOff(_ node: Node) -> Bool {
        guard case .scalar(let s) = node else { return false }
        let text = s.string
        if s.style == .plain || s.style == .any {
            return ["off", "Off", "OFF", "false", "False", "FALSE"].contains(text)
        }
        return text.lowercased() == "off"
    }

    /// The text of a scalar that is not null.
    func scalar(_ node: Node, _ key: String, expected: String) throws(ConfigError) -> String {
        guard case .scalar(let s) = node, !Self.isNull(node) else {
            throw typeError(node, key, expected: expected)
        }
        return s.string
    }

    /// The entries of a mapping, every key checked against `allowed`.
    func mapping(_ node: Node, _ path: String, allowed: [String], expected: String = "a mapping") throws(ConfigError) -> [Entry] {
        guard case .mapping(let m) = node else {
            throw typeError(node, path, expected: expected)
        }
        var out: [Entry] = []
        for (k, v) in m {
            guard case .scalar(let ks) = k else {
                throw error(k, path, "mapping keys must be plain names, got \(Self.describe(k))")
            }
            let name = ks.string
            guard allowed.contains(name) else {
                throw error(k, Self.join(path, name), Self.unknownKeyMessage(name, allowed: allowed))
            }
            out.append((name, k, v))
        }
        return out
    }

    /// `routes[0]` + `token` -> `routes[0].token`; at the top level just the name.
    static func join(_ path: String, _ name: String) -> String {
        path.isEmpty ? name : "\(path).\(name)"
    }

    static func unknownKeyMessage(_ name: String, allowed: [String]) -> String {
        var best: (String, Int)?
        for candidate in allowed {
            let d = editDistance(name.lowercased(), candidate)
            if d <= 2, best == nil || d < best!.1 { best = (candidate, d) }
        }
        if let best { return "unknown key (did you mean \"\(best.0)\"?)" }
        return "unknown key (allowed: \(allowed.joined(separator: ", ")))"
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var prev = Array(0...b.count)
        var cur = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            cur[0] = i
            for j in 1...b.count {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&prev, &cur)
        }
        return prev[b.count]
    }

    // MARK: Typed values

    func duration(_ node: Node, _ key: String) throws(ConfigError) -> TimeSpan {
        let text = try scalar(node, key, expected: "a duration (\(ValueSyntax.durationUsage))")
        guard let d = ValueSyntax.duration(text) else {
            throw error(node, key, "invalid duration \"\(TextEscape.message(text))\" (\(ValueSyntax.durationUsage))")
        }
        return d
    }

    /// A duration, or nil for `off`.
    func durationOrOff(_ node: Node, _ key: String) throws(ConfigError) -> TimeSpan? {
        if Self.isOff(node) { return nil }
        let text = try scalar(node, key, expected: "a duration or off (\(ValueSyntax.durationOrOffUsage))")
        guard let d = ValueSyntax.duration(text) else {
            throw error(node, key, "invalid duration \"\(TextEscape.message(text))\" (\(ValueSyntax.durationOrOffUsage))")
        }
        return d
    }

    func size(_ node: Node, _ key: String, minimum: Int = 1) throws(ConfigError) -> Int {
        let text = try scalar(node, key, expected: "a size (\(ValueSyntax.sizeUsage))")
        guard let n = ValueSyntax.size(text) else {
            throw error(node, key, "invalid size \"\(TextEscape.message(text))\" (\(ValueSyntax.sizeUsage))")
        }
        guard n >= minimum else {
            throw error(node, key, "size \(text) is too small (at least \(ValueSyntax.sizeText(minimum)))")
        }
        return n
    }

    func integer(_ node: Node, _ key: String, range: ClosedRange<Int>) throws(ConfigError) -> Int {
        let text = try scalar(node, key, expected: "an integer")
        guard let n = ValueSyntax.decimal(Substring(text)) else {
            throw error(node, key, "invalid integer \"\(TextEscape.message(text))\" (expected \(range.lowerBound) to \(range.upperBound))")
        }
        guard range.contains(n) else {
            throw error(node, key, "\(n) is out of range (expected \(range.lowerBound) to \(range.upperBound))")
        }
        return n
    }

    func bool(_ node: Node, _ key: String) throws(ConfigError) -> Bool {
        let text = try scalar(node, key, expected: "true or false")
        switch text {
        case "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON": return true
        case "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF": return false
        default: throw error(node, key, "invalid boolean \"\(TextEscape.message(text))\" (use true or false)")
        }
    }

    func choice<T: RawRepresentable & CaseIterable>(_ node: Node, _ key: String, what: String) throws(ConfigError) -> T where T.RawValue == String {
        let allowed = T.allCases.map(\.rawValue).joined(separator: ", ")
        let text = try scalar(node, key, expected: "one of \(allowed)")
        guard let v = T(rawValue: text) else {
            throw error(node, key, "invalid \(what) \"\(TextEscape.message(text))\" (allowed: \(allowed))")
        }
        return v
    }

    func address(_ node: Node, _ key: String, allowUnix: Bool) throws(ConfigError) -> SocketAddressSpec {
        let text = try scalar(node, key, expected: allowUnix ? "an address (host:port or unix:/path)" : "an address (host:port)")
        switch ValueSyntax.address(text, allowUnix: allowUnix) {
        case .success(let a): return a
        case .failure(let p): throw error(node, key, p.text)
        }
    }

    /// Free text; `check` returns a message when the text is not acceptable.
    /// A null value reads as `null` when given, else is a type error.
    func text(_ node: Node, _ key: String, expected: String, null: String?,
              check: (String) -> String?) throws(ConfigError) -> String {
        if let null, Self.isNull(node) { return null }
        let text = try scalar(node, key, expected: expected)
        if let problem = check(text) { throw error(node, key, problem) }
        return text
    }
}
