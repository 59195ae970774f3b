/// `sse-keepalive probe`: a one-connection client that behaves like a
/// browser's EventSource and reports what the path does to the stream.
/// Everything in Probe/ except ProbeConnection.swift is pure and unit-tested.

/// A usage problem: bad URL, header, duration or id. The message is meant
/// for the user as is.
public struct ProbeUsageError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// An `http://` or `https://` URL split into what the probe needs to connect and ask.
public struct ProbeURL: Equatable, Sendable, CustomStringConvertible {
    /// Host name or address, IPv6 without brackets.
    public var host: String
    public var port: UInt16
    /// origin-form request-target: path and query, never empty.
    public var target: String
    /// https: TLS, default port 443.
    public var isTLS: Bool

    public init(host: String, port: UInt16, target: String, isTLS: Bool = false) {
        self.host = host
        self.port = port
        self.target = target
        self.isTLS = isTLS
    }

    public var defaultPort: UInt16 { isTLS ? 443 : 80 }

    /// The Host header: brackets for IPv6, the port unless it is the scheme's default.
    public var hostHeader: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return port == defaultPort ? h : "\(h):\(port)"
    }

    public var description: String { "\(isTLS ? "https" : "http")://\(hostHeader)\(target)" }

    /// The host is an IPv4 or IPv6 address (no SNI for those; the
    /// certificate must name the address).
    public var hostIsAddress: Bool {
        host.contains(":") || (!host.isEmpty && host.utf8.allSatisfy { HTTPBytes.isDigit($0) || $0 == 0x2E })
    }

    /// Parses `http[s]://host[:port][/path][?query][#fragment]`. The fragment
    /// is dropped (browsers never send it); bytes outside visible ASCII in the
    /// path and query are percent-encoded, as a browser does.
    public static func parse(_ text: String) throws(ProbeUsageError) -> ProbeURL {
        guard let schemeEnd = text.range(of: "://") else {
            throw ProbeUsageError("URL \"\(text)\" has no scheme: write it as http://host:port/path or https://host/path")
        }
        let scheme = text[..<schemeEnd.lowerBound].lowercasedASCII()
        guard scheme == "http" || scheme == "https" else {
            throw ProbeUsageError("unsupported scheme \"\(scheme)\": probe speaks http:// and https://")
        }
        let isTLS = scheme == "https"
        let rest = text[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        var pathAndQuery = rest[authorityEnd...]
        if let hash = pathAndQuery.firstIndex(of: "#") { pathAndQuery = pathAndQuery[..<hash] }

        if authority.contains("@") {
            throw ProbeUsageError("credentials in the URL are not supported: use --header \"Authorization: ...\"")
        }
        let (host, port) = try parseAuthority(authority, defaultPort: isTLS ? 443 : 80)

        var target = percentEncoded(pathAndQuery)
        if target.isEmpty || target.hasPrefix("?") { target = "/" + target }
        return ProbeURL(host: host, port: port, target: target, isTLS: isTLS)
    }

    static func parseAuthority(_ authority: Substring, defaultPort: UInt16 = 80) throws(ProbeUsageError) -> (String, UInt16) {
        var host: Substring
        var portText: Substring? = nil
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else {
                throw ProbeUsageError("IPv6 address in URL is missing its closing \"]\"")
            }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw ProbeUsageError("unexpected \"\(after)\" after the IPv6 address") }
                portText = after.dropFirst()
            }
            guard ValueSyntax.isIPv6(host) else {
                throw ProbeUsageError("\"[\(host)]\" is not an IPv6 address")
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        if host.isEmpty { throw ProbeUsageError("URL has no host") }
        if !authority.hasPrefix("[") {
            for b in host.utf8 where !(ValueSyntax.isAlnum(b) || b == 0x2D || b == 0x2E || b == 0x5F) {
                throw ProbeUsageError("invalid character \(HTTPBytes.describe(b)) in host \"\(host)\"")
            }
        }
        var port: UInt16 = defaultPort
        if let portText {
            guard let n = ValueSyntax.decimal(portText), n >= 1, n <= 65535 else {
                throw ProbeUsageError("invalid port \"\(portText)\" (use 1-65535)")
            }
            port = UInt16(n)
        }
        return (String(host), port)
    }

    static func percentEncoded(_ s: Substring) -> String {
        guard s.utf8.contains(where: { !HTTPBytes.isVisibleASCII($0) }) else { return String(s) }
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        for b in s.utf8 {
            if HTTPBytes.isVisibleASCII(b) {
                out.append(b)
            } else {
                out += [0x25, hex[Int(b >> 4)], hex[Int(b & 0xF)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// `--connect-to HOST:PORT:ADDR:PORT` (curl's meaning): a connection meant
/// for HOST:PORT goes to ADDR:PORT instead; the Host header, SNI and the
/// certificate check still use the URL's host. An empty HOST or PORT
/// matches any; an empty ADDR or PORT keeps the URL's.
public struct ProbeConnectTo: Equatable, Sendable {
    public var host: String?
    public var port: UInt16?
    public var toHost: String?
    public var toPort: UInt16?

    public init(host: String?, port: UInt16?, toHost: String?, toPort: UInt16?) {
        self.host = host
        self.port = port
        self.toHost = toHost
        self.toPort = toPort
    }

    public static func parse(_ text: String) throws(ProbeUsageError) -> ProbeConnectTo {
        // Split on ":" outside brackets, so IPv6 addresses can be written [::1].
        var parts: [String] = []
        var current = ""
        var inBrackets = false
        for c in text {
            if c == "[" { inBrackets = true } else if c == "]" { inBrackets = false }
            if c == ":" && !inBrackets { parts.append(current); current = "" } else { current.append(c) }
        }
        parts.append(current)
        let usage = "--connect-to \"\(TextEscape.message(text))\": write it as HOST:PORT:ADDR:PORT (e.g. example.com:443:127.0.0.1:8443)"
        guard parts.count == 4 else { throw ProbeUsageError(usage) }
        func host(_ s: String) throws(ProbeUsageError) -> String? {
            if s.isEmpty { return nil }
            var h = Substring(s)
            if h.hasPrefix("[") && h.hasSuffix("]") {
                h = h.dropFirst().dropLast()
                guard ValueSyntax.isIPv6(h) else { throw ProbeUsageError(usage) }
                return String(h)
            }
            for b in h.utf8 where !(ValueSyntax.isAlnum(b) || b == 0x2D || b == 0x2E || b == 0x5F) { throw ProbeUsageError(usage) }
            return String(h)
        }
        func port(_ s: String) throws(ProbeUsageError) -> UInt16? {
            if s.isEmpty { return nil }
            guard let n = ValueSyntax.decimal(Substring(s)), n >= 1, n <= 65535 else { throw ProbeUsageError(usage) }
            return UInt16(n)
        }
        return ProbeConnectTo(host: try host(parts[0]), port: try port(parts[1]), toHost: try host(parts[2]), toPort: try port(parts[3]))
    }

    /// Where to connect for `url`: the first rule that matches, else the URL's own host and port.
    public static func target(for url: ProbeURL, rules: [ProbeConnectTo]) -> (host: String, port: UInt16) {
        for rule in rules {
            if let h = rule.host, !h.asciiCaseInsensitiveEquals(url.host) { continue }
            if let p = rule.port, p != url.port { continue }
            return (rule.toHost ?? url.host, rule.toPort ?? url.port)
        }
        return (url.host, url.port)
    }
}
