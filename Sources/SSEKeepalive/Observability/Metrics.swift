/// Proxy metrics (docs/metrics.md) as a plain value.
///
/// Each worker thread owns one `MetricsSnapshot` as its live counters and
/// bumps plain fields on its own thread: no atomics, no locks on the hot path.
/// At scrape time the admin side takes a copy from every worker, sums them
/// with `add`, and renders the Prometheus text exposition format 0.0.4.
///
/// Route keys are route names from the config (`Route.name`: the route's
/// path, or "default" for the fallback). Never use a request path, a client
/// address or a token as a key: every distinct key is a time series forever.

public enum UpstreamErrorKind: String, CaseIterable, Sendable {
    case connect, timeout, reset, malformed
}

/// How a client went away mid-exchange.
public enum ClientDisconnectKind: String, CaseIterable, Sendable {
    /// ECONNRESET or EPIPE.
    case reset
    /// A clean close in the middle of an exchange.
    case eof
    /// A slow or idle client cut by a timeout.
    case timeout
}

public struct RouteCode: Hashable, Sendable {
    public var route: String
    public var code: Int
    public init(route: String, code: Int) {
        self.route = route
        self.code = code
    }
}

public struct RouteUpstreamError: Hashable, Sendable {
    public var route: String
    public var kind: UpstreamErrorKind
    public init(route: String, kind: UpstreamErrorKind) {
        self.route = route
        self.kind = kind
    }
}

/// An event stream ended by the proxy, by route and reason.
public struct RouteEnding: Hashable, Sendable {
    public var route: String
    public var reason: String
    public init(route: String, reason: String) {
        self.route = route
        self.reason = reason
    }
}

public struct MetricsSnapshot: Equatable, Sendable {
    /// route -> open event streams (gauge; +1 on open, -1 on close). A route
    /// keeps its key at 0, so it is still exported once it has been seen.
    public var streamsOpen: [String: Int] = [:]
    /// route -> heartbeat comments written.
    public var heartbeats: [String: Int] = [:]
    /// route -> heartbeats that were due while the stream stood mid-line or after a CR.
    public var heartbeatsDeferred: [String: Int] = [:]
    /// Event streams the proxy ended (shutdown, max_duration), by route and reason.
    public var streamsEnded: [RouteEnding: Int] = [:]
    /// Payload plus framing bytes written to clients.
    public var bytesUpstreamToClient: Int = 0
    /// Payload plus framing bytes written to upstreams.
    public var bytesClientToUpstream: Int = 0
    /// Finished requests by route and status code.
    public var requests: [RouteCode: Int] = [:]
    public var upstreamErrors: [RouteUpstreamError: Int] = [:]
    public var clientDisconnects: [ClientDisconnectKind: Int] = [:]
    /// route -> request header fields not forwarded because their name has `_`.
    public var requestHeadersDropped: [String: Int] = [:]
    /// route -> upstream streams shared by clients (gauge).
    public var sharedUpstreams: [String: Int] = [:]
    /// route -> clients on shared streams (gauge; they are open event streams too).
    public var sharedClients: [String: Int] = [:]
    /// route -> events sent from a shared stream's replay buffer.
    public var replayedEvents: [String: Int] = [:]
    /// route -> shared-stream clients dropped for falling `limits.stream_buffer` behind.
    public var sharedClientsDropped: [String: Int] = [:]
    /// Client connections open now (gauge).
    public var connectionsOpen: Int = 0
    public var connectionsAccepted: Int = 0
    /// Accepted connections by worker index, to show how the kernel spreads them.
    public var acceptedByWorker: [Int: Int] = [:]

    public init() {}

    // MARK: Hot-path helpers (plain field and dictionary increments)

    /// Also starts the route's heartbeat series at 0, so a route with heartbeats off still shows one.
    @inline(__always) public mutating func streamOpened(route: String) {
        streamsOpen[route, default: 0] += 1
        heartbeats[route, default: 0] += 0
        heartbeatsDeferred[route, default: 0] += 0
    }
    @inline(__always) public mutating func streamClosed(route: String) { streamsOpen[route, default: 0] -= 1 }
    @inline(__always) public mutating func heartbeatWritten(route: String) { heartbeats[route, default: 0] += 1 }
    @inline(__always) public mutating func requestFinished(route: String, code: Int) {
        requests[RouteCode(route: route, code: code), default: 0] += 1
    }
    @inline(__always) public mutating func upstreamError(route: String, kind: UpstreamErrorKind) {
        upstreamErrors[RouteUpstreamError(route: route, kind: kind), default: 0] += 1
    }
    @inline(__always) public mutating func clientDisconnected(_ kind: ClientDisconnectKind) {
        clientDisconnects[kind, default: 0] += 1
    }
    /// `count`: `RequestPlan.droppedHeaderNames.count` of a request on `route`.
    @inline(__always) public mutating func requestHeadersDropped(route: String, count: Int) {
        requestHeadersDropped[route, default: 0] += count
    }

    // MARK: Summing

    /// Adds every counter and gauge of `other` (keys seen in either survive,
    /// also with a 0 value).
    public mutating func add(_ other: MetricsSnapshot) {
        for (k, v) in other.streamsOpen { streamsOpen[k, default: 0] += v }
        for (k, v) in other.heartbeats { heartbeats[k, default: 0] += v }
        for (k, v) in other.heartbeatsDeferred { heartbeatsDeferred[k, default: 0] += v }
        for (k, v) in other.streamsEnded { streamsEnded[k, default: 0] += v }
        bytesUpstreamToClient += other.bytesUpstreamToClient
        bytesClientToUpstream += other.bytesClientToUpstream
        for (k, v) in other.requests { requests[k, default: 0] += v }
        for (k, v) in other.upstreamErrors { upstreamErrors[k, default: 0] += v }
        for (k, v) in other.clientDisconnects { clientDisconnects[k, default: 0] += v }
        for (k, v) in other.requestHeadersDropped { requestHeadersDropped[k, default: 0] += v }
        for (k, v) in other.sharedUpstreams { sharedUpstreams[k, default: 0] += v }
        for (k, v) in other.sharedClients { sharedClients[k, default: 0] += v }
        for (k, v) in other.replayedEvents { replayedEvents[k, default: 0] += v }
        for (k, v) in other.sharedClientsDropped { sharedClientsDropped[k, default: 0] += v }
        connectionsOpen += other.connectionsOpen
        connectionsAccepted += other.connectionsAccepted
        for (k, v) in other.acceptedByWorker { acceptedByWorker[k, default: 0] += v }
    }

    // MARK: Exposition

    /// Prometheus text exposition format 0.0.4: every family once, `# HELP`
    /// and `# TYPE` first (also for a family with no samples yet), samples
    /// sorted by label values. Ends with a newline.
    public func prometheusText(workers: Int, draining: Bool) -> String {
        var out = PrometheusWriter()

        out.family("sse_keepalive_streams_open", .gauge, "Event streams currently open, by route.")
        for (route, v) in streamsOpen.sorted(by: { $0.key < $1.key }) {
            out.sample("sse_keepalive_streams_open", [("route", route)], v)
        }

        out.family("sse_keepalive_heartbeats_total", .counter, "Heartbeat comments written to clients, by route.")
        for (route, v) in heartbeats.sorted(by: { $0.key < $1.key }) {
            out.sample("sse_keepalive_heartbeats_total", [("route", route)], v)
        }

        out.family("sse_keepalive_heartbeats_deferred_total", .counter,
                   "Heartbeats that were due while the stream stood mid-line or after a CR (sent at the next safe point), by route.")
        for (route, v) in heartbeatsDeferred.sorted(by: { $0.key < $1.key }) {
            out.sample("sse_keepalive_heartbeats_deferred_total", [("route", route)], v)
        }

        out.family("sse_keepalive_streams_ended_total", .counter,
                   "Event streams the proxy ended at an event boundary, by route and reason (shutdown, max_duration).")
        let endedRows = streamsEnded.sorted { a, b in
            a.key.route != b.key.route ? a.key.route < b.key.route : a.key.reason < b.key.reason
        }
        for (key, v) in endedRows {
            out.sample("sse_keepalive_streams_ended_total", [("route", key.route), ("reason", key.reason)], v)
        }

        out.family("sse_keepalive_bytes_forwarded_total", .counter,
                   "Bytes written by the proxy (payload and framing), by direction.")
        out.sample("sse_keepalive_bytes_forwarded_total", [("direction", "client_to_upstream")], bytesClientToUpstream)
        out.sample("sse_keepalive_bytes_forwarded_total", [("direction", "upstream_to_client")], bytesUpstreamToClient)

        out.family("sse_keepalive_requests_total", .counter, "Finished requests, by route and response status code.")
        let requestRows = requests.sorted { a, b in
            a.key.route != b.key.route ? a.key.route < b.key.route : a.key.code < b.key.code
        }
        for (key, v) in requestRows {
            out.sample("sse_keepalive_requests_total", [("route", key.route), ("code", String(key.code))], v)
        }

        out.family("sse_keepalive_upstream_errors_total", .counter,
                   "Upstream failures, by route and kind (connect, timeout, reset, malformed).")
        let errorRows = upstreamErrors.sorted { a, b in
            a.key.route != b.key.route ? a.key.route < b.key.route : a.key.kind.rawValue < b.key.kind.rawValue
        }
        for (key, v) in errorRows {
            out.sample("sse_keepalive_upstream_errors_total", [("route", key.route), ("kind", key.kind.rawValue)], v)
        }

        out.family("sse_keepalive_client_disconnects_total", .counter,
                   "Clients gone mid-exchange, by kind (reset, eof, timeout).")
        for kind in ClientDisconnectKind.allCases.sorted(by: { $0.rawValue < $1.rawValue }) {
            out.sample("sse_keepalive_client_disconnects_total", [("kind", kind.rawValue)], clientDisconnects[kind] ?? 0)
        }

        out.family("sse_keepalive_request_headers_dropped_total", .counter,
                   "Request header fields not forwarded because their name contains an underscore, by route.")
        for (route, v) in requestHeadersDropped.sorted(by: { $0.key < $1.key }) {
            out.sample("sse_keepalive_request_headers_dropped_total", [("route", route)], v)
        }

        // A route with sharing shows all four once its first stream opened.
        let sharedRoutes = Set(sharedUpstreams.keys).union(sharedClients.keys).sorted()
        let sharedFamilies: [(String, PrometheusWriter.MetricType, String, [String: Int])] = [
            ("sse_keepalive_shared_upstreams", .gauge, "Upstream event streams shared by clients, by route.", sharedUpstreams),
            ("sse_keepalive_shared_clients", .gauge, "Clients on shared event streams, by route.", sharedClients),
            ("sse_keepalive_replayed_events_total", .counter,
             "Events sent to joining clients from a shared stream's replay buffer, by route.", replayedEvents),
            ("sse_keepalive_shared_clients_dropped_total", .counter,
             "Shared-stream clients dropped for falling limits.stream_buffer behind, by route.", sharedClientsDropped),
        ]
        for (name, kind, help, values) in sharedFamilies {
            out.family(name, kind, help)
            for route in sharedRoutes { out.sample(name, [("route", route)], values[route] ?? 0) }
        }

        out.family("sse_keepalive_connections_open", .gauge, "Client connections currently open.")
        out.sample("sse_keepalive_connections_open", [], connectionsOpen)

        out.family("sse_keepalive_connections_accepted_total", .counter, "Client connections accepted.")
        out.sample("sse_keepalive_connections_accepted_total", [], connectionsAccepted)

        out.family("sse_keepalive_worker_connections_accepted_total", .counter, "Client connections accepted, by worker.")
        for (worker, v) in acceptedByWorker.sorted(by: { $0.key < $1.key }) {
            out.sample("sse_keepalive_worker_connections_accepted_total", [("worker", String(worker))], v)
        }

        out.family("sse_keepalive_workers", .gauge, "Event-loop worker threads.")
        out.sample("sse_keepalive_workers", [], workers)

        out.family("sse_keepalive_draining", .gauge, "1 while shutting down (no longer accepting), else 0.")
        out.sample("sse_keepalive_draining", [], draining ? 1 : 0)

        return out.text
    }
}

/// Builds exposition text (format 0.0.4).
struct PrometheusWriter {
    enum MetricType: String { case counter, gauge }

    private(set) var text = ""

    init() { text.reserveCapacity(2048) }

    mutating func family(_ name: String, _ type: MetricType, _ help: String) {
        text += "# HELP \(name) \(TextEscape.prometheusHelp(help))\n# TYPE \(name) \(type.rawValue)\n"
    }

    mutating func sample(_ name: String, _ labels: [(String, String)], _ value: Int) {
        text += name
        if !labels.isEmpty {
            text += "{"
            for (i, (label, value)) in labels.enumerated() {
                if i > 0 { text += "," }
                text += label
                text += "=\""
                text += TextEscape.prometheusLabel(value)
                text += "\""
            }
            text += "}"
        }
        text += " "
        text += String(value)
        text += "\n"
    }
}
