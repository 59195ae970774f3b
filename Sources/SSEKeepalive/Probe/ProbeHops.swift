/// Intermediaries that name themselves in the response head, and the
/// documented default limits that cut event streams. The sources are listed
/// in docs/probe.md; values are the vendors' defaults, which a deployment
/// may have changed.
public struct ProbeHop: Equatable, Sendable {
    public enum LimitKind: String, Sendable {
        /// Cuts a stream after this long without a byte.
        case idle
        /// Cuts a stream this long after it started, however busy.
        case lifetime
    }

    /// Who it is, e.g. "Cloudflare".
    public var name: String
    /// The header that gave it away, e.g. "CF-Ray: 8f1c...".
    public var evidence: String
    /// The documented default limit, if it has one that cuts streams.
    public var limit: ProbeTime?
    public var limitKind: LimitKind?
    /// The limit's name in the vendor's documentation.
    public var limitName: String?

    public init(name: String, evidence: String, limit: ProbeTime? = nil, limitKind: LimitKind? = nil,
                limitName: String? = nil) {
        self.name = name
        self.evidence = evidence
        self.limit = limit
        self.limitKind = limitKind
        self.limitName = limitName
    }

    static let second: ProbeTime = 1_000_000_000

    /// The hops in `headers`, each named once, most specific first.
    public static func identify(_ headers: HTTPHeaders) -> [ProbeHop] {
        func value(_ name: String) -> String? { headers.values(name).first }
        func evidence(_ name: String) -> String {
            let v = value(name) ?? ""
            return "\(name): \(v.utf8.count > 60 ? String(decoding: Array(v.utf8.prefix(60)), as: UTF8.self) + "..." : v)"
        }
        let server = (value("Server") ?? "").lowercasedASCII()
        let via = headers.values("Via").joined(separator: ", ").lowercasedASCII()
        var hops: [ProbeHop] = []
        func add(_ hop: ProbeHop) { if !hops.contains(where: { $0.name == hop.name }) { hops.append(hop) } }

        if value("CF-Ray") != nil || server == "cloudflare" {
            add(ProbeHop(name: "Cloudflare", evidence: value("CF-Ray") != nil ? evidence("CF-Ray") : evidence("Server"),
                         limit: 100 * second, limitKind: .idle, limitName: "Proxy Read Timeout"))
        }
        if value("X-Amz-Cf-Id") != nil || via.contains("cloudfront") {
            add(ProbeHop(name: "Amazon CloudFront",
                         evidence: value("X-Amz-Cf-Id") != nil ? evidence("X-Amz-Cf-Id") : evidence("Via"),
                         limit: 30 * second, limitKind: .idle, limitName: "origin response timeout"))
        }
        if server.hasPrefix("awselb") {
            add(ProbeHop(name: "AWS Application Load Balancer", evidence: evidence("Server"),
                         limit: 60 * second, limitKind: .idle, limitName: "connection idle timeout"))
        }
        if value("X-Azure-Ref") != nil {
            add(ProbeHop(name: "Azure Front Door", evidence: evidence("X-Azure-Ref"),
                         limit: 30 * second, limitKind: .idle, limitName: "origin response timeout"))
        }
        if via.contains("google") {
            add(ProbeHop(name: "Google Cloud load balancer", evidence: evidence("Via"),
                         limit: 30 * second, limitKind: .lifetime, limitName: "backend service timeout"))
        }
        if value("X-Fastly-Request-ID") != nil || (value("X-Served-By")?.hasPrefix("cache-") ?? false) {
            add(ProbeHop(name: "Fastly",
                         evidence: value("X-Served-By") != nil ? evidence("X-Served-By") : evidence("X-Fastly-Request-ID"),
                         limit: 10 * second, limitKind: .idle, limitName: "between_bytes_timeout"))
        }
        if via.contains("vegur") || via.contains("heroku-router") || server == "heroku" {
            add(ProbeHop(name: "Heroku router", evidence: via.isEmpty ? evidence("Server") : evidence("Via"),
                         limit: 55 * second, limitKind: .idle, limitName: "55-second rolling window"))
        }
        if server.hasPrefix("envoy") || value("X-Envoy-Upstream-Service-Time") != nil {
            add(ProbeHop(name: "Envoy",
                         evidence: server.hasPrefix("envoy") ? evidence("Server") : evidence("X-Envoy-Upstream-Service-Time"),
                         limit: 15 * second, limitKind: .lifetime, limitName: "route timeout"))
        }
        if (value("X-Varnish") != nil || via.contains("varnish")) && !hops.contains(where: { $0.name == "Fastly" }) {
            add(ProbeHop(name: "Varnish", evidence: value("X-Varnish") != nil ? evidence("X-Varnish") : evidence("Via"),
                         limit: 60 * second, limitKind: .idle, limitName: "between_bytes_timeout"))
        }
        if server.hasPrefix("nginx") || server.hasPrefix("openresty") {
            add(ProbeHop(name: "nginx", evidence: evidence("Server"),
                         limit: 60 * second, limitKind: .idle, limitName: "proxy_read_timeout"))
        }
        if server.hasPrefix("caddy") {
            add(ProbeHop(name: "Caddy", evidence: evidence("Server")))
        }
        if hops.isEmpty && !via.isEmpty {
            add(ProbeHop(name: "a proxy", evidence: evidence("Via")))
        }
        return hops
    }

    /// "Cloudflare (CF-Ray: ...): documented default Proxy Read Timeout 100 s (idle)".
    public var description: String {
        var text = "\(name) (\(evidence))"
        if let limit, let limitKind, let limitName {
            let kind = limitKind == .idle ? "cuts a stream after \(ProbeFormat.roughSeconds(limit)) s without a byte"
                : "ends a response \(ProbeFormat.roughSeconds(limit)) s after it started"
            text += ": by default its \(limitName) \(kind)"
        }
        return text
    }
}
