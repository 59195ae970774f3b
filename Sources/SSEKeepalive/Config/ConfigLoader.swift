// Loads and validates the YAML config file (SPEC section 3).
//
// The YAML is composed into a `Yams.Node` tree (never decoded through
// Codable) so that every error can name the file, the line and column of the
// offending node and the dotted key path (`routes[1].heartbeat`). Foundation
// stays in this file; the rest of the library never sees it.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Yams

/// A config problem, located as precisely as the YAML allows.
public struct ConfigError: Error, Equatable, CustomStringConvertible {
    public var file: String
    /// 1-based; nil when unknown (unreadable file).
    public var line: Int?
    /// 1-based, counted in Unicode scalars; nil when unknown.
    public var column: Int?
    /// Dotted key path (`timeouts.connect`, `routes[0].token.query`);
    /// empty for problems with the file as a whole (syntax, unreadable, root type).
    public var key: String
    public var message: String

    public init(file: String, line: Int? = nil, column: Int? = nil, key: String, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.key = key
        self.message = message
    }

    /// `<file>:<line>:<column>: <key>: <message>`; the line, column and key
    /// parts are left out when unknown.
    public var description: String {
        var s = file
        if let line {
            s += ":\(line)"
            if let column { s += ":\(column)" }
        }
        s += ": "
        if !key.isEmpty { s += key + ": " }
        return s + message
    }
}

public enum ConfigLoader {
    public static let defaultPath = "sse-keepalive.yaml"

    /// Loads the config file.
    ///
    /// `path` nil: `defaultPath` in the working directory if it exists, else
    /// the built-in defaults (with `sourceFile` nil). An explicit path that
    /// cannot be read is an error.
    public static func load(path: String?) throws(ConfigError) -> Config {
        let file: String
        if let path {
            file = path
        } else {
            guard access(defaultPath, F_OK) == 0 else { return Config() }
            file = defaultPath
        }
        let text = try readFile(file)
        return try parse(yaml: text, file: file)
    }

    /// Parses and validates config text; `file` is used in errors and as `sourceFile`.
    public static func parse(yaml: String, file: String) throws(ConfigError) -> Config {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            throw syntaxError(error, yaml: yaml, file: file)
        }
        var config = Config()
        config.sourceFile = file
        guard let root, !ConfigReader.isNull(root) else { return config }
        let reader = ConfigReader(file: file)
        try reader.readRoot(root, into: &config)
        return config
    }

    // MARK: Value syntax

    /// `500ms`, `15s`, `2m`, `1h`: a positive decimal integer and a unit, nothing else.
    public static func parseDuration(_ s: String) -> TimeSpan? {
        let units: [(String, Int)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
        // "ms" must be tried before "s" and "m".
        for (unit, factor) in units where s.hasSuffix(unit) {
            let digits = s.dropLast(unit.count)
            guard let n = parseDecimal(digits), n > 0 else { return nil }
            let (ms, overflow) = n.multipliedReportingOverflow(by: factor)
            guard !overflow else { return nil }
            return TimeSpan(milliseconds: ms)
        }
        return nil
    }

    /// `512` (bytes), `64KiB`, `1MiB`, `1GiB`; positive integers only.
    public static func parseSize(_ s: String) -> Int? {
        let units: [(String, Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)]
        var digits = Substring(s)
        var factor = 1
        for (unit, f) in units where s.hasSuffix(unit) {
            digits = s.dropLast(unit.count)
            factor = f
            break
        }
        guard let n = parseDecimal(digits), n > 0 else { return nil }
        let (bytes, overflow) = n.multipliedReportingOverflow(by: factor)
        return overflow ? nil : bytes
    }

    /// `host:port`, `[v6]:port`, or (with `allowUnix`) `unix:/absolute/path`.
    public static func parseAddress(_ s: String, allowUnix: Bool) -> SocketAddressSpec? {
        if case .success(let a) = checkAddress(s, allowUnix: allowUnix) { return a }
        return nil
    }

    // MARK: Internals shared with the reader

    /// Non-empty ASCII decimal digits, no sign, no separators.
    static func parseDecimal(_ s: Substring) -> Int? {
        guard !s.isEmpty, s.utf8.count <= 18, s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int(s)
    }

    /// Like `parseAddress`, but says what is wrong.
    static func checkAddress(_ s: String, allowUnix: Bool) -> Result<SocketAddressSpec, AddressProblem> {
        let usage = allowUnix ? "use host:port, [v6]:port or unix:/path" : "use host:port or [v6]:port"
        func bad(_ why: String? = nil) -> Result<SocketAddressSpec, AddressProblem> {
            .failure(AddressProblem(text: "invalid address \"\(escaped(s))\" (\(why.map { $0 + "; " } ?? "")\(usage))"))
        }
        if s.hasPrefix("unix:") {
            guard allowUnix else { return bad("unix sockets are not allowed here") }
            let path = String(s.dropFirst(5))
            guard path.hasPrefix("/") else { return bad("the socket path must be absolute") }
            guard path.utf8.count <= 107 else { return bad("the socket path is longer than 107 bytes") }
            guard !path.utf8.contains(0) else { return bad() }
            return .success(.unix(path: path))
        }
        let host: Substring
        let portText: Substring
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return bad() }
            host = s[s.index(after: s.startIndex)..<close]
            let rest = s[s.index(after: close)...]
            guard rest.hasPrefix(":") else { return bad("missing port") }
            portText = rest.dropFirst()
            guard isIPv6(host) else { return bad("\"\(escaped(String(host)))\" is not an IPv6 address") }
        } else {
            guard let colon = s.lastIndex(of: ":") else { return bad("missing port") }
            host = s[..<colon]
            portText = s[s.index(after: colon)...]
            if host.contains(":") { return bad("IPv6 addresses go in brackets") }
            guard !host.isEmpty else { return bad("missing host") }
            guard isHostname(host) else { return bad("\"\(escaped(String(host)))\" is not a host name or IPv4 address") }
        }
        guard let port = parseDecimal(portText) else { return bad("the port must be a number") }
        guard port >= 1 && port <= 65535 else {
            return .failure(AddressProblem(text: "invalid address \"\(escaped(s))\": port \(port) is out of range 1-65535"))
        }
        return .success(.inet(host: String(host), port: UInt16(port)))
    }

    struct AddressProblem: Error { var text: String }

    /// An IPv4 literal (when the host is all digits and dots), or a DNS host
    /// name: labels of letters, digits and `-`, not starting or ending with `-`.
    static func isHostname(_ host: Substring) -> Bool {
        let bytes = Array(host.utf8)
        guard !bytes.isEmpty, bytes.count <= 253 else { return false }
        if bytes.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E }) {
            let parts = host.split(separator: ".", omittingEmptySubsequences: false)
            return parts.count == 4 && parts.allSatisfy { p in
                guard let n = parseDecimal(p), p.count <= 3 else { return false }
                return n <= 255
            }
        }
        let labels = host.split(separator: ".", omittingEmptySubsequences: false)
        for (i, label) in labels.enumerated() {
            // A single trailing dot (fully qualified name) is allowed.
            if label.isEmpty && i == labels.count - 1 && i > 0 { continue }
            let l = Array(label.utf8)
            guard !l.isEmpty, l.count <= 63, l.first != 0x2D, l.last != 0x2D else { return false }
            guard l.allSatisfy({ isAlnum($0) || $0 == 0x2D }) else { return false }
        }
        return true
    }

    static func isIPv6(_ host: Substring) -> Bool {
        guard !host.isEmpty, host.utf8.count < 46 else { return false }
        var buf = in6_addr()
        return String(host).withCString { inet_pton(AF_INET6, $0, &buf) } == 1
    }

    static func isAlnum(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
    }

    /// For quoting user text inside messages: control characters made visible.
    static func escaped(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 || u.value == 0x7F {
                    out += "\\x" + (u.value < 0x10 ? "0" : "") + String(u.value, radix: 16, uppercase: true)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out
    }

    // MARK: File and YAML errors

    static func readFile(_ path: String) throws(ConfigError) -> String {
        func fail(_ what: String) -> ConfigError {
            ConfigError(file: path, key: "", message: "cannot read config file: \(what)")
        }
        guard let f = fopen(path, "rb") else { throw fail(String(cString: strerror(errno))) }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, f) }
            if n > 0 { bytes.append(contentsOf: chunk[0..<n]) }
            if n < chunk.count {
                if ferror(f) != 0 { throw fail(String(cString: strerror(errno))) }
                break
            }
            if bytes.count > 16 << 20 { throw fail("larger than 16 MiB") }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ConfigError(file: path, key: "", message: "the file is not valid UTF-8")
        }
        return text
    }

    static func syntaxError(_ error: any Error, yaml: String, file: String) -> ConfigError {
        guard let e = error as? YamlError else {
            return ConfigError(file: file, key: "", message: "YAML error: \(error)")
        }
        func clean(_ s: String) -> String {
            s.trimmingWhitespace()
        }
        switch e {
        case let .scanner(context, problem, mark, _),
             let .parser(context, problem, mark, _),
             let .composer(context, problem, mark, _):
            var msg = "YAML syntax error: \(clean(problem))"
            if let context {
                msg += " (\(clean(context.text)) at line \(context.mark.line), column \(context.mark.column))"
            }
            return ConfigError(file: file, line: mark.line, column: mark.column, key: "", message: msg)
        case let .reader(problem, offset, _, yaml):
            var line: Int?
            if let offset {
                line = 1 + yaml.utf8.prefix(offset).reduce(0) { $1 == 0x0A ? $0 + 1 : $0 }
            }
            return ConfigError(file: file, line: line, key: "", message: "YAML error: \(clean(problem))")
        case let .duplicatedKeysInMapping(duplicates, context):
            let names = duplicates.map { "\"\(escaped($0))\"" }.joined(separator: ", ")
            return ConfigError(file: file, line: context.mark.line, column: context.mark.column,
                               key: duplicates.first ?? "",
                               message: "duplicate key \(names) in the same mapping (first occurrence here)")
        default:
            return ConfigError(file: file, key: "", message: "YAML error: \(e)")
        }
    }
}

extension String {
    fileprivate func trimmingWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[first...last])
    }
}

// MARK: - Node tree reader

/// Walks the composed YAML tree and fills a `Config`, throwing a located
/// `ConfigError` at the first problem.
struct ConfigReader {
    let file: String

    typealias Entry = (name: String, keyNode: Node, value: Node)

    static let topKeys = ["listen", "upstream", "workers", "heartbeat", "log", "timeouts", "limits", "shutdown", "admin", "routes"]
    static let heartbeatKeys = ["interval", "comment", "blank_line"]
    static let logKeys = ["level", "format", "access"]
    static let timeoutKeys = ["connect", "response", "client_header", "keepalive"]
    static let limitKeys = ["max_connections", "max_header_bytes", "stream_buffer"]
    static let shutdownKeys = ["grace"]
    static let adminKeys = ["listen"]
    static let routeKeys = ["path", "upstream", "heartbeat", "token"]
    static let tokenKeys = ["query", "header", "scheme"]

    static let durationUsage = "use 500ms, 15s, 2m or 1h"
    static let durationOrOffUsage = "use 500ms, 15s, 2m, 1h or off"
    static let sizeUsage = "use 512, 64KiB, 1MiB or 1GiB"

    // MARK: Errors

    func error(_ node: Node?, _ key: String, _ message: String) -> ConfigError {
        ConfigError(file: file, line: node?.mark?.line, column: node?.mark?.column, key: key, message: message)
    }

    static func describe(_ node: Node) -> String {
        switch node {
        case .scalar(let s):
            if isNull(node) { return "nothing" }
            return "\"\(ConfigLoader.escaped(s.string))\""
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    func typeError(_ node: Node, _ key: String, expected: String) -> ConfigError {
        error(node, key, "expected \(expected), got \(Self.describe(node))")
    }

    // MARK: Node helpers

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
            throw typeError(node, path.isEmpty ? "" : path, expected: expected)
        }
        var out: [Entry] = []
        for (k, v) in m {
            guard case .scalar(let ks) = k else {
                throw error(k, path, "mapping keys must be plain names, got \(Self.describe(k))")
            }
            let name = ks.string
            let keyPath = path.isEmpty ? name : "\(path).\(name)"
            guard allowed.contains(name) else {
                throw error(k, keyPath, Self.unknownKeyMessage(name, allowed: allowed))
            }
            out.append((name, k, v))
        }
        return out
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
        let text = try scalar(node, key, expected: "a duration (\(Self.durationUsage))")
        guard let d = ConfigLoader.parseDuration(text) else {
            throw error(node, key, "invalid duration \"\(ConfigLoader.escaped(text))\" (\(Self.durationUsage))")
        }
        return d
    }

    /// A duration, or nil for `off`.
    func durationOrOff(_ node: Node, _ key: String) throws(ConfigError) -> TimeSpan? {
        if Self.isOff(node) { return nil }
        let text = try scalar(node, key, expected: "a duration or off (\(Self.durationOrOffUsage))")
        guard let d = ConfigLoader.parseDuration(text) else {
            throw error(node, key, "invalid duration \"\(ConfigLoader.escaped(text))\" (\(Self.durationOrOffUsage))")
        }
        return d
    }

    func size(_ node: Node, _ key: String, minimum: Int = 1) throws(ConfigError) -> Int {
        let text = try scalar(node, key, expected: "a size (\(Self.sizeUsage))")
        guard let n = ConfigLoader.parseSize(text) else {
            throw error(node, key, "invalid size \"\(ConfigLoader.escaped(text))\" (\(Self.sizeUsage))")
        }
        guard n >= minimum else {
            throw error(node, key, "size \(text) is too small (at least \(Config.renderSize(minimum)))")
        }
        return n
    }

    func integer(_ node: Node, _ key: String, range: ClosedRange<Int>) throws(ConfigError) -> Int {
        let text = try scalar(node, key, expected: "an integer")
        guard let n = ConfigLoader.parseDecimal(Substring(text)) else {
            throw error(node, key, "invalid integer \"\(ConfigLoader.escaped(text))\" (expected \(range.lowerBound) to \(range.upperBound))")
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
        default: throw error(node, key, "invalid boolean \"\(ConfigLoader.escaped(text))\" (use true or false)")
        }
    }

    func choice<T: RawRepresentable & CaseIterable>(_ node: Node, _ key: String, what: String) throws(ConfigError) -> T where T.RawValue == String {
        let allowed = T.allCases.map(\.rawValue).joined(separator: ", ")
        let text = try scalar(node, key, expected: "one of \(allowed)")
        guard let v = T(rawValue: text) else {
            throw error(node, key, "invalid \(what) \"\(ConfigLoader.escaped(text))\" (allowed: \(allowed))")
        }
        return v
    }

    func address(_ node: Node, _ key: String, allowUnix: Bool) throws(ConfigError) -> SocketAddressSpec {
        let text = try scalar(node, key, expected: allowUnix ? "an address (host:port or unix:/path)" : "an address (host:port)")
        switch ConfigLoader.checkAddress(text, allowUnix: allowUnix) {
        case .success(let a): return a
        case .failure(let p): throw error(node, key, p.text)
        }
    }

    // MARK: Sections

    func readRoot(_ root: Node, into c: inout Config) throws(ConfigError) {
        guard case .mapping = root else {
            throw error(root, "", "the config must be a mapping of keys (listen, upstream, routes, ...), got \(Self.describe(root))")
        }
        let entries = try mapping(root, "", allowed: Self.topKeys)
        // The top-level heartbeat first: routes inherit from it wherever it appears.
        for e in entries where e.name == "heartbeat" {
            c.heartbeat = try heartbeat(e.value, "heartbeat", base: HeartbeatSettings())
        }
        for e in entries {
            let v = e.value, k = e.name
            switch k {
            case "listen": c.listen = try listen(v)
            case "upstream": c.upstream = try address(v, k, allowUnix: true)
            case "workers": c.workers = try workers(v)
            case "heartbeat": break
            case "log": try log(v, into: &c)
            case "timeouts": try timeouts(v, into: &c)
            case "limits": try limits(v, into: &c)
            case "shutdown":
                for s in try mapping(v, k, allowed: Self.shutdownKeys) {
                    c.shutdownGrace = try duration(s.value, "shutdown.grace")
                }
            case "admin": c.adminListen = try admin(v, current: c.adminListen)
            case "routes": c.routes = try routes(v, heartbeat: c.heartbeat)
            default: break  // unreachable: keys are checked by mapping()
            }
        }
    }

    func listen(_ node: Node) throws(ConfigError) -> [SocketAddressSpec] {
        switch node {
        case .sequence(let seq):
            guard !seq.isEmpty else { throw error(node, "listen", "the list of listen addresses is empty") }
            var out: [SocketAddressSpec] = []
            for (i, item) in seq.enumerated() {
                let a = try address(item, "listen[\(i)]", allowUnix: false)
                if out.contains(a) { throw error(item, "listen[\(i)]", "duplicate listen address \"\(a)\"") }
                out.append(a)
            }
            return out
        default:
            return [try address(node, "listen", allowUnix: false)]
        }
    }

    func workers(_ node: Node) throws(ConfigError) -> WorkerCount {
        let text = try scalar(node, "workers", expected: "auto or a number of threads")
        if text == "auto" { return .auto }
        guard let n = ConfigLoader.parseDecimal(Substring(text)), n >= 1, n <= 1024 else {
            throw error(node, "workers", "invalid workers \"\(ConfigLoader.escaped(text))\" (use auto or an integer from 1 to 1024)")
        }
        return .count(n)
    }

    /// A heartbeat value: a duration, `off`, or a mapping whose unset keys come from `base`.
    func heartbeat(_ node: Node, _ key: String, base: HeartbeatSettings) throws(ConfigError) -> HeartbeatSettings {
        var h = base
        if case .mapping = node {
            for e in try mapping(node, key, allowed: Self.heartbeatKeys) {
                let k = "\(key).\(e.name)"
                switch e.name {
                case "interval": h.interval = try durationOrOff(e.value, k)
                case "comment": h.comment = try comment(e.value, k)
                case "blank_line": h.blankLine = try bool(e.value, k)
                default: break
                }
            }
            return h
        }
        guard case .scalar = node, !Self.isNull(node) else {
            throw typeError(node, key, expected: "a duration, off, or a mapping with interval, comment, blank_line")
        }
        h.interval = try durationOrOff(node, key)
        return h
    }

    func comment(_ node: Node, _ key: String) throws(ConfigError) -> String {
        if Self.isNull(node) { return "" }
        let text = try scalar(node, key, expected: "a comment text")
        for u in text.unicodeScalars {
            if u == "\n" || u == "\r" || u.value == 0 {
                throw error(node, key, "the comment must be a single line (no CR, LF or NUL)")
            }
            if (u.value < 0x20 && u != "\t") || u.value == 0x7F || (0x80...0x9F).contains(u.value) {
                let hex = String(u.value, radix: 16, uppercase: true)
                throw error(node, key, "the comment contains a control character (U+\(String(repeating: "0", count: 4 - hex.count))\(hex))")
            }
        }
        return text
    }

    func log(_ node: Node, into c: inout Config) throws(ConfigError) {
        for e in try mapping(node, "log", allowed: Self.logKeys) {
            let k = "log.\(e.name)"
            switch e.name {
            case "level": c.logLevel = try choice(e.value, k, what: "log level")
            case "format": c.logFormat = try choice(e.value, k, what: "log format")
            case "access": c.accessLog = try bool(e.value, k)
            default: break
            }
        }
    }

    func timeouts(_ node: Node, into c: inout Config) throws(ConfigError) {
        for e in try mapping(node, "timeouts", allowed: Self.timeoutKeys) {
            let d = try duration(e.value, "timeouts.\(e.name)")
            switch e.name {
            case "connect": c.connectTimeout = d
            case "response": c.responseTimeout = d
            case "client_header": c.clientHeaderTimeout = d
            case "keepalive": c.keepaliveTimeout = d
            default: break
            }
        }
    }

    func limits(_ node: Node, into c: inout Config) throws(ConfigError) {
        for e in try mapping(node, "limits", allowed: Self.limitKeys) {
            let k = "limits.\(e.name)"
            switch e.name {
            case "max_connections": c.maxConnections = try integer(e.value, k, range: 1...100_000_000)
            case "max_header_bytes": c.maxHeaderBytes = try size(e.value, k, minimum: 1024)
            case "stream_buffer": c.streamBuffer = try size(e.value, k)
            default: break
            }
        }
    }

    func admin(_ node: Node, current: SocketAddressSpec?) throws(ConfigError) -> SocketAddressSpec? {
        if Self.isNull(node) || Self.isOff(node) { return nil }
        var result = current
        for e in try mapping(node, "admin", allowed: Self.adminKeys, expected: "a mapping with listen, or off") {
            if Self.isNull(e.value) || Self.isOff(e.value) {
                result = nil
            } else {
                result = try address(e.value, "admin.listen", allowUnix: false)
            }
        }
        return result
    }

    func routes(_ node: Node, heartbeat top: HeartbeatSettings) throws(ConfigError) -> [RouteConfig] {
        if Self.isNull(node) { return [] }
        guard case .sequence(let seq) = node else {
            throw typeError(node, "routes", expected: "a list of routes")
        }
        var out: [RouteConfig] = []
        var seen: [String: Int] = [:]
        for (i, item) in seq.enumerated() {
            let key = "routes[\(i)]"
            let entries = try mapping(item, key, allowed: Self.routeKeys, expected: "a route mapping with path")
            guard let pathEntry = entries.first(where: { $0.name == "path" }) else {
                throw error(item, "\(key).path", "missing required key (each route needs a path such as /events)")
            }
            let path = try routePath(pathEntry.value, "\(key).path")
            if let first = seen[path] {
                throw error(pathEntry.value, "\(key).path", "duplicate route path \"\(ConfigLoader.escaped(path))\" (already used by routes[\(first)])")
            }
            seen[path] = i
            var route = RouteConfig(path: path, heartbeat: top)
            for e in entries {
                let k = "\(key).\(e.name)"
                switch e.name {
                case "upstream": route.upstream = try address(e.value, k, allowUnix: true)
                case "heartbeat": route.heartbeat = try heartbeat(e.value, k, base: top)
                case "token": route.token = try token(e.value, k)
                default: break
                }
            }
            out.append(route)
        }
        return out
    }

    func routePath(_ node: Node, _ key: String) throws(ConfigError) -> String {
        let path = try scalar(node, key, expected: "a path such as /events")
        guard path.hasPrefix("/") else {
            throw error(node, key, "invalid route path \"\(ConfigLoader.escaped(path))\" (must start with \"/\")")
        }
        for u in path.unicodeScalars {
            if u.value <= 0x20 || u.value == 0x7F || u == "?" || u == "#" {
                throw error(node, key, "invalid route path \"\(ConfigLoader.escaped(path))\" (no spaces, control characters, ? or #)")
            }
            if u.value > 0x7E {
                throw error(node, key, "invalid route path \"\(ConfigLoader.escaped(path))\" (percent-encode non-ASCII characters, as clients send them)")
            }
        }
        return path
    }

    /// Header names a token must not be written into.
    static let forbiddenTokenHeaders: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
        "upgrade", "host", "content-length", "content-type",
    ]

    func token(_ node: Node, _ key: String) throws(ConfigError) -> TokenSettings {
        var t = TokenSettings()
        for e in try mapping(node, key, allowed: Self.tokenKeys, expected: "a mapping ({} for the defaults)") {
            let k = "\(key).\(e.name)"
            switch e.name {
            case "query":
                let q = try scalar(e.value, k, expected: "a query parameter name")
                guard !q.isEmpty, q.utf8.allSatisfy(Self.isUnreserved) else {
                    throw error(e.value, k, "invalid query parameter name \"\(ConfigLoader.escaped(q))\" (letters, digits, -, ., _ and ~ only)")
                }
                t.query = q
            case "header":
                let h = try scalar(e.value, k, expected: "a header name")
                guard !h.isEmpty, h.utf8.allSatisfy(Self.isTokenChar) else {
                    throw error(e.value, k, "invalid header name \"\(ConfigLoader.escaped(h))\" (an HTTP token such as Authorization)")
                }
                guard !Self.forbiddenTokenHeaders.contains(h.lowercased()) else {
                    throw error(e.value, k, "header \"\(h)\" cannot carry a token")
                }
                t.header = h
            case "scheme":
                let s = Self.isNull(e.value) ? "" : try scalar(e.value, k, expected: "an authorization scheme")
                guard s.utf8.allSatisfy(Self.isTokenChar) else {
                    throw error(e.value, k, "invalid scheme \"\(ConfigLoader.escaped(s))\" (an HTTP token such as Bearer, or \"\" for the bare value)")
                }
                t.scheme = s
            default: break
            }
        }
        return t
    }

    /// RFC 3986 unreserved.
    static func isUnreserved(_ b: UInt8) -> Bool {
        ConfigLoader.isAlnum(b) || b == 0x2D || b == 0x2E || b == 0x5F || b == 0x7E
    }

    /// RFC 9110 tchar.
    static func isTokenChar(_ b: UInt8) -> Bool {
        if ConfigLoader.isAlnum(b) { return true }
        switch b {
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
             UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
             UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }
}
