/// What makes two requests "the same stream": they share one upstream stream
/// exactly when their keys are equal. Built from the request as it would go
/// upstream (normalised path, the query without a moved token, the token in
/// its header), so only requests with the same credentials ever share.
public struct ShareKey: Hashable, Sendable {
    public let route: String
    public let upstream: SocketAddressSpec
    public let method: String
    /// The upstream request-target: normalised path and the query without the token.
    public let target: String
    /// The values of `settings.keyHeaders`, in order; nil for an absent field.
    public let headerValues: [[String]?]
    /// Part of the key: a reload that changes the route's `share` opens new streams for new joins.
    public let settings: ShareSettings

    public init(route: Route, upstreamHead: RequestHead, settings: ShareSettings) {
        self.route = route.name
        self.upstream = route.upstream
        self.method = upstreamHead.method
        self.target = upstreamHead.target
        self.headerValues = settings.keyHeaders.map { name in
            let values = upstreamHead.headers.values(name)
            return values.isEmpty ? nil : values
        }
        self.settings = settings
    }
}

/// A client's request to join (or open) the shared stream of `key`.
public struct SharedJoin: Equatable, Sendable {
    public let key: ShareKey
    /// The request the proxy sends for itself when it opens the stream: the
    /// client's, as HTTP/1.0 (so the body comes back unframed) and without
    /// `Last-Event-ID` (one client's position must not make the app replay to all).
    public let upstreamRequest: [UInt8]
    public let lastEventID: String?

    public init(key: ShareKey, request: RequestHead) {
        self.key = key
        var own = request
        own.version = .http10
        own.headers.remove("Last-Event-ID")
        own.headers.remove("Connection")
        own.headers.remove("Keep-Alive")
        self.upstreamRequest = own.serialized()
        self.lastEventID = request.headers["Last-Event-ID"]
    }

    /// Requests that may share: a GET without a body or an upgrade.
    public static func qualifies(_ request: RequestHead, plan: RequestPlan) -> Bool {
        request.method == "GET" && plan.bodyFraming == .none && plan.upgrade == nil
    }
}
