// Loads the YAML config file (docs/configuration.md): reads the file, composes
// the YAML and turns YAML errors into located `ConfigError`s. Which keys exist
// and what their values mean is the key table (ConfigKeys.swift).

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
        guard case .mapping = root else {
            throw reader.error(root, "", "the config must be a mapping of keys (listen, upstream, routes, ...), got \(ConfigReader.describe(root))")
        }
        try reader.read(root, "", keys: ConfigKeys.topKeys, into: &config)
        return config
    }

    // MARK: Value syntax (ValueSyntax.swift), for callers outside the config

    public static func parseDuration(_ s: String) -> TimeSpan? { ValueSyntax.duration(s) }
    public static func parseSize(_ s: String) -> Int? { ValueSyntax.size(s) }
    public static func parseAddress(_ s: String, allowUnix: Bool) -> SocketAddressSpec? {
        try? ValueSyntax.address(s, allowUnix: allowUnix).get()
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
            let names = duplicates.map { "\"\(TextEscape.message($0))\"" }.joined(separator: ", ")
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
