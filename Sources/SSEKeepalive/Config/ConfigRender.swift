// Renders the effective configuration as YAML (`sse-keepalive check`).
// The output is accepted back by `ConfigLoader.parse` and yields an equal
// `Config` (apart from `sourceFile`).

extension Config {
    /// Every key with its effective value; routes with their fully resolved
    /// heartbeat and token.
    public func rendered() -> String {
        var out = "# sse-keepalive effective configuration"
        out += sourceFile.map { " (from \(Self.commentSafe($0)))" } ?? " (built-in defaults)"
        out += "\n"
        if listen.count == 1 {
            out += "listen: \(Self.quote(listen[0].description))\n"
        } else {
            out += "listen:\n"
            for a in listen { out += "  - \(Self.quote(a.description))\n" }
        }
        out += "upstream: \(Self.quote(upstream.description))\n"
        switch workers {
        case .auto: out += "workers: auto\n"
        case .count(let n): out += "workers: \(n)\n"
        }
        out += "heartbeat:\n" + Self.renderHeartbeat(heartbeat, indent: "  ")
        out += "log:\n"
        out += "  level: \(logLevel.rawValue)\n"
        out += "  format: \(logFormat.rawValue)\n"
        out += "  access: \(accessLog)\n"
        out += "timeouts:\n"
        out += "  connect: \(connectTimeout)\n"
        out += "  response: \(responseTimeout)\n"
        out += "  client_header: \(clientHeaderTimeout)\n"
        out += "  keepalive: \(keepaliveTimeout)\n"
        out += "limits:\n"
        out += "  max_connections: \(maxConnections)\n"
        out += "  max_header_bytes: \(Self.renderSize(maxHeaderBytes))\n"
        out += "  stream_buffer: \(Self.renderSize(streamBuffer))\n"
        out += "shutdown:\n"
        out += "  grace: \(shutdownGrace)\n"
        if let adminListen {
            out += "admin:\n  listen: \(Self.quote(adminListen.description))\n"
        } else {
            out += "admin: off\n"
        }
        if routes.isEmpty {
            out += "routes: []\n"
        } else {
            out += "routes:\n"
            for r in routes {
                out += "  - path: \(Self.quote(r.path))\n"
                if let u = r.upstream {
                    out += "    upstream: \(Self.quote(u.description))\n"
                } else {
                    out += "    # upstream: \(Self.quote(upstream.description)) (inherited)\n"
                }
                out += "    heartbeat:\n" + Self.renderHeartbeat(r.heartbeat, indent: "      ")
                if let t = r.token {
                    out += "    token:\n"
                    out += "      query: \(Self.quote(t.query))\n"
                    out += "      header: \(Self.quote(t.header))\n"
                    out += "      scheme: \(Self.quote(t.scheme))\n"
                }
            }
        }
        return out
    }

    static func renderHeartbeat(_ h: HeartbeatSettings, indent: String) -> String {
        indent + "interval: \(h.interval.map(\.description) ?? "off")\n"
            + indent + "comment: \(quote(h.comment))\n"
            + indent + "blank_line: \(h.blankLine)\n"
    }

    /// `GiB`, `MiB` or `KiB` when exact, else plain bytes.
    static func renderSize(_ n: Int) -> String {
        if n > 0 && n % (1 << 30) == 0 { return "\(n >> 30)GiB" }
        if n > 0 && n % (1 << 20) == 0 { return "\(n >> 20)MiB" }
        if n > 0 && n % (1 << 10) == 0 { return "\(n >> 10)KiB" }
        return "\(n)"
    }

    /// A YAML double-quoted scalar; everything outside printable ASCII and
    /// UTF-8 text is escaped.
    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\0": out += "\\0"
            default:
                if u.value < 0x20 || u.value == 0x7F || (0x80...0x9F).contains(u.value)
                    || u.value == 0x2028 || u.value == 0x2029 || u.value == 0xFEFF {
                    let hex = String(u.value, radix: 16, uppercase: true)
                    out += "\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    /// For the header comment line: no line breaks.
    static func commentSafe(_ s: String) -> String {
        String(String.UnicodeScalarView(s.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : $0 }))
    }
}
