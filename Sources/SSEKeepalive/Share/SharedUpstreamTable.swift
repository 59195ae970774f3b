/// The settings of the proxy's own exchange with a shared upstream stream:
/// the route's, minus what belongs to each client (its `retry:` hint, its
/// first comment, its end time, its access-log line) and minus sharing itself.
enum SharedUpstreamTable {
    static func make(from table: RouteTable) -> RouteTable {
        var config = table.config
        config.accessLog = false
        config.routes = config.routes.map { route in
            var own = route
            own.share = nil
            own.retry = nil
            own.maxStreamDuration = nil
            own.heartbeat.onOpen = false
            return own
        }
        return RouteTable(config: config)
    }
}

extension ExchangeMetric {
    /// What the proxy's own exchange with a shared upstream adds to the metrics:
    /// upstream errors, not the client-side counts (its clients count those, heartbeats included).
    var countsForSharedUpstream: Bool {
        switch self {
        case .upstreamError, .heartbeatDeferred, .requestHeadersDropped: return true
        default: return false
        }
    }
}
