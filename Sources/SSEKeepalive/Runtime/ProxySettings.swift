/// Everything a worker needs from the config, computed once per (re)load and
/// shared read-only by the connections that started under it.
final class ProxySettings: @unchecked Sendable {
    /// One route, ready to serve.
    final class Route: @unchecked Sendable {
        let config: RouteConfig
        let name: String
        let upstream: ResolvedAddress
        /// nil when the route's heartbeats are off.
        let heartbeat: HeartbeatBytes?
        let heartbeatInterval: TimeSpan?

        init(config: RouteConfig, name: String, upstream: ResolvedAddress) {
            self.config = config
            self.name = name
            self.upstream = upstream
            self.heartbeatInterval = config.heartbeat.interval
            self.heartbeat = config.heartbeat.interval == nil
                ? nil : HeartbeatBytes(comment: config.heartbeat.comment, blankLine: config.heartbeat.blankLine)
        }
    }

    let config: Config
    let router: Router
    /// Hides every configured token parameter in logged URLs (docs/behaviour.md, "Query token").
    let redactor: Redactor
    private let routesByPath: [String: Route]
    let fallback: Route

    /// Every upstream address in use, by spec (what the resolver thread looks up again).
    let upstreams: [SocketAddressSpec: ResolvedAddress]

    /// `known`: addresses already looked up (by the resolver thread); the rest
    /// are resolved now. `onConnectFailure`: told when a connect to a host
    /// name's address fails.
    init(config: Config, known: [SocketAddressSpec: ResolvedAddress] = [:],
         onConnectFailure: (@Sendable () -> Void)? = nil) throws(ResolvedAddress.Failure) {
        self.config = config
        self.router = Router(config: config)
        self.redactor = Redactor(config: config)
        var resolved: [SocketAddressSpec: ResolvedAddress] = [:]
        func address(_ spec: SocketAddressSpec) throws(ResolvedAddress.Failure) -> ResolvedAddress {
            if let known = resolved[spec] ?? known[spec] {
                resolved[spec] = known
                return known
            }
            let address = try ResolvedAddress(spec, onConnectFailure: onConnectFailure)
            resolved[spec] = address
            return address
        }
        var routes: [String: Route] = [:]
        for route in config.routes {
            routes[route.path] = Route(config: route, name: route.name, upstream: try address(router.upstream(for: route)))
        }
        self.routesByPath = routes
        let fallbackConfig = router.fallback
        self.fallback = Route(config: fallbackConfig, name: fallbackConfig.name,
                              upstream: try address(router.upstream(for: fallbackConfig)))
        self.upstreams = resolved
    }

    func route(for path: Substring) -> Route {
        let matched = router.route(for: path)
        return routesByPath[matched.path].flatMap { $0.config == matched ? $0 : nil } ?? fallback
    }
}
