// The boundary between the exchange machine (decisions) and the runtime
// (sockets, buffers, timers). The machine looks at the bytes that arrived
// through `ExchangeIO`'s read-only queries and tells the runtime what to do
// with `ExchangeAction` values. It never copies payload: it says "move n
// bytes", and the runtime splices buffers.

/// The two peers of a client connection.
public enum Side: Equatable, Sendable {
    case client, upstream

    public var other: Side { self == .client ? .upstream : .client }
}

/// How a socket's input ended, as the runtime saw it.
public enum SocketEnd: Equatable, Sendable {
    /// A clean EOF.
    case eof
    /// ECONNRESET, EPIPE or ECONNABORTED: the peer went away (logged at debug only).
    case vanished(errno: Int32)
    /// Any other socket error (logged as a warning).
    case failed(errno: Int32)

    public var errno: Int32? {
        switch self {
        case .eof: return nil
        case .vanished(let code), .failed(let code): return code
        }
    }
}

/// What asking for an upstream connection gave.
public enum UpstreamOpening: Equatable, Sendable {
    /// An idle pooled connection, ready at once.
    case pooled
    /// A new connection; `upstreamConnected` or `upstreamClosed` follows.
    case connecting
    /// The connect failed at once.
    case failed(errno: Int32)
}

/// The runtime, as the machine sees it. Implemented by `Connection` (libevent)
/// and by the test and fuzz harness (byte arrays). Class-bound and used as a
/// generic parameter, so every call is direct: nothing is boxed per event.
public protocol ExchangeIO: AnyObject {
    /// Bytes received from `side` and not consumed yet.
    func inputCount(_ side: Side) -> Int
    /// A contiguous view of the first `min(limit, inputCount(side))` input bytes.
    func withInputPrefix<R>(_ side: Side, limit: Int, _ body: (UnsafeRawBufferPointer) -> R) -> R
    /// The first contiguous stretch of `side`'s input (any non-empty prefix when there is input).
    func withFirstInputExtent<R>(_ side: Side, _ body: (UnsafeRawBufferPointer) -> R) -> R
    /// The last `min(3, end)` input bytes before offset `end`: all the SSE cursor needs of a segment.
    func inputTail(_ side: Side, endingAt end: Int) -> InputTail
    /// Bytes queued for `side` and not yet taken by its socket.
    func outputCount(_ side: Side) -> Int
    /// Bytes on their way to the client: queued here plus the kernel's unsent queue.
    func clientPendingBytes() -> Int
    /// A monotonic clock, in milliseconds.
    func now() -> Int
    /// An errno in words (strerror), for logs and error pages.
    func describe(errno: Int32) -> String
    /// A uniform random number in 0..<n (n > 0): spreads retry hints and stream end times.
    func random(below n: Int) -> Int
    /// Connects to `address`, or takes an idle pooled connection to it when `pooled`.
    func openUpstream(_ address: SocketAddressSpec, pooled: Bool) -> UpstreamOpening
    /// Carries out one action, at once.
    func perform(_ action: ExchangeAction)
    /// Asks the worker's limiter for a diagnostic stream (`diagnostic: true`
    /// routes); `.start` holds a slot until `diagnosticEnded`.
    func diagnosticAdmit() -> DiagnosticLimiter.Decision
    func diagnosticEnded()
}

extension ExchangeIO {
    /// Harnesses that do not limit diagnostic streams.
    public func diagnosticAdmit() -> DiagnosticLimiter.Decision { .start }
    public func diagnosticEnded() {}
}

/// Up to 3 bytes, inline.
public struct InputTail: Sendable {
    public var bytes: (UInt8, UInt8, UInt8) = (0, 0, 0)
    public var count = 0

    public init() {}

    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        withUnsafeBytes(of: bytes) { body(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
    }
}

/// One thing for the runtime to do. Cases carry counts, static byte arrays
/// and small values only: producing one allocates nothing on the per-event path.
public enum ExchangeAction: Equatable, Sendable {
    /// Append bytes the proxy made (heads, heartbeats, framing, error pages) to `side`'s output.
    case write(Side, [UInt8])
    /// Append the chunk-size line for a chunk of `count` bytes to `side`'s output.
    case writeChunkHeader(Side, count: Int)
    /// Move `count` bytes from the front of `from`'s input to the other side's output (no copy).
    case splice(from: Side, count: Int)
    /// Drop `count` bytes from the front of `side`'s input.
    case discard(Side, count: Int)
    case setReading(Side, Bool)
    /// Report `drained` once `side`'s output falls to this many bytes or fewer.
    case setLowWatermark(Side, Int)
    /// Write what `side`'s output holds, as far as the socket takes it now.
    case flush(Side)
    /// Half-close: `side` reads EOF after what was written.
    case shutdownWrite(Side)
    /// Give the upstream connection back to the pool of its address, or (nil) close it.
    case releaseUpstream(pool: SocketAddressSpec?)
    /// The connect in progress took longer than `timeouts.connect`: that address
    /// is failing (a host name's next lookup and address choice take note).
    case upstreamConnectTimedOut
    /// Start (or restart) the connection's one timer. `common`: a span many
    /// connections share (a configured interval or timeout), re-armed in O(1).
    case armTimer(TimeSpan, common: Bool)
    case disarmTimer
    case log(LogLevelName, ExchangeLogEvent)
    case count(ExchangeMetric)
    /// Join the shared stream of the join's key (opening it when there is none); the
    /// runtime answers with `sharedStreamOpened`, then pieces, or `sharedStreamAnswered`.
    indirect case joinSharedStream(SharedJoin)
    /// Leave the shared stream joined (or waited for); nothing more is delivered.
    case leaveSharedStream
    /// The access-log line of a finished exchange (the runtime adds the client's address).
    case accessLog(AccessLogEntry)
    /// Free everything the connection holds; nothing follows.
    case close
}

/// How an exchange ended, for the access log's `end=`.
public enum ExchangeEnding: String, Equatable, Sendable, CaseIterable {
    /// The response was sent completely.
    case complete
    /// The client went away first.
    case clientClosed = "client_closed"
    /// The upstream closed (or reset) an unfinished response.
    case upstreamClosed = "upstream_closed"
    /// A proxy-side or socket error ended it (including error pages).
    case error
    /// A timeout ended it (connect, response head, idle slow client).
    case timeout
    /// An event stream ended for a shutdown (at an event boundary, or cut when the grace was over).
    case shutdown
    /// An event stream ended at an event boundary after `max_stream_duration`.
    case maxDuration = "max_duration"
    /// A client of a shared stream fell `limits.stream_buffer` behind and was dropped.
    case fellBehind = "fell_behind"
}

/// Counter and gauge changes; the runtime adds them to its worker's metrics.
public enum ExchangeMetric: Equatable, Sendable {
    case streamOpened(route: String)
    case streamClosed(route: String)
    case heartbeat(route: String)
    /// A heartbeat was due while the stream stood mid-line or after a CR.
    case heartbeatDeferred(route: String)
    /// An event stream ended for `reason` (shutdown, max duration).
    case streamEnded(route: String, reason: ExchangeEnding)
    case requestFinished(route: String, code: Int)
    case upstreamError(route: String, kind: UpstreamErrorKind)
    case clientDisconnected(ClientDisconnectKind)
    /// Request header fields not forwarded because their name has `_`.
    case requestHeadersDropped(route: String, count: Int)
    /// A client joined (+1) or left (-1) a shared stream.
    case sharedClients(route: String, delta: Int)
    /// An upstream shared stream opened (+1) or closed (-1).
    case sharedUpstreams(route: String, delta: Int)
    case eventsReplayed(route: String, count: Int)
    case sharedClientDropped(route: String)

    public func apply(to metrics: inout MetricsSnapshot) {
        switch self {
        case .streamOpened(let route): metrics.streamOpened(route: route)
        case .streamClosed(let route): metrics.streamClosed(route: route)
        case .heartbeat(let route): metrics.heartbeatWritten(route: route)
        case .heartbeatDeferred(let route): metrics.heartbeatsDeferred[route, default: 0] += 1
        case .streamEnded(let route, let reason): metrics.streamsEnded[RouteEnding(route: route, reason: reason.rawValue), default: 0] += 1
        case .requestFinished(let route, let code): metrics.requestFinished(route: route, code: code)
        case .upstreamError(let route, let kind): metrics.upstreamError(route: route, kind: kind)
        case .clientDisconnected(let kind): metrics.clientDisconnected(kind)
        case .requestHeadersDropped(let route, let count): metrics.requestHeadersDropped(route: route, count: count)
        case .sharedClients(let route, let delta): metrics.sharedClients[route, default: 0] += delta
        case .sharedUpstreams(let route, let delta): metrics.sharedUpstreams[route, default: 0] += delta
        case .eventsReplayed(let route, let count): metrics.replayedEvents[route, default: 0] += count
        case .sharedClientDropped(let route): metrics.sharedClientsDropped[route, default: 0] += 1
        }
    }
}
