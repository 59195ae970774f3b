#if canImport(Glibc)
import Glibc
#endif

/// State of one request/response in flight on a connection, and what its
/// access-log line and metrics will say when it ends.
final class Exchange {
    /// Swapped on reload (new heartbeat); `routeName` stays the one the exchange started under.
    var route: ProxySettings.Route
    /// Label for metrics and the access log, fixed for the exchange's life.
    let routeName: String
    /// The request line only: its header fields are not kept once the upstream head is built
    /// (memory per open stream is a product figure).
    let request: RequestHead
    let requestFraming: BodyFraming
    let clientKeepAlive: Bool
    let upgradeRequested: Bool
    let startedAt = Exchange.monotonicMilliseconds()

    var requestBody: BodyDecoder
    var requestComplete = false
    var upstreamConnected = false

    var response: ResponsePlan?
    var responseBody = BodyDecoder(.none)
    /// Where the event stream stands in the SSE grammar (event streams only).
    var cursor = SSECursor()
    /// A heartbeat went out before the first payload byte: a leading BOM must go (SPEC 1.3).
    var checkLeadingBOM = false
    var heldBOMBytes: [UInt8] = []
    var sentPayload = false

    /// Tunnel halves that have seen EOF.
    var clientSentEOF = false
    var upstreamSentEOF = false

    /// For the access log.
    var status = 0
    var bytesSent = 0
    var heartbeats = 0

    init(route: ProxySettings.Route, request: RequestHead, requestPlan: RequestPlan) {
        self.route = route
        self.routeName = route.name
        self.request = RequestHead(method: request.method, target: request.target, version: request.version, headers: HTTPHeaders())
        self.requestFraming = requestPlan.bodyFraming
        self.clientKeepAlive = requestPlan.clientKeepAlive
        self.upgradeRequested = requestPlan.upgrade != nil
        self.requestBody = BodyDecoder(requestPlan.bodyFraming)
    }

    var isEventStream: Bool { response?.isEventStream == true }

    var elapsedMilliseconds: Int { Exchange.monotonicMilliseconds() - startedAt }

    static func monotonicMilliseconds() -> Int {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return now.tv_sec * 1000 + now.tv_nsec / 1_000_000
    }
}
