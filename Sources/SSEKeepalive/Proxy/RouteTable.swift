/// One route, ready to serve: its config and what is derived from it once per (re)load.
public final class Route: Sendable {
    public let config: RouteConfig
    /// The route's name in logs and metrics.
    public let name: String
    /// Where its requests go.
    public let upstream: SocketAddressSpec
    /// nil when the route's heartbeats are off.
    public let heartbeat: HeartbeatBytes?
    public let heartbeatInterval: TimeSpan?

    public init(config: RouteConfig, upstream: SocketAddressSpec) {
        self.config = config
        self.name = config.name
        self.upstream = upstream
        self.heartbeatInterval = config.heartbeat.interval
        self.heartbeat = config.heartbeat.interval == nil
            ? nil : HeartbeatBytes(comment: config.heartbeat.comment, blankLine: config.heartbeat.blankLine)
    }
}

/// Everything a request needs from one loaded config: the routes, the
/// redactor and the limits. Built once per (re)load, shared read-only by the
/// exchanges that started under it.
public final class RouteTable: Sendable {
    public let config: Config
    public let router: Router
    /// Hides every configured token parameter in logged URLs.
    public let redactor: Redactor
    public let fallback: Route
    private let routesByPath: [String: Route]

    public init(config: Config) {
        self.config = config
        self.router = Router(config: config)
        self.redactor = Redactor(config: config)
        var routes: [String: Route] = [:]
        for route in config.routes {
            routes[route.path] = Route(config: route, upstream: router.upstream(for: route))
        }
        self.routesByPath = routes
        self.fallback = Route(config: router.fallback, upstream: router.upstream(for: router.fallback))
    }

    public func route(for path: Substring) -> Route {
        let matched = router.route(for: path)
        return routesByPath[matched.path].flatMap { $0.config == matched ? $0 : nil } ?? fallback
    }

    /// Every upstream a request under this table may go to.
    public var upstreams: Set<SocketAddressSpec> {
        Set(routesByPath.values.map(\.upstream)).union([fallback.upstream])
    }
}
