/// One request/response in flight on a connection: what the machine knows
/// about it and what its access-log line and metrics will say when it ends.
/// A class so the machine mutates it in place on the per-event path; it lives
/// as long as its stream, so its layout is part of memory per open stream.
public final class Exchange {
    /// The settings the request started under (redaction, access log).
    let table: RouteTable
    /// Swapped on reload (new heartbeat); `startRoute` stays the one the exchange started under.
    var route: Route
    /// Labels metrics and the access log, and names the upstream, for the exchange's whole life.
    let startRoute: Route
    /// The request line only: header fields are not kept once the upstream head is built.
    let method: String
    let target: String
    let startedAt: Int
    var bytesSent = 0

    var request: RequestProgress
    var link = UpstreamLink.none
    var response = ResponseProgress.awaitingHead

    /// For the access log.
    var status: Int32 = 0
    var heartbeats: Int32 = 0

    let isHTTP10: Bool
    let clientKeepAlive: Bool
    let upgradeRequested: Bool
    /// A request the proxy may send twice: no body, and an idempotent method.
    let retryable: Bool

    init(table: RouteTable, route: Route, request: RequestHead, plan: RequestPlan, startedAt: Int) {
        self.table = table
        self.route = route
        self.startRoute = route
        self.method = request.method
        self.target = request.target
        self.startedAt = startedAt
        self.isHTTP10 = request.version == .http10
        self.clientKeepAlive = plan.clientKeepAlive
        self.upgradeRequested = plan.upgrade != nil
        self.retryable = plan.bodyFraming == .none && ["GET", "HEAD", "OPTIONS"].contains(request.method)
        // Even an empty body goes through the decoder: its end starts the response clock.
        self.request = .sendingBody(BodyDecoder(plan.bodyFraming), chunked: plan.bodyFraming == .chunked)
    }

    var routeName: String { startRoute.name }

    /// The request line as a head without fields (what response planning needs).
    var requestLine: RequestHead {
        RequestHead(method: method, target: target, version: isHTTP10 ? .http10 : .http11, headers: HTTPHeaders())
    }

    var isEventStream: Bool {
        if case .streaming(let stream) = response { return stream.isEventStream }
        return false
    }
}

/// The request half: its body goes upstream while the response may already come back.
enum RequestProgress {
    /// Body bytes still to forward, re-framed as chunked when the client sent chunks.
    case sendingBody(BodyDecoder, chunked: Bool)
    case complete

    var isComplete: Bool {
        if case .complete = self { return true }
        return false
    }
}

/// The upstream connection of an exchange.
enum UpstreamLink {
    case none
    case connecting
    /// `retryHead`: kept while a reused pooled connection may still turn out stale.
    case connected(reused: Bool, retryHead: [UInt8]?)

    var isAttached: Bool {
        if case .none = self { return false }
        return true
    }

    var isConnected: Bool {
        if case .connected = self { return true }
        return false
    }
}

/// The response half.
enum ResponseProgress {
    case awaitingHead
    /// The head went out; the body is being forwarded.
    case streaming(ResponseStream)
}

/// A response whose head went to the client: its framing, and for event
/// streams where the SSE grammar stands and when the proxy last wrote.
struct ResponseStream {
    // What the response plan decided, in 5 bytes (the plan is 50, and an open
    // stream keeps this for its whole life).
    /// Chunked to the client (else close-delimited, a length, or no body).
    let chunked: Bool
    let isEventStream: Bool
    /// An event stream whose payload is content-coded: forwarded untouched.
    let isCompressed: Bool
    let keepAlive: Bool
    let upstreamReusable: Bool
    var body: BodyDecoder
    /// Where the event stream stands (tracked for every uncompressed event stream,
    /// so a reload that turns heartbeats on finds it right).
    var cursor = SSECursor()
    /// The leading-BOM rule.
    var bomGate = LeadingBOMGate()
    /// Heartbeats on for this response (the route's interval may change on reload).
    var heartbeats: Bool
    /// The idle clock: when the proxy last wrote to this stream (monotonic ms).
    var lastWriteAt: Int
    /// What goes out right after the head (`retry:` hint, first comment) has been decided.
    var opened = false
    /// When the stream is to end (monotonic ms), and why: it ends at the first event boundary after.
    var endAt: Int?
    var endReason: ExchangeEnding?
    /// `endAt` has come; the stream waits for an event boundary.
    var endPassed = false

    init(plan: ResponsePlan, lastWriteAt: Int) {
        self.chunked = plan.clientFraming == .chunked
        self.isEventStream = plan.isEventStream
        self.isCompressed = plan.isCompressedEventStream
        self.keepAlive = plan.keepAlive
        self.upstreamReusable = plan.upstreamReusable
        self.body = BodyDecoder(plan.upstreamFraming)
        self.heartbeats = plan.heartbeats
        self.lastWriteAt = lastWriteAt
    }

    /// An uncompressed event stream: the cursor follows it.
    var tracksEvents: Bool { isEventStream && !isCompressed }

    /// Nothing of an event is pending: ending the stream here loses nothing.
    var atEventBoundary: Bool { cursor.position == .eventBoundary && bomGate.held.isEmpty }

    /// The earlier end time wins.
    mutating func scheduleEnd(at time: Int, reason: ExchangeEnding) {
        if let endAt, endAt <= time { return }
        endAt = time
        endReason = reason
    }
}
