import XCTest
@testable import SSEKeepalive

/// HeaderPolicy: which fields cross the proxy, in each direction (docs/behaviour.md, "Headers").
final class ProxyHeaderPolicyTests: XCTestCase {
    private static let hopByHopNames = [
        "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "TE", "Trailer", "Upgrade",
    ]

    private func upstream(_ request: RequestHead, _ framing: BodyFraming = .none, target: String? = nil) -> RequestHead {
        HeaderPolicy.upstreamRequest(request, target: target ?? request.target, bodyFraming: framing)
    }

    private func plan(_ response: ResponseHead, request: RequestHead = proxyRequest([]),
                      keepAlive: Bool = true, interval: TimeSpan? = .seconds(15),
                      file: StaticString = #filePath, line: UInt = #line) -> ResponsePlan? {
        do {
            return try ResponsePlan.make(response: response, request: request, clientKeepAlive: keepAlive,
                                         heartbeatInterval: interval)
        } catch {
            XCTFail("ResponsePlan.make threw \(error)", file: file, line: line)
            return nil
        }
    }

    private func client(_ response: ResponseHead, request: RequestHead = proxyRequest([]), keepAlive: Bool = true,
                        file: StaticString = #filePath, line: UInt = #line) -> ResponseHead? {
        guard let p = plan(response, request: request, keepAlive: keepAlive, file: file, line: line) else { return nil }
        return HeaderPolicy.clientResponse(response, plan: p)
    }

    private func assertNoHopByHop(_ headers: HTTPHeaders, except allowed: Set<String> = [],
                                  file: StaticString = #filePath, line: UInt = #line) {
        for name in Self.hopByHopNames where !allowed.contains(name.lowercased()) {
            XCTAssertFalse(headers.contains(name), "\(name) must not cross the proxy: \(headers.fields)",
                           file: file, line: line)
        }
    }

    // MARK: - Request direction

    func testRequestHopByHopFieldsRemovedAnyCase() {
        for name in Self.hopByHopNames {
            for spelling in [name, name.lowercased(), name.uppercased()] {
                let request = proxyRequest([("X-Before", "1"), (spelling, "whatever"), ("X-After", "2")])
                let out = upstream(request)
                XCTAssertEqual(proxyCount(out.headers, name), 0, spelling)
                XCTAssertEqual(out.headers.values("X-Before"), ["1"], spelling)
                XCTAssertEqual(out.headers.values("X-After"), ["2"], spelling)
            }
        }
    }

    func testRequestFieldsNamedInConnectionRemovedCaseInsensitively() {
        let request = proxyRequest([
            ("Connection", "X-Secret, keep-alive"),
            ("x-secret", "a"),
            ("X-SECRET", "b"),
            ("connection", "x-other"),
            ("X-Other", "c"),
            ("X-Kept", "d"),
        ])
        let out = upstream(request)
        XCTAssertFalse(out.headers.contains("X-Secret"))
        XCTAssertFalse(out.headers.contains("X-Other"))
        XCTAssertEqual(out.headers.values("X-Kept"), ["d"])
        XCTAssertFalse(out.headers.contains("Connection"))
    }

    /// Upstream connections persist (HTTP/1.1 default) so the pool can reuse them,
    /// whatever the client said about its own connection.
    func testUpstreamRequestIsPersistentHTTP11() {
        for connection in [nil, "keep-alive", "close", "Keep-Alive, X-Foo"] {
            for version in [HTTPVersion.http10, .http11] {
                var fields: [(String, String)] = [("Accept", "*/*")]
                if let connection { fields.append(("Connection", connection)) }
                let out = upstream(proxyRequest(fields, version: version))
                XCTAssertFalse(out.headers.contains("Connection"), "\(String(describing: connection)) \(version)")
                XCTAssertEqual(out.version, .http11)
            }
        }
    }

    func testUpstreamRequestKeepsEndToEndFieldsInOrder() {
        let request = proxyRequest([
            ("User-Agent", "ua"), ("Connection", "keep-alive"), ("Accept", "text/html"), ("Keep-Alive", "timeout=5"),
            ("X-Multi", "1"), ("Cookie", "a=b"), ("X-Multi", "2"), ("Authorization", "Bearer t"),
        ], method: "GET", target: "/p?q=1")
        let out = upstream(request, target: "/rewritten?q=1")
        XCTAssertEqual(out.method, "GET")
        XCTAssertEqual(out.target, "/rewritten?q=1")
        XCTAssertEqual(proxyNames(out.headers),
                       ["Host", "User-Agent", "Accept", "X-Multi", "Cookie", "X-Multi", "Authorization"])
        XCTAssertEqual(out.headers.values("X-Multi"), ["1", "2"])
        XCTAssertEqual(out.headers["Host"], "example.test")
        XCTAssertEqual(out.headers["Cookie"], "a=b")
        XCTAssertEqual(proxyReparse(out), out)
    }

    func testUpstreamRequestBodyFramingHeaders() {
        // Content-Length framing: exactly one Content-Length with the planned length, no Transfer-Encoding.
        let cl = upstream(proxyRequest([("Content-Length", "5"), ("Content-Type", "text/plain")], method: "POST"),
                          .contentLength(5))
        XCTAssertEqual(cl.headers.values("Content-Length"), ["5"])
        XCTAssertFalse(cl.headers.contains("Transfer-Encoding"))
        XCTAssertEqual(cl.headers["Content-Type"], "text/plain")

        // A duplicated, equal Content-Length list is normalised to one value.
        let dup = upstream(proxyRequest([("Content-Length", "5, 5"), ("content-length", "5")], method: "POST"),
                           .contentLength(5))
        XCTAssertEqual(dup.headers.values("Content-Length"), ["5"])

        // Chunked framing: Transfer-Encoding: chunked once, no Content-Length.
        let ch = upstream(proxyRequest([("Transfer-Encoding", "chunked"), ("TE", "trailers")], method: "POST"), .chunked)
        XCTAssertEqual(ch.headers.values("Transfer-Encoding"), ["chunked"])
        XCTAssertFalse(ch.headers.contains("Content-Length"))
        XCTAssertFalse(ch.headers.contains("TE"))

        // No body: neither header.
        let none = upstream(proxyRequest([]), .none)
        XCTAssertFalse(none.headers.contains("Content-Length"))
        XCTAssertFalse(none.headers.contains("Transfer-Encoding"))

        // Zero-length body keeps an explicit Content-Length: 0.
        let zero = upstream(proxyRequest([("Content-Length", "0")], method: "POST"), .contentLength(0))
        XCTAssertEqual(zero.headers.values("Content-Length"), ["0"])

        for out in [cl, dup, ch, none, zero] {
            guard let reparsed = proxyReparse(out) else { continue }
            XCTAssertEqual(reparsed, out)
        }
    }

    func testUpstreamRequestFramingAgreesWithBodyFraming() throws {
        // What the upstream will infer from the head must be what the proxy sends.
        let cases: [RequestHead] = [
            proxyRequest([]),
            proxyRequest([("Content-Length", "12")], method: "POST"),
            proxyRequest([("Content-Length", "0")], method: "PUT"),
            proxyRequest([("Transfer-Encoding", "chunked")], method: "POST"),
            proxyRequest([("Transfer-Encoding", "Chunked")], method: "POST"),
            proxyRequest([("Content-Length", "3")], method: "POST", version: .http10, host: false),
        ]
        for request in cases {
            let plan = try RequestPlan.make(request)
            let reparsed = try XCTUnwrap(proxyReparse(plan.upstreamHead))
            XCTAssertEqual(try BodyFraming.request(reparsed), plan.bodyFraming, "\(request.headers.fields)")
        }
    }

    func testHTTP10RequestWithoutHostGetsOneForTheHTTP11Upstream() {
        let out = upstream(proxyRequest([("Accept", "*/*")], version: .http10, host: false))
        XCTAssertEqual(out.version, .http11)
        XCTAssertEqual(out.headers.values("Host").count, 1)
        XCTAssertNotNil(proxyReparse(out), "an HTTP/1.1 request without Host is invalid")

        let withHost = upstream(proxyRequest([], version: .http10))
        XCTAssertEqual(withHost.headers.values("Host"), ["example.test"])
    }

    // MARK: Accept-Encoding

    func testAcceptEncodingDroppedOnlyWhenAcceptListsEventStream() {
        let dropped = [
            "text/event-stream",
            "Text/Event-Stream",
            "TEXT/EVENT-STREAM",
            "text/event-stream; charset=utf-8",
            "text/event-stream;q=0.9",
            "text/event-stream ; q=1",
            "text/html, text/event-stream",
            "application/json;q=0.5, text/event-stream;q=1, */*;q=0.1",
            " text/event-stream ",
        ]
        for accept in dropped {
            XCTAssertTrue(HeaderPolicy.acceptsEventStream(HTTPHeaders([("Accept", accept)])), accept)
            let out = upstream(proxyRequest([("Accept", accept), ("Accept-Encoding", "gzip, br")]))
            XCTAssertFalse(out.headers.contains("Accept-Encoding"), accept)
            XCTAssertEqual(out.headers["Accept"], accept, "Accept itself is forwarded")
        }
        let kept = [
            "text/html",
            "*/*",
            "text/*",
            "text/event-streamx",
            "text/event-stream-foo",
            "application/text/event-stream",
            "xtext/event-stream",
        ]
        for accept in kept {
            XCTAssertFalse(HeaderPolicy.acceptsEventStream(HTTPHeaders([("Accept", accept)])), accept)
            let out = upstream(proxyRequest([("Accept", accept), ("Accept-Encoding", "gzip")]))
            XCTAssertEqual(out.headers.values("Accept-Encoding"), ["gzip"], accept)
        }
        // No Accept at all: Accept-Encoding kept.
        XCTAssertEqual(upstream(proxyRequest([("Accept-Encoding", "gzip")])).headers.values("Accept-Encoding"), ["gzip"])
    }

    func testAcceptEventStreamInSecondAcceptFieldCounts() {
        let request = proxyRequest([("Accept", "text/html"), ("accept", "text/event-stream"),
                                    ("Accept-Encoding", "gzip"), ("accept-encoding", "br")])
        let out = upstream(request)
        XCTAssertFalse(out.headers.contains("Accept-Encoding"), "every Accept-Encoding field goes")
        XCTAssertEqual(out.headers.values("Accept"), ["text/html", "text/event-stream"])
    }

    // MARK: - Upgrade tunnels (the Upgrade/Connection: upgrade pair is forwarded)

    /// docs/behaviour.md, "Headers": hop-by-hop request headers are removed, except
    /// the `Upgrade`/`Connection: upgrade` pair of a tunnel request. A WebSocket handshake must
    /// reach the upstream with both fields, and without `Connection: close`.
    func testUpgradeRequestKeepsUpgradeConnectionPair() throws {
        let request = proxyRequest([
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13"),
            ("Keep-Alive", "timeout=5"),
        ])
        let plan = try RequestPlan.make(request)
        XCTAssertEqual(plan.upgrade, "websocket")
        let out = plan.upstreamHead
        XCTAssertEqual(out.headers.values("Upgrade"), ["websocket"], "Upgrade must be forwarded for a tunnel")
        XCTAssertTrue(out.headers.tokens("Connection").contains("upgrade"),
                      "Connection must name upgrade, got \(out.headers.values("Connection"))")
        XCTAssertFalse(out.headers.tokens("Connection").contains("close"))
        XCTAssertFalse(out.headers.contains("Keep-Alive"), "other hop-by-hop fields still go")
        XCTAssertEqual(out.headers["Sec-WebSocket-Key"], "dGhlIHNhbXBsZSBub25jZQ==")
    }

    /// Upgrade without `Connection: upgrade` is not a tunnel request: Upgrade is dropped.
    func testUpgradeWithoutConnectionUpgradeIsDropped() throws {
        let plan = try RequestPlan.make(proxyRequest([("Upgrade", "websocket")]))
        XCTAssertNil(plan.upgrade)
        let out = plan.upstreamHead
        XCTAssertFalse(out.headers.contains("Upgrade"))
        XCTAssertFalse(out.headers.contains("Connection"))
    }

    /// The 101 answer must tell the client which protocol it switched to.
    func testSwitchingProtocolsResponseKeepsUpgradeConnectionPair() throws {
        let request = proxyRequest([("Upgrade", "websocket"), ("Connection", "Upgrade")])
        let response = proxyResponse(101, [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                           ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")],
                                     reason: "Switching Protocols")
        let tunnel = try ResponsePlan.make(response: response, request: request, clientKeepAlive: true,
                                           heartbeatInterval: .seconds(15), upgradeRequested: true)
        XCTAssertTrue(tunnel.isTunnel)
        XCTAssertFalse(tunnel.keepAlive)
        let out = HeaderPolicy.clientResponse(response, plan: tunnel)
        XCTAssertEqual(out.status, 101)
        XCTAssertEqual(out.headers.values("Upgrade"), ["websocket"])
        XCTAssertTrue(out.headers.tokens("Connection").contains("upgrade"),
                      "got Connection \(out.headers.values("Connection"))")
        XCTAssertEqual(out.headers["Sec-WebSocket-Accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        XCTAssertFalse(out.headers.contains("Transfer-Encoding"))
        XCTAssertFalse(out.headers.contains("Content-Length"))
    }

    // MARK: - Response direction

    func testResponseHopByHopFieldsRemovedAnyCase() {
        for name in Self.hopByHopNames {
            for spelling in [name, name.lowercased(), name.uppercased()] {
                let response = proxyResponse(200, [("Content-Type", "text/plain"), ("Content-Length", "3"),
                                                   (spelling, name == "Transfer-Encoding" ? "gzip" : "x"),
                                                   ("X-After", "2")])
                // Transfer-Encoding with Content-Length is rejected by framing: build the plan by hand.
                let p = ResponsePlan(upstreamFraming: .contentLength(3), clientFraming: .contentLength(3),
                                     isEventStream: false, isCompressedEventStream: false, heartbeats: false,
                                     keepAlive: true, clientVersion: .http11)
                let out = HeaderPolicy.clientResponse(response, plan: p)
                XCTAssertEqual(proxyCount(out.headers, name), 0, spelling)
                XCTAssertEqual(out.headers.values("X-After"), ["2"], spelling)
                XCTAssertEqual(out.headers.values("Content-Length"), ["3"], spelling)
            }
        }
    }

    func testResponseFieldsNamedInConnectionRemoved() {
        let response = proxyResponse(200, [("Connection", "keep-alive, X-Hop"), ("X-HOP", "1"), ("x-hop", "2"),
                                           ("Content-Length", "0"), ("X-End", "3")])
        guard let out = client(response) else { return }
        XCTAssertFalse(out.headers.contains("X-Hop"))
        XCTAssertEqual(out.headers.values("X-End"), ["3"])
        XCTAssertFalse(out.headers.contains("Connection"), "kept-alive 1.1 client: no Connection field needed")
    }

    func testPlainContentLengthResponsePassesThroughUnchanged() {
        let fields: [(String, String)] = [("Date", "Mon, 01 Jan 2024 00:00:00 GMT"), ("Content-Type", "text/html"),
                                          ("Content-Length", "42"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
                                          ("Cache-Control", "max-age=60"), ("X-Accel-Buffering", "yes")]
        guard let out = client(proxyResponse(200, fields)) else { return }
        XCTAssertEqual(out.headers, HTTPHeaders(fields), "non-SSE: end-to-end fields untouched, in order")
        XCTAssertEqual(out.status, 200)
        XCTAssertEqual(out.reason, "OK")
        XCTAssertEqual(out.version, .http11)
        XCTAssertEqual(proxyReparse(out), out)
    }

    func testEventStreamResponseHeaders() {
        let upstreamHeads: [[(String, String)]] = [
            [("Content-Type", "text/event-stream")],
            [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked")],
            [("Content-Type", "text/event-stream; charset=utf-8"), ("Content-Length", "100")],
            [("Content-Type", "Text/Event-Stream"), ("Cache-Control", "no-store"), ("cache-control", "private"),
             ("X-Accel-Buffering", "yes"), ("x-accel-buffering", "yes")],
            [("Content-Type", "text/event-stream"), ("Connection", "keep-alive"), ("Keep-Alive", "timeout=60")],
        ]
        for fields in upstreamHeads {
            for (version, keepAlive) in [(HTTPVersion.http11, true), (.http11, false), (.http10, true), (.http10, false)] {
                let label = "\(fields) client \(version) keepAlive \(keepAlive)"
                let request = proxyRequest([("Accept", "text/event-stream")], version: version)
                guard let p = plan(proxyResponse(200, fields), request: request, keepAlive: keepAlive),
                      let out = Optional(HeaderPolicy.clientResponse(proxyResponse(200, fields), plan: p))
                else { continue }
                XCTAssertTrue(p.isEventStream, label)
                XCTAssertFalse(out.headers.contains("Content-Length"), label)
                // no-transform for every stream; an upstream's no-store is kept, `private` (which allows caching) is not.
                let noStore = fields.contains { $0.0.lowercased() == "cache-control" && $0.1 == "no-store" }
                XCTAssertEqual(out.headers.values("Cache-Control"),
                               [noStore ? "no-cache, no-store, no-transform" : "no-cache, no-transform"], label)
                XCTAssertEqual(out.headers.values("X-Accel-Buffering"), ["no"], label)
                XCTAssertEqual(out.headers["Content-Type"], fields[0].1, label)
                assertNoHopByHop(out.headers, except: ["transfer-encoding", "connection"], file: #filePath, line: #line)
                XCTAssertFalse(out.headers.contains("Keep-Alive"), label)
                if version == .http11 {
                    XCTAssertEqual(out.headers.values("Transfer-Encoding"), ["chunked"], label)
                    XCTAssertEqual(out.headers.values("Connection"), keepAlive ? [] : ["close"], label)
                } else {
                    // Close-delimited for HTTP/1.0: no framing field, and the connection ends.
                    XCTAssertFalse(out.headers.contains("Transfer-Encoding"), label)
                    XCTAssertEqual(out.headers.values("Connection"), ["close"], label)
                }
                // What the client will infer from the head must be the planned framing.
                if let reparsed = proxyReparse(out) {
                    XCTAssertEqual(try BodyFraming.response(reparsed, requestMethod: "GET"), p.clientFraming, label)
                }
            }
        }
    }

    func testChunkedFramingAddsTransferEncodingOnce() {
        for upstreamFields in [[("Transfer-Encoding", "chunked")], [("transfer-encoding", "Chunked")], []] {
            let fields = [("Content-Type", "application/json")] + upstreamFields
            guard let out = client(proxyResponse(200, fields)) else { continue }
            XCTAssertEqual(out.headers.values("Transfer-Encoding"), ["chunked"], "\(upstreamFields)")
            XCTAssertFalse(out.headers.contains("Content-Length"))
        }
    }

    func testConnectionCloseWhenNotKeepingAlive() {
        let cases: [(RequestHead, ResponseHead, Bool, [String])] = [
            // (request, response, clientKeepAlive, expected Connection values)
            (proxyRequest([]), proxyResponse(200, [("Content-Length", "1")]), true, []),
            (proxyRequest([]), proxyResponse(200, [("Content-Length", "1")]), false, ["close"]),
            (proxyRequest([]), proxyResponse(200, [("Content-Length", "1"), ("Connection", "close")]), true, []),
            (proxyRequest([], version: .http10), proxyResponse(200, [("Content-Length", "1")]), true, ["keep-alive"]),
            (proxyRequest([], version: .http10), proxyResponse(200, [("Content-Length", "1")]), false, ["close"]),
            // HTTP/1.0 client, body without length: close-delimited, so never keep-alive.
            (proxyRequest([], version: .http10), proxyResponse(200, []), true, ["close"]),
            (proxyRequest([], version: .http10), proxyResponse(200, [("Transfer-Encoding", "chunked")]), true, ["close"]),
            (proxyRequest([], version: .http10), proxyResponse(204, [], reason: "No Content"), true, ["keep-alive"]),
            (proxyRequest([]), proxyResponse(304, [("Content-Length", "99")], reason: "Not Modified"), false, ["close"]),
        ]
        for (request, response, keepAlive, expected) in cases {
            guard let out = client(response, request: request, keepAlive: keepAlive) else { continue }
            XCTAssertEqual(out.headers.values("Connection"), expected,
                           "\(request.version) \(response.status) \(response.headers.fields) keepAlive \(keepAlive)")
        }
    }

    func testHeadAnd204And304ResponsesKeepTheirHeadersButGetNoFraming() {
        let headRequest = proxyRequest([], method: "HEAD")
        guard let head = client(proxyResponse(200, [("Content-Type", "text/plain"), ("Content-Length", "1234")]),
                                request: headRequest) else { return }
        XCTAssertEqual(head.headers.values("Content-Length"), ["1234"], "HEAD keeps the representation's length")
        XCTAssertFalse(head.headers.contains("Transfer-Encoding"))

        guard let noContent = client(proxyResponse(204, [("Transfer-Encoding", "chunked")], reason: "No Content"))
        else { return }
        XCTAssertFalse(noContent.headers.contains("Transfer-Encoding"))
        XCTAssertFalse(noContent.headers.contains("Content-Length"))
    }

    // MARK: - Classification

    func testIsEventStream() {
        let yes = ["text/event-stream", "Text/Event-Stream; charset=utf-8", "TEXT/EVENT-STREAM",
                   "text/event-stream;charset=utf-8", " text/event-stream ", "text/event-stream\t; x=y",
                   // An empty first piece is skipped (what splitting on ";" gives).
                   ";text/event-stream"]
        for value in yes { XCTAssertTrue(HeaderPolicy.isEventStream(contentType: value), value) }
        let no: [String?] = [nil, "", "text/event-streamx", "text/event-stream-x", "text/plain", "text/event",
                             "application/event-stream", "text/html; type=text/event-stream", "event-stream",
                             ";;text/event-stream", ";"]
        for value in no { XCTAssertFalse(HeaderPolicy.isEventStream(contentType: value), String(describing: value)) }
    }

    func testIsContentEncoded() {
        XCTAssertTrue(HeaderPolicy.isContentEncoded(HTTPHeaders([("Content-Encoding", "gzip")])))
        XCTAssertTrue(HeaderPolicy.isContentEncoded(HTTPHeaders([("content-encoding", "br")])))
        XCTAssertTrue(HeaderPolicy.isContentEncoded(HTTPHeaders([("Content-Encoding", "identity, gzip")])))
        XCTAssertFalse(HeaderPolicy.isContentEncoded(HTTPHeaders([("Content-Encoding", "identity")])))
        XCTAssertFalse(HeaderPolicy.isContentEncoded(HTTPHeaders([("Content-Encoding", "Identity")])))
        XCTAssertFalse(HeaderPolicy.isContentEncoded(HTTPHeaders([("Content-Type", "text/event-stream")])))
        XCTAssertFalse(HeaderPolicy.isContentEncoded(HTTPHeaders()))
    }
}

/// Upstream heads stay valid HTTP/1.1 whatever hop-by-hop mix the client sends.
final class ProxyHeaderPolicyPropertyTests: XCTestCase {
    private static let hop = ["Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "TE", "Trailer", "Upgrade"]
    private static let endToEnd = ["Accept", "Accept-Encoding", "Cookie", "User-Agent", "X-A", "X-B", "Authorization", "Content-Type"]

    func testRandomRequestsGiveValidUpstreamHeads() throws {
        var rng = SeededRNG(seed: 42)
        for trial in 0..<2000 {
            var fields: [(String, String)] = [("Host", "h.example")]
            for _ in 0..<Int.random(in: 0...10, using: &rng) {
                if Bool.random(using: &rng) {
                    let name = Self.hop.randomElement(using: &rng)!
                    guard name != "Transfer-Encoding" else { continue } // framing is tested separately
                    let named = Self.endToEnd.filter { _ in Int.random(in: 0..<4, using: &rng) == 0 }
                    fields.append((Bool.random(using: &rng) ? name.uppercased() : name,
                                   name == "Connection" ? (named + ["keep-alive"]).joined(separator: ", ") : "v"))
                } else {
                    fields.append((Self.endToEnd.randomElement(using: &rng)!, "v\(trial)"))
                }
            }
            fields.shuffle(using: &rng)
            let version: HTTPVersion = Bool.random(using: &rng) ? .http11 : .http10
            let request = RequestHead(method: "GET", target: "/t\(trial)", version: version, headers: HTTPHeaders(fields))
            let plan = try RequestPlan.make(request)
            let out = plan.upstreamHead
            let named = Set(request.headers.tokens("Connection"))
            let label = "trial \(trial): \(fields)"
            guard let reparsed = proxyReparse(out) else { XCTFail(label); continue }
            XCTAssertEqual(reparsed, out, label)
            for name in Self.hop { XCTAssertFalse(out.headers.contains(name), "\(label): \(name)") }
            // Every end-to-end field not named in Connection survives, in order.
            let expected = request.headers.fields.filter { field in
                let lower = field.name.lowercased()
                // Framing, Host and media type cannot be removed by naming them in Connection.
                return !Self.hop.map { $0.lowercased() }.contains(lower)
                    && (!named.contains(lower) || HeaderPolicy.notConnectionOptions.contains(lower))
                    && !(lower == "accept-encoding" && HeaderPolicy.acceptsEventStream(request.headers))
            }
            XCTAssertEqual(out.headers.fields, expected, label)
        }
    }

    /// RFC 9112 3.2: a client MUST send Host in every HTTP/1.1 request. A client
    /// naming `Host` in `Connection` makes removeHopByHop delete it, and the proxy
    /// then sends the upstream an HTTP/1.1 request without Host (the HTTP/1.0 path
    /// re-adds one; the HTTP/1.1 path does not). The upstream head must stay valid.
    func testHostNamedInConnectionDoesNotLeaveUpstreamRequestWithoutHost() throws {
        let request = proxyRequest([("Connection", "keep-alive, Host")])
        let plan = try RequestPlan.make(request)
        XCTAssertEqual(plan.upstreamHead.headers.values("Host").count, 1,
                       "upstream head: \(plan.upstreamHead.headers.fields)")
        XCTAssertNotNil(proxyReparse(plan.upstreamHead))
    }

    /// Upstream response `Connection: Content-Length` (or any casing) makes
    /// removeHopByHop delete the Content-Length, but the plan keeps
    /// clientFraming = .contentLength(n) and keepAlive = true, and clientResponse
    /// only re-adds framing for .chunked. The client then sees a head with neither
    /// Content-Length nor Transfer-Encoding (close-delimited by RFC 9112 6.3) on a
    /// connection the proxy keeps open: the next response on that connection is
    /// read as part of this body. The declared framing must match the plan.
    func testContentLengthNamedInConnectionStillDeclaredToClient() throws {
        let response = proxyResponse(200, [("Content-Type", "text/plain"), ("Content-Length", "5"),
                                           ("Connection", "content-length")])
        let plan = try ResponsePlan.make(response: response, request: proxyRequest([]), clientKeepAlive: true,
                                         heartbeatInterval: nil)
        XCTAssertEqual(plan.clientFraming, .contentLength(5))
        let head = HeaderPolicy.clientResponse(response, plan: plan)
        let reparsed = try XCTUnwrap(proxyReparse(head))
        XCTAssertEqual(try BodyFraming.response(reparsed, requestMethod: "GET"), plan.clientFraming,
                       "client head \(head.headers.fields) declares a different framing than the proxy sends")
    }
}
