/// Which headers cross the proxy, in each direction (docs/behaviour.md, "Headers").
public enum HeaderPolicy {
    /// Hop-by-hop fields of RFC 9110 section 7.6.1 (plus the legacy Proxy-Connection).
    static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
    ]

    /// Fields a `Connection` header may not remove: the message would lose its
    /// framing, its Host or its media type while the proxy still relies on them.
    static let notConnectionOptions: Set<String> = [
        "host", "content-length", "content-type", "content-encoding",
    ]

    /// Removes hop-by-hop fields and every field named in `Connection`.
    static func removeHopByHop(_ headers: inout HTTPHeaders) {
        // Compared in place (no lowercased copies): this runs twice per exchange.
        let named = headers.contains("Connection")
            ? headers.tokens("Connection").filter { !notConnectionOptions.contains($0) } : []
        headers.removeAll { field in
            hopByHopNames.contains { field.name.asciiCaseInsensitiveEquals($0) }
                || named.contains { field.name.asciiCaseInsensitiveEquals($0) }
        }
    }

    private static let hopByHopNames = Array(hopByHop)

    /// Whether the client asked for an event stream (`Accept` lists text/event-stream).
    public static func acceptsEventStream(_ headers: HTTPHeaders) -> Bool {
        headers.containsToken("Accept") { element in
            // The media type: what precedes the first parameter.
            var media = element.drop { $0 == ";" }
            media = media[..<(media.utf8.firstIndex(of: UInt8(ascii: ";")) ?? media.endIndex)]
            return media.trimmingOWS().asciiCaseInsensitiveEquals("text/event-stream")
        }
    }

    /// Whether a Content-Type names text/event-stream (parameters ignored).
    public static func isEventStream(contentType: String?) -> Bool {
        guard let contentType else { return false }
        // What precedes the first ";" (or, when that is empty, all that follows it); no copies.
        let semicolon = contentType.utf8.firstIndex(of: UInt8(ascii: ";"))
        let mediaType = semicolon == contentType.startIndex
            ? contentType[contentType.utf8.index(after: contentType.startIndex)...]
            : contentType[..<(semicolon ?? contentType.endIndex)]
        return mediaType.trimmingOWS().asciiCaseInsensitiveEquals("text/event-stream")
    }

    /// Whether a response's payload is content-coded (anything but identity).
    public static func isContentEncoded(_ headers: HTTPHeaders) -> Bool {
        headers.containsToken("Content-Encoding") { !$0.asciiCaseInsensitiveEquals("identity") }
    }

    /// The head sent upstream for a client request. `target` is the rewritten
    /// request-target; `bodyFraming` is how the proxy sends the body on.
    public static func upstreamRequest(
        _ request: RequestHead, target: String, bodyFraming: BodyFraming, upgrade: String? = nil
    ) -> RequestHead {
        var headers = request.headers
        removeHopByHop(&headers)
        headers.remove("Content-Length")
        switch bodyFraming {
        case .contentLength(let length): headers.add("Content-Length", String(length))
        case .chunked: headers.add("Transfer-Encoding", "chunked")
        case .none, .closeDelimited: break
        }
        if acceptsEventStream(request.headers) {
            // The upstream must answer uncompressed: the proxy has to see event boundaries.
            headers.remove("Accept-Encoding")
        }
        if request.version == .http10 && !headers.contains("Host") {
            // Not required in 1.0, but the upstream speaks 1.1.
            headers.add("Host", "localhost")
        }
        if let upgrade {
            // The one hop-by-hop pair that crosses: a tunnel request (docs/behaviour.md, "Headers").
            headers.add("Upgrade", upgrade)
            headers.add("Connection", "upgrade")
        }
        // Otherwise no Connection field: HTTP/1.1 keeps the upstream connection for reuse.
        return RequestHead(method: request.method, target: target, version: .http11, headers: headers)
    }

    /// RFC 9110 section 8.6: no Content-Length in 1xx and 204 responses.
    static func statusAllowsContentLength(_ status: Int) -> Bool {
        status >= 200 && status != 204
    }

    /// The head of an interim (1xx, not 101) response sent to the client:
    /// hop-by-hop fields removed and no Content-Length.
    public static func interimResponse(_ response: ResponseHead) -> ResponseHead {
        var headers = response.headers
        removeHopByHop(&headers)
        headers.remove("Content-Length")
        return ResponseHead(version: .http11, status: response.status, reason: response.reason, headers: headers)
    }

    /// The head sent to the client for an upstream response.
    public static func clientResponse(
        _ response: ResponseHead, plan: ResponsePlan
    ) -> ResponseHead {
        var headers = response.headers
        let upgrade = response.headers["Upgrade"]
        removeHopByHop(&headers)
        if !statusAllowsContentLength(response.status) { headers.remove("Content-Length") }
        if plan.isTunnel {
            if let upgrade { headers.add("Upgrade", upgrade) }
            headers.add("Connection", "upgrade")
            return ResponseHead(version: .http11, status: response.status, reason: response.reason, headers: headers)
        }
        if plan.eventStreamHeaders {
            headers.remove("Content-Length")
            headers.remove("X-Accel-Buffering")
            // No cache may keep it and no hop may transform (compress, buffer) it;
            // an upstream's stricter no-store stays.
            let noStore = headers.containsToken("Cache-Control", "no-store")
            headers.set("Cache-Control", noStore ? "no-cache, no-store, no-transform" : "no-cache, no-transform")
            headers.add("X-Accel-Buffering", "no")
            if !plan.isEventStream && plan.clientVersion == .http11 {
                // HEAD: the framing a GET would get (RFC 9110 section 9.3.2), without a body.
                headers.add("Transfer-Encoding", "chunked")
            }
        }
        switch plan.clientFraming {
        case .chunked:
            headers.remove("Content-Length")
            headers.add("Transfer-Encoding", "chunked")
        case .closeDelimited:
            headers.remove("Content-Length")
        case .contentLength(let length):
            // Stated once and exactly (the upstream may have sent "5, 5" or duplicates).
            if headers.values("Content-Length") != [String(length)] { headers.set("Content-Length", String(length)) }
        case .none:
            break
        }
        if !plan.keepAlive {
            headers.add("Connection", "close")
        } else if plan.clientVersion == .http10 {
            headers.add("Connection", "keep-alive")
        }
        return ResponseHead(version: .http11, status: response.status, reason: response.reason, headers: headers)
    }
}
