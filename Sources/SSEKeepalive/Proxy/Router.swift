// Picks the route for a request path (docs/configuration.md, "Routes").

/// Routes in file order plus the fallback. Matching is segment-aware prefix
/// matching, case-sensitive, on the normalised path (`RequestTarget`: no
/// query, no dot segments, no repeated slashes, unreserved escapes decoded),
/// the same path `RequestPlan` sends upstream. Allocation-free for a path
/// already in normal form.
public struct Router: Sendable {
    public let routes: [RouteConfig]
    /// Used for paths no route matches: path "/", name "default", the
    /// top-level heartbeat and upstream, no token.
    public var fallback: RouteConfig
    /// The top-level upstream, for routes without their own.
    public let defaultUpstream: SocketAddressSpec

    public init(config: Config) {
        routes = config.routes
        defaultUpstream = config.upstream
        fallback = RouteConfig(path: "/", upstream: nil, heartbeat: config.heartbeat, token: nil,
                               headers: config.headers, isFallback: true)
        fallback.retry = config.retry
        fallback.maxStreamDuration = config.maxStreamDuration
    }

    /// The first route in file order matching the normalised form of `path`
    /// (a raw path, a whole target, or `RequestPlan.routingPath`: normalising
    /// is idempotent), else `fallback`. A path that cannot be normalised gets
    /// the fallback: its request is refused by `RequestPlan` anyway.
    public func route(for path: Substring) -> RouteConfig {
        if RequestTarget.isNormalPath(path) { return firstMatch(path) }
        guard let normalised = RequestTarget.routingPath(path) else { return fallback }
        return firstMatch(normalised[...])
    }

    private func firstMatch(_ path: Substring) -> RouteConfig {
        for r in routes where Self.matches(prefix: r.path, path: path) {
            return r
        }
        return fallback
    }

    /// Where requests on `route` go.
    public func upstream(for route: RouteConfig) -> SocketAddressSpec {
        route.upstream ?? defaultUpstream
    }

    /// `/events` matches `/events`, `/events/`, `/events/a`, not `/eventsx`;
    /// `/events/` matches `/events/…` but not `/events`; `/` matches all.
    public static func matches(prefix: String, path: Substring) -> Bool {
        let p = prefix.utf8, s = path.utf8
        guard s.starts(with: p) else { return false }
        if p.last == UInt8(ascii: "/") { return true }
        let rest = s.dropFirst(p.count)
        return rest.isEmpty || rest.first == UInt8(ascii: "/")
    }
}

extension RouteConfig {
    /// The route's name in logs and metrics: its path, or "default" for the fallback.
    public var name: String { isFallback ? "default" : path }
}
