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
    /// The normalised path: the route is picked on it, and it is the path sent upstream.
    public var routingPath: String
    /// Names of request fields not forwarded because they contain `_` (for a debug log and a metric).
    public var droppedHeaderNames: [String] = []

    /// Methods the proxy answers itself instead of forwarding: a reverse proxy
    /// does not open tunnels to arbitrary hosts.
    public static let refusedMethods: Set<String> = ["CONNECT"]
    /// The `Allow` of that answer: the standard methods, which the proxy forwards.
    public static let allowedMethods = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

    /// The answer the proxy gives itself, before routing, to a request it
    /// never forwards (`405` with `Allow`); nil for every other request.
    public static func answeredByProxy(_ request: RequestHead) -> ProxyAnswer? {
        guard refusedMethods.contains(request.method) else { return nil }
        return ProxyAnswer(status: 405, message: "\(request.method) is not supported by this proxy",
                           headers: [ProxyAnswer.Field(name: "Allow", value: allowedMethods)])
    }

    /// The plan for a request on `route`: its token and header settings.
    /// `target`: the request's target as the caller already parsed it (parsed here when nil).
    public static func make(
        _ request: RequestHead, route: RouteConfig, target: Result<RequestTarget, RequestTargetError>? = nil
    ) throws(HTTPParseError) -> RequestPlan {
        try make(request, token: route.token, allowUnderscoreHeaders: route.headers.allowUnderscores, target: target)
    }

    /// `token`: the route's query-token settings, if it has them (docs/behaviour.md, "Query token").
    /// `allowUnderscoreHeaders`: forward field names containing `_` (dropped by
    /// default: CGI-style servers read `X_Foo` and `X-Foo` as the same variable).
    public static func make(
        _ request: RequestHead, token: TokenSettings? = nil, allowUnderscoreHeaders: Bool = false,
        target parsed: Result<RequestTarget, RequestTargetError>? = nil
    ) throws(HTTPParseError) -> RequestPlan {
        if refusedMethods.contains(request.method) {
            throw .malformed("\(request.method) is not supported by this proxy")
        }
        let target: RequestTarget
        switch parsed ?? RequestTarget.parse(request) {
        case .success(let parsedTarget): target = parsedTarget
        case .failure(let error): throw .malformed(error.description)
        }
        let framing = try BodyFraming.request(request)
        let upgrade = upgradeRequested(request)
        var rewritten = request
        rewritten.target = target.originForm
        if let authority = target.authority, !request.headers.contains("Host") {
            // An HTTP/1.0 absolute-form request names its host only in the target.
            rewritten.headers.add("Host", authority)
        }
        var dropped: [String] = []
        if !allowUnderscoreHeaders {
            rewritten.headers.removeAll { field in
                guard field.name.utf8.contains(UInt8(ascii: "_")) else { return false }
                dropped.append(field.name)
                return true
            }
        }
        if let token {
            do {
                rewritten = try TokenRewrite.apply(to: rewritten, settings: token)
            } catch {
                throw .malformed(error.description)
            }
        }
        let upstream = HeaderPolicy.upstreamRequest(rewritten, target: rewritten.target, bodyFraming: framing, upgrade: upgrade)
        return RequestPlan(upstreamHead: upstream, bodyFraming: framing,
                           clientKeepAlive: wantsKeepAlive(request), upgrade: upgrade,
                           routingPath: target.path, droppedHeaderNames: dropped)
    }

    static func upgradeRequested(_ request: RequestHead) -> String? {
        guard request.version == .http11, request.headers.containsToken("Connection", "upgrade"),
              let protocols = request.headers["Upgrade"], !protocols.isEmpty else { return nil }
        return protocols
    }

    static func wantsKeepAlive(_ request: RequestHead) -> Bool {
        if request.version == .http10 { return request.headers.containsToken("Connection", "keep-alive") }
        return !request.headers.containsToken("Connection", "close")
    }
}

/// A response the proxy sends itself instead of forwarding the request.
public struct ProxyAnswer: Equatable, Sendable {
    public struct Field: Equatable, Sendable {
        public var name: String
        public var value: String
    }
    public var status: Int
    /// The one-line body (never holds a token: built from the method only).
    public var message: String
    public var headers: [Field]

    /// The complete page; it closes the connection.
    public var page: [UInt8] {
        ErrorPage.response(status: status, message: message, headers: headers.map { ($0.name, $0.value) })
    }
}

public struct ResponsePlan: Equatable, Sendable {
    public var upstreamFraming: BodyFraming
    /// The framing the client sees: upstream lengths are kept; anything else
    /// becomes chunked for HTTP/1.1 clients and close-delimited for HTTP/1.0.
    public var clientFraming: BodyFraming
    public var isEventStream: Bool
    /// The head gets the event-stream header policy (docs/behaviour.md, "Headers"): event streams,
    /// and the answer to a `HEAD` whose `GET` would be one, so both heads agree.
    public var eventStreamHeaders = false
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
        let eventStreamType = HeaderPolicy.isEventStream(contentType: response.headers["Content-Type"])
        let isEventStream = hasBody && eventStreamType
        let headOfEventStream = request.method == "HEAD" && eventStreamType && response.status == 200
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
            eventStreamHeaders: isEventStream || headOfEventStream,
            isCompressedEventStream: compressed,
            heartbeats: isEventStream && !compressed && heartbeatInterval != nil,
            keepAlive: clientKeepAlive && clientFraming != .closeDelimited,
            clientVersion: request.version,
            upstreamReusable: upstreamFraming != .closeDelimited && persists(response)
        )
    }

    static func persists(_ response: ResponseHead) -> Bool {
        if response.version == .http10 { return response.headers.containsToken("Connection", "keep-alive") }
        return !response.headers.containsToken("Connection", "close")
    }
}
