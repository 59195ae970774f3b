#if canImport(Glibc)
import Glibc
#endif

/// State of one request/response in flight on a connection, and what its
/// access-log line and metrics will say when it ends.
final class Exchange {
    // Fields are grouped by size: one Exchange lives as long as its stream,
    // so its layout is part of memory per open stream.

    /// Swapped on reload (new heartbeat); `startRoute` stays the one the exchange started under.
    var route: ProxySettings.Route
    /// Labels metrics and the access log for the exchange's whole life.
    let startRoute: ProxySettings.Route
    /// The request line only: header fields are not kept once the upstream head is built.
    let method: String
    let target: String
    let startedAt = Exchange.monotonicMilliseconds()
    var bytesSent = 0

    /// The upstream head, kept while a reused upstream connection may still turn out stale.
    var retryHead: [UInt8]?
    var requestBody: BodyDecoder
    var responseBody = BodyDecoder(.none)
    var response: ResponsePlan?
    /// The leading-BOM rule (SPEC 1.3).
    var bomGate = LeadingBOMGate()

    /// For the access log.
    var status: Int32 = 0
    var heartbeats: Int32 = 0

    let isHTTP10: Bool
    let requestChunked: Bool
    let clientKeepAlive: Bool
    let upgradeRequested: Bool
    /// A request the proxy may send twice: no body, and a method that is idempotent.
    let retryable: Bool
    var requestComplete = false
    var upstreamConnected = false
    /// The upstream connection came from the pool.
    var reusedUpstream = false
    /// Where the event stream stands in the SSE grammar (event streams only).
    var cursor = SSECursor()
    /// Tunnel halves that have seen EOF.
    var clientSentEOF = false
    var upstreamSentEOF = false

    init(route: ProxySettings.Route, request: RequestHead, requestPlan: RequestPlan) {
        self.route = route
        self.startRoute = route
        self.method = request.method
        self.target = request.target
        self.isHTTP10 = request.version == .http10
        self.requestChunked = requestPlan.bodyFraming == .chunked
        self.clientKeepAlive = requestPlan.clientKeepAlive
        self.upgradeRequested = requestPlan.upgrade != nil
        self.requestBody = BodyDecoder(requestPlan.bodyFraming)
        self.retryable = requestPlan.bodyFraming == .none && ["GET", "HEAD", "OPTIONS"].contains(request.method)
    }

    var routeName: String { startRoute.name }

    /// The request line as a head without fields (what response planning needs).
    var requestLine: RequestHead {
        RequestHead(method: method, target: target, version: isHTTP10 ? .http10 : .http11, headers: HTTPHeaders())
    }

    var isEventStream: Bool { response?.isEventStream == true }

    var elapsedMilliseconds: Int { Exchange.monotonicMilliseconds() - startedAt }

    static func monotonicMilliseconds() -> Int {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return now.tv_sec * 1000 + now.tv_nsec / 1_000_000
    }
}
