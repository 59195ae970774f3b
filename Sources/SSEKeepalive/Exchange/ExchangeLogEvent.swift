/// Every line the exchange machine logs. The machine picks the level; the
/// runtime builds the text only when that level is enabled, prefixed with
/// the connection's id. Tokens never reach these values: a target is only
/// ever logged through `Redactor` (the access log), paths carry no query.
public enum ExchangeLogEvent: Equatable, Sendable {
    case accepted
    case refused(reason: String)
    case badRequest(HTTPParseError)
    case badRequestBody(HTTPParseError)
    case request(method: String, path: Substring, route: String)
    /// Names (never values) of request fields with `_` that were not forwarded.
    case headerFieldsDropped([String])
    case clientClosed
    case disconnected(Side, SocketEnd)
    case staleUpstreamRetried
    case upstreamUnreachable(SocketAddressSpec, errno: Int32?)
    case upstreamClosedBeforeResponse(SocketAddressSpec, SocketEnd)
    case upstreamClosedMidBody
    case upstreamMalformedHead(SocketAddressSpec, HTTPParseError)
    case upstreamMalformedBody(SocketAddressSpec, HTTPParseError)
    case upstreamTimeout(SocketAddressSpec, phase: UpstreamWait, TimeSpan)
    /// Logged once per route across workers (the runtime keeps the set).
    case compressedEventStream(route: String)
    case heartbeat(route: String)
    case heartbeatDeferred(route: String, idle: TimeSpan)
    case streamEnded(ExchangeEnding)
    case endedForShutdown
    case sharedJoined(route: String, replayed: Int)
    case lastEventIDUnknown(route: String)
    case sharedClientDropped(route: String, queued: Int)
    case diagnosticStream(route: String, seconds: Int)
    case tunnelOpen
    case requestHeadTimeout(TimeSpan)
    case keepAliveIdleClosed
    case slowClient(idle: TimeSpan, pendingBytes: Int)

    public enum UpstreamWait: Equatable, Sendable {
        case connect, response
    }

    /// The text after `conn <id>: `. `describe` turns an errno into words (strerror).
    public func message(peer: String, describe: (Int32) -> String) -> String {
        func cause(_ end: SocketEnd) -> String { end.errno.map(describe) ?? "connection closed" }
        switch self {
        case .accepted: return "accepted from \(peer)"
        case .refused(let reason): return "\(reason); refusing \(peer)"
        case .badRequest(let error): return "bad request from \(peer): \(error)"
        case .badRequestBody(let error): return "bad request body from \(peer): \(error)"
        case .request(let method, let path, let route): return "\(method) \(path) route=\(route)"
        case .headerFieldsDropped(let names):
            return "header fields with '_' not forwarded: \(names.joined(separator: ", "))"
        case .clientClosed: return "client \(peer) closed the connection"
        case .disconnected(let side, let end):
            let who = side == .client ? "client" : "upstream"
            if case .failed = end { return "\(who) socket error: \(cause(end))" }
            return "\(who) disconnected: \(cause(end))"
        case .staleUpstreamRetried:
            return "pooled upstream connection closed before answering; retrying on a new one"
        case .upstreamUnreachable(let address, let code):
            return "cannot reach upstream \(address): \(code.map(describe) ?? "connection failed")"
        case .upstreamClosedBeforeResponse(let address, let end):
            return "upstream \(address) closed before sending a response: \(cause(end))"
        case .upstreamClosedMidBody: return "upstream closed mid-body"
        case .upstreamMalformedHead(let address, let error):
            return "upstream \(address) sent a malformed response: \(error)"
        case .upstreamMalformedBody(let address, let error):
            return "upstream \(address) sent malformed body framing: \(error)"
        case .upstreamTimeout(let address, let phase, let span):
            return "upstream \(address) \(Self.timeoutText(phase, span))"
        case .compressedEventStream(let route):
            return "route \(route): upstream sent a content-encoded event stream; forwarding it without heartbeats"
        case .heartbeat(let route): return "heartbeat on route \(route)"
        case .heartbeatDeferred(let route, let idle):
            return "heartbeat on route \(route) deferred: the stream stands mid-line, \(idle) since its last write"
        case .streamEnded(let reason): return "event stream ended at an event boundary (\(reason.rawValue))"
        case .endedForShutdown: return "event stream ended for shutdown"
        case .sharedJoined(let route, let replayed):
            return "joined the shared stream of route \(route) (\(replayed) events replayed)"
        case .lastEventIDUnknown(let route):
            return "Last-Event-ID is not in the replay buffer of route \(route): live stream only"
        case .sharedClientDropped(let route, let queued):
            return "dropped from the shared stream of route \(route): \(queued) bytes queued for it"
        case .diagnosticStream(let route, let seconds): return "diagnostic stream on route \(route) for \(seconds) s"
        case .tunnelOpen: return "tunnel open"
        case .requestHeadTimeout(let span): return "client \(peer) sent no complete request head in \(span)"
        case .keepAliveIdleClosed: return "idle keep-alive connection closed"
        case .slowClient(let idle, let pending):
            return "client \(peer) read nothing for \(idle) with \(pending) bytes waiting; closing"
        }
    }

    /// Also the body of the 504 page.
    static func timeoutText(_ phase: UpstreamWait, _ span: TimeSpan) -> String {
        switch phase {
        case .connect: return "did not accept the connection within \(span)"
        case .response: return "sent no response within \(span)"
        }
    }
}
