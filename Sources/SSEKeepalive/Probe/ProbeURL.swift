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

/// An `http://` URL split into what the probe needs to connect and ask.
public struct ProbeURL: Equatable, Sendable, CustomStringConvertible {
    /// Host name or address, IPv6 without brackets.
    public var host: String
    public var port: UInt16
    /// origin-form request-target: path and query, never empty.
    public var target: String

    public init(host: String, port: UInt16, target: String) {
        self.host = host
        self.port = port
        self.target = target
    }

    /// The Host header: brackets for IPv6, the port unless it is 80.
    public var hostHeader: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return port == 80 ? h : "\(h):\(port)"
    }

    public var description: String { "http://\(hostHeader)\(target)" }

    public static let httpsMessage =
        "https is not supported by probe; point it at the plain-HTTP side or use a local port-forward"

    /// Parses `http://host[:port][/path][?query][#fragment]`. The fragment is
    /// dropped (browsers never send it); bytes outside visible ASCII in the
    /// path and query are percent-encoded, as a browser does.
    public static func parse(_ text: String) throws(ProbeUsageError) -> ProbeURL {
        guard let schemeEnd = text.range(of: "://") else {
            throw ProbeUsageError("URL \"\(text)\" has no scheme: write it as http://host:port/path")
        }
        let scheme = text[..<schemeEnd.lowerBound].lowercasedASCII()
        if scheme == "https" { throw ProbeUsageError(httpsMessage) }
        guard scheme == "http" else {
            throw ProbeUsageError("unsupported scheme \"\(scheme)\": probe speaks http:// only")
        }
        let rest = text[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        var pathAndQuery = rest[authorityEnd...]
        if let hash = pathAndQuery.firstIndex(of: "#") { pathAndQuery = pathAndQuery[..<hash] }

        if authority.contains("@") {
            throw ProbeUsageError("credentials in the URL are not supported: use --header \"Authorization: ...\"")
        }
        let (host, port) = try parseAuthority(authority)

        var target = percentEncoded(pathAndQuery)
        if target.isEmpty || target.hasPrefix("?") { target = "/" + target }
        return ProbeURL(host: host, port: port, target: target)
    }

    static func parseAuthority(_ authority: Substring) throws(ProbeUsageError) -> (String, UInt16) {
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
            guard ConfigLoader.isIPv6(host) else {
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
            for b in host.utf8 where !(ConfigLoader.isAlnum(b) || b == 0x2D || b == 0x2E || b == 0x5F) {
                throw ProbeUsageError("invalid character \(HTTPBytes.describe(b)) in host \"\(host)\"")
            }
        }
        var port: UInt16 = 80
        if let portText {
            guard let n = ConfigLoader.parseDecimal(portText), n >= 1, n <= 65535 else {
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
