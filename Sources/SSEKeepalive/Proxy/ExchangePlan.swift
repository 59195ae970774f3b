/// Decisions about one request/response exchange, made from heads alone.
/// The runtime only carries them out.

public struct RequestPlan: Equatable, Sendable {
    /// The head to send upstream.
    public var upstreamHead: RequestHead
    /// How the client sends its body (and how the proxy reads it).
    public var bodyFraming: BodyFraming
    /// Whether the client wants the connection kept open after this exchange.
    public var clientKeepAlive: Bool
    /// The protocol the client asks to switch to (`Upgrade` with `Connection: upgrade`), if any.
    public var upgrade: String?

    /// `token`: the route's query-token settings, if it has them (docs/behaviour.md, "Query token").
    public static func make(_ request: RequestHead, token: TokenSettings? = nil) throws(HTTPParseError) -> RequestPlan {
        let framing = try BodyFraming.request(request)
        let upgrade = upgradeRequested(request)
        var rewritten = request
        if let token {
            do {
                rewritten = try TokenRewrite.apply(to: request, settings: token)
            } catch {
                throw .malformed(error.description)
            }
        }
        let upstream = HeaderPolicy.upstreamRequest(rewritten, target: rewritten.target, bodyFraming: framing, upgrade: upgrade)
        return RequestPlan(upstreamHead: upstream, bodyFraming: framing,
                           clientKeepAlive: wantsKeepAlive(request), upgrade: upgrade)
    }

    static func upgradeRequested(_ request: RequestHead) -> String? {
        guard request.version == .http11, request.headers.tokens("Connection").contains("upgrade"),
              let protocols = request.headers["Upgrade"], !protocols.isEmpty else { return nil }
        return protocols
    }

    static func wantsKeepAlive(_ request: RequestHead) -> Bool {
        let connection = request.headers.tokens("Connection")
        if request.version == .http10 { return connection.contains("keep-alive") }
        return !connection.contains("close")
    }
}

public struct ResponsePlan: Equatable, Sendable {
    public var upstreamFraming: BodyFraming
    /// The framing the client sees: upstream lengths are kept; anything else
    /// becomes chunked for HTTP/1.1 clients and close-delimited for HTTP/1.0.
    public var clientFraming: BodyFraming
    public var isEventStream: Bool
    /// An event stream whose payload is content-coded: forwarded untouched, no heartbeats.
    public var isCompressedEventStream: Bool
    public var heartbeats: Bool
    public var keepAlive: Bool
    public var clientVersion: HTTPVersion
    /// A 101 answer to an upgrade request: both directions become raw byte tunnels.
    public var isTunnel = false
    /// The upstream connection may carry another request once this response is read
    /// to its end (HTTP/1.1 persistence, RFC 9112 section 9.3, and a delimited body).
    public var upstreamReusable = false

    public static func make(
        response: ResponseHead, request: RequestHead, clientKeepAlive: Bool, heartbeatInterval: TimeSpan?,
        upgradeRequested: Bool = false
    ) throws(HTTPParseError) -> ResponsePlan {
        if response.status == 101 {
            guard upgradeRequested else { throw .malformed("101 Switching Protocols without an upgrade request") }
            return ResponsePlan(
                upstreamFraming: .none, clientFraming: .none, isEventStream: false, isCompressedEventStream: false,
                heartbeats: false, keepAlive: false, clientVersion: request.version, isTunnel: true)
        }
        let upstreamFraming = try BodyFraming.response(response, requestMethod: request.method)
        let hasBody = upstreamFraming != .none && upstreamFraming != .contentLength(0)
        let isEventStream = hasBody && HeaderPolicy.isEventStream(contentType: response.headers["Content-Type"])
        let compressed = isEventStream && HeaderPolicy.isContentEncoded(response.headers)

        let clientFraming: BodyFraming
        switch upstreamFraming {
        case .none:
            clientFraming = .none
        case .contentLength where !isEventStream:
            clientFraming = upstreamFraming
        case .contentLength, .chunked, .closeDelimited:
            clientFraming = request.version == .http10 ? .closeDelimited : .chunked
        }
        return ResponsePlan(
            upstreamFraming: upstreamFraming,
            clientFraming: clientFraming,
            isEventStream: isEventStream,
            isCompressedEventStream: compressed,
            heartbeats: isEventStream && !compressed && heartbeatInterval != nil,
            keepAlive: clientKeepAlive && clientFraming != .closeDelimited,
            clientVersion: request.version,
            upstreamReusable: upstreamFraming != .closeDelimited && persists(response)
        )
    }

    static func persists(_ response: ResponseHead) -> Bool {
        let connection = response.headers.tokens("Connection")
        if response.version == .http10 { return connection.contains("keep-alive") }
        return !connection.contains("close")
    }
}
