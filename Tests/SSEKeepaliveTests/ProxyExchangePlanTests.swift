import XCTest
@testable import SSEKeepalive

/// RequestPlan and ResponsePlan: decisions made from heads alone.
final class ProxyExchangePlanTests: XCTestCase {
    private func requestPlan(_ request: RequestHead) -> Result<RequestPlan, HTTPParseError> {
        Result { () throws(HTTPParseError) in try RequestPlan.make(request) }
    }

    private func responsePlan(_ response: ResponseHead, _ request: RequestHead, keepAlive: Bool = true,
                              interval: TimeSpan? = .seconds(15)) -> Result<ResponsePlan, HTTPParseError> {
        Result { () throws(HTTPParseError) in
            try ResponsePlan.make(response: response, request: request, clientKeepAlive: keepAlive,
                                  heartbeatInterval: interval)
        }
    }

    // MARK: - RequestPlan

    func testRequestKeepAliveRules() throws {
        let cases: [(HTTPVersion, [(String, String)], Bool)] = [
            (.http11, [], true),
            (.http11, [("Connection", "keep-alive")], true),
            (.http11, [("Connection", "close")], false),
            (.http11, [("Connection", "Close")], false),
            (.http11, [("connection", "CLOSE")], false),
            (.http11, [("Connection", "X-Foo, close")], false),
            (.http11, [("Connection", "X-Foo"), ("Connection", "close")], false),
            (.http11, [("Connection", "closed")], true),
            (.http11, [("Connection", "X-Close")], true),
            (.http11, [("X-Connection", "close")], true),
            (.http10, [], false),
            (.http10, [("Connection", "keep-alive")], true),
            (.http10, [("Connection", "Keep-Alive")], true),
            (.http10, [("Connection", "X-Foo, keep-alive")], true),
            (.http10, [("Connection", "close")], false),
            (.http10, [("Connection", "keep-alived")], false),
            (.http10, [("Keep-Alive", "timeout=5")], false),
        ]
        for (version, fields, expected) in cases {
            let plan = try requestPlan(proxyRequest(fields, version: version)).get()
            XCTAssertEqual(plan.clientKeepAlive, expected, "\(version) \(fields)")
        }
    }

    func testRequestFramingAndUpstreamHead() throws {
        let cases: [(RequestHead, BodyFraming)] = [
            (proxyRequest([]), .none),
            (proxyRequest([("Content-Length", "10")], method: "POST"), .contentLength(10)),
            (proxyRequest([("Transfer-Encoding", "chunked")], method: "POST"), .chunked),
            (proxyRequest([("Content-Length", "4")], method: "POST", version: .http10), .contentLength(4)),
        ]
        for (request, framing) in cases {
            let plan = try requestPlan(request).get()
            XCTAssertEqual(plan.bodyFraming, framing)
            XCTAssertEqual(plan.upstreamHead,
                           HeaderPolicy.upstreamRequest(request, target: request.target, bodyFraming: framing))
            XCTAssertEqual(plan.upstreamHead.target, request.target)
            XCTAssertEqual(plan.upstreamHead.version, .http11)
        }
    }

    func testRequestFramingErrorsPropagate() {
        let bad: [RequestHead] = [
            proxyRequest([("Transfer-Encoding", "chunked"), ("Content-Length", "5")], method: "POST"),
            proxyRequest([("Content-Length", "5"), ("Transfer-Encoding", "chunked")], method: "POST"),
            proxyRequest([("Transfer-Encoding", "chunked")], method: "POST", version: .http10),
            proxyRequest([("Transfer-Encoding", "gzip")], method: "POST"),
            proxyRequest([("Transfer-Encoding", "chunked, chunked")], method: "POST"),
            proxyRequest([("Content-Length", "5"), ("Content-Length", "6")], method: "POST"),
            proxyRequest([("Content-Length", "-1")], method: "POST"),
            proxyRequest([("Content-Length", "")], method: "POST"),
        ]
        for request in bad {
            switch requestPlan(request) {
            case .failure(.malformed): break
            case let other: XCTFail("\(request.headers.fields): expected malformed, got \(other)")
            }
        }
    }

    // MARK: - ResponsePlan table

    private struct Row {
        var label: String
        var response: ResponseHead
        var method = "GET"
        var clientVersion: HTTPVersion = .http11
        var clientKeepAlive = true
        var interval: TimeSpan? = .seconds(15)
        // expectations
        var upstream: BodyFraming
        var client: BodyFraming
        var eventStream: Bool
        var heartbeats: Bool
        var keepAlive: Bool
        var compressed = false
    }

    private static let sse = ("Content-Type", "text/event-stream")
    private static let plain = ("Content-Type", "text/plain")

    private var rows: [Row] {
        let sse = Self.sse, plain = Self.plain
        return [
            // Non-SSE with a length: kept, for both client versions.
            Row(label: "plain CL 1.1", response: proxyResponse(200, [plain, ("Content-Length", "5")]),
                upstream: .contentLength(5), client: .contentLength(5), eventStream: false, heartbeats: false, keepAlive: true),
            Row(label: "plain CL 1.0", response: proxyResponse(200, [plain, ("Content-Length", "5")]), clientVersion: .http10,
                upstream: .contentLength(5), client: .contentLength(5), eventStream: false, heartbeats: false, keepAlive: true),
            Row(label: "plain CL 0", response: proxyResponse(200, [plain, ("Content-Length", "0")]),
                upstream: .contentLength(0), client: .contentLength(0), eventStream: false, heartbeats: false, keepAlive: true),
            Row(label: "plain CL no keep-alive", response: proxyResponse(200, [plain, ("Content-Length", "5")]),
                clientKeepAlive: false,
                upstream: .contentLength(5), client: .contentLength(5), eventStream: false, heartbeats: false, keepAlive: false),
            // Non-SSE chunked / close-delimited.
            Row(label: "plain chunked 1.1", response: proxyResponse(200, [plain, ("Transfer-Encoding", "chunked")]),
                upstream: .chunked, client: .chunked, eventStream: false, heartbeats: false, keepAlive: true),
            Row(label: "plain chunked 1.0", response: proxyResponse(200, [plain, ("Transfer-Encoding", "chunked")]),
                clientVersion: .http10,
                upstream: .chunked, client: .closeDelimited, eventStream: false, heartbeats: false, keepAlive: false),
            Row(label: "plain close-delimited 1.1", response: proxyResponse(200, [plain]),
                upstream: .closeDelimited, client: .chunked, eventStream: false, heartbeats: false, keepAlive: true),
            Row(label: "plain close-delimited 1.0", response: proxyResponse(200, [plain]), clientVersion: .http10,
                upstream: .closeDelimited, client: .closeDelimited, eventStream: false, heartbeats: false, keepAlive: false),
            // Event streams: always re-framed, never a Content-Length to the client.
            Row(label: "sse close-delimited 1.1", response: proxyResponse(200, [sse]),
                upstream: .closeDelimited, client: .chunked, eventStream: true, heartbeats: true, keepAlive: true),
            Row(label: "sse chunked 1.1", response: proxyResponse(200, [sse, ("Transfer-Encoding", "chunked")]),
                upstream: .chunked, client: .chunked, eventStream: true, heartbeats: true, keepAlive: true),
            Row(label: "sse CL 1.1", response: proxyResponse(200, [sse, ("Content-Length", "50")]),
                upstream: .contentLength(50), client: .chunked, eventStream: true, heartbeats: true, keepAlive: true),
            Row(label: "sse CL 1.0", response: proxyResponse(200, [sse, ("Content-Length", "50")]), clientVersion: .http10,
                upstream: .contentLength(50), client: .closeDelimited, eventStream: true, heartbeats: true, keepAlive: false),
            Row(label: "sse close-delimited 1.0", response: proxyResponse(200, [sse]), clientVersion: .http10,
                upstream: .closeDelimited, client: .closeDelimited, eventStream: true, heartbeats: true, keepAlive: false),
            Row(label: "sse chunked 1.0", response: proxyResponse(200, [sse, ("Transfer-Encoding", "chunked")]),
                clientVersion: .http10,
                upstream: .chunked, client: .closeDelimited, eventStream: true, heartbeats: true, keepAlive: false),
            Row(label: "sse charset, mixed case", response: proxyResponse(200, [("content-type", "Text/Event-Stream; charset=utf-8")]),
                upstream: .closeDelimited, client: .chunked, eventStream: true, heartbeats: true, keepAlive: true),
            Row(label: "sse heartbeat off", response: proxyResponse(200, [sse]), interval: nil,
                upstream: .closeDelimited, client: .chunked, eventStream: true, heartbeats: false, keepAlive: true),
            Row(label: "sse client not keep-alive", response: proxyResponse(200, [sse]), clientKeepAlive: false,
                upstream: .closeDelimited, client: .chunked, eventStream: true, heartbeats: true, keepAlive: false),
            Row(label: "sse on a 404 is still an event stream", response: proxyResponse(404, [sse], reason: "Not Found"),
                upstream: .closeDelimited, client: .chunked, eventStream: true, heartbeats: true, keepAlive: true),
            // Content-coded event stream: flagged, no heartbeats.
            Row(label: "sse gzip", response: proxyResponse(200, [sse, ("Content-Encoding", "gzip")]),
                upstream: .closeDelimited, client: .chunked, eventStream: true, heartbeats: false, keepAlive: true,
                compressed: true),
            Row(label: "sse gzip chunked, heartbeat off", response: proxyResponse(200, [sse, ("Content-Encoding", "br"), ("Transfer-Encoding", "chunked")]),
                interval: nil,
                upstream: .chunked, client: .chunked, eventStream: true, heartbeats: false, keepAlive: true, compressed: true),
            Row(label: "sse identity coding", response: proxyResponse(200, [sse, ("Content-Encoding", "identity")]),
                upstream: .closeDelimited, client: .chunked, eventStream: true, heartbeats: true, keepAlive: true),
            Row(label: "plain gzip is not a compressed event stream", response: proxyResponse(200, [plain, ("Content-Encoding", "gzip")]),
                upstream: .closeDelimited, client: .chunked, eventStream: false, heartbeats: false, keepAlive: true),
            // No body: HEAD, 204, 304 (and 1xx).
            Row(label: "HEAD sse", response: proxyResponse(200, [sse, ("Content-Length", "10")]), method: "HEAD",
                upstream: .none, client: .none, eventStream: false, heartbeats: false, keepAlive: true),
            Row(label: "HEAD plain chunked", response: proxyResponse(200, [plain, ("Transfer-Encoding", "chunked")]), method: "HEAD",
                upstream: .none, client: .none, eventStream: false, heartbeats: false, keepAlive: true),
            Row(label: "HEAD 1.0", response: proxyResponse(200, [plain]), method: "HEAD", clientVersion: .http10,
                upstream: .none, client: .none, eventStream: false, heartbeats: false, keepAlive: true),
            Row(label: "204 sse", response: proxyResponse(204, [sse], reason: "No Content"),
                upstream: .none, client: .none, eventStream: false, heartbeats: false, keepAlive: true),
            Row(label: "304 with CL", response: proxyResponse(304, [plain, ("Content-Length", "7")], reason: "Not Modified"),
                upstream: .none, client: .none, eventStream: false, heartbeats: false, keepAlive: true),
            Row(label: "304 1.0", response: proxyResponse(304, [], reason: "Not Modified"), clientVersion: .http10,
                upstream: .none, client: .none, eventStream: false, heartbeats: false, keepAlive: true),
            Row(label: "sse CL 0 has no stream", response: proxyResponse(200, [sse, ("Content-Length", "0")]),
                upstream: .contentLength(0), client: .contentLength(0), eventStream: false, heartbeats: false, keepAlive: true),
        ]
    }

    func testResponsePlanTable() throws {
        for row in rows {
            let request = proxyRequest([("Accept", "text/event-stream")], method: row.method, version: row.clientVersion)
            let plan = try responsePlan(row.response, request, keepAlive: row.clientKeepAlive, interval: row.interval).get()
            XCTAssertEqual(plan.upstreamFraming, row.upstream, "\(row.label): upstreamFraming")
            XCTAssertEqual(plan.clientFraming, row.client, "\(row.label): clientFraming")
            XCTAssertEqual(plan.isEventStream, row.eventStream, "\(row.label): isEventStream")
            XCTAssertEqual(plan.heartbeats, row.heartbeats, "\(row.label): heartbeats")
            XCTAssertEqual(plan.keepAlive, row.keepAlive, "\(row.label): keepAlive")
            XCTAssertEqual(plan.isCompressedEventStream, row.compressed, "\(row.label): compressed")
            XCTAssertEqual(plan.clientVersion, row.clientVersion, "\(row.label): clientVersion")
        }
    }

    /// Invariants over the whole table crossed with every client variant.
    func testResponsePlanInvariants() throws {
        for row in rows {
            for version in [HTTPVersion.http10, .http11] {
                for keepAlive in [true, false] {
                    for interval in [TimeSpan?.none, .seconds(1)] {
                        let label = "\(row.label) \(version) keepAlive \(keepAlive) interval \(String(describing: interval))"
                        let request = proxyRequest([], method: row.method, version: version)
                        let plan = try responsePlan(row.response, request, keepAlive: keepAlive, interval: interval).get()
                        if plan.isEventStream {
                            if case .contentLength = plan.clientFraming { XCTFail("\(label): event stream with a length") }
                            XCTAssertEqual(plan.clientFraming, version == .http10 ? .closeDelimited : .chunked, label)
                        }
                        XCTAssertEqual(plan.heartbeats, plan.isEventStream && !plan.isCompressedEventStream && interval != nil, label)
                        if plan.isCompressedEventStream { XCTAssertTrue(plan.isEventStream, label) }
                        if plan.clientFraming == .closeDelimited { XCTAssertFalse(plan.keepAlive, label) }
                        if !keepAlive { XCTAssertFalse(plan.keepAlive, label) }
                        if version == .http10 { XCTAssertNotEqual(plan.clientFraming, .chunked, label) }
                        if plan.upstreamFraming == .none { XCTAssertEqual(plan.clientFraming, .none, label) }
                        if case .contentLength = plan.upstreamFraming, !plan.isEventStream {
                            XCTAssertEqual(plan.clientFraming, plan.upstreamFraming, label)
                        }
                        // The head sent to the client declares exactly the planned framing.
                        let head = HeaderPolicy.clientResponse(row.response, plan: plan)
                        if let reparsed = proxyReparse(head) {
                            let declared = try BodyFraming.response(reparsed, requestMethod: row.method)
                            XCTAssertEqual(declared, plan.clientFraming, "\(label): declared framing")
                        }
                    }
                }
            }
        }
    }

    func testResponseFramingErrorsPropagate() {
        let bad: [ResponseHead] = [
            proxyResponse(200, [("Transfer-Encoding", "chunked"), ("Content-Length", "5")]),
            proxyResponse(200, [("Content-Length", "5"), ("Content-Length", "6")]),
            proxyResponse(200, [("Content-Length", "abc")]),
            proxyResponse(200, [("Transfer-Encoding", "chunked, chunked")]),
            proxyResponse(200, [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked"), ("Content-Length", "5")]),
        ]
        for response in bad {
            switch responsePlan(response, proxyRequest([])) {
            case .failure(.malformed): break
            case let other: XCTFail("\(response.headers.fields): expected malformed, got \(other)")
            }
        }
    }

    /// A response transfer-coded with anything besides chunked (`gzip, chunked`,
    /// or plain `gzip`, close-delimited) carries payload the proxy does not decode.
    /// HeaderPolicy strips the Transfer-Encoding field (hop-by-hop) and re-frames
    /// the still-gzip-coded bytes as if they were identity, so the client gets a
    /// corrupt body with no indication of the coding; for an event stream the
    /// proxy would even splice plain-text heartbeats into gzip data. The proxy
    /// must either refuse such a response (ResponsePlan.make throws -> 502, as
    /// nginx does with "upstream sent unknown Transfer-Encoding") or keep the
    /// coding visible to the client. Either is accepted here.
    func testNonChunkedTransferCodingIsNotSilentlyDropped() {
        let responses = [
            proxyResponse(200, [("Content-Type", "text/plain"), ("Transfer-Encoding", "gzip, chunked")]),
            proxyResponse(200, [("Content-Type", "text/plain"), ("Transfer-Encoding", "gzip")]),
            proxyResponse(200, [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "gzip, chunked")]),
        ]
        for response in responses {
            switch responsePlan(response, proxyRequest([])) {
            case .failure: continue // refused: fine
            case .success(let plan):
                let head = HeaderPolicy.clientResponse(response, plan: plan)
                let codings = head.headers.tokens("Transfer-Encoding") + head.headers.tokens("Content-Encoding")
                XCTAssertTrue(codings.contains("gzip"),
                              "\(response.headers.fields): gzip transfer coding vanished; client head \(head.headers.fields), plan \(plan)")
                XCTAssertFalse(plan.heartbeats, "\(response.headers.fields): heartbeats into coded bytes")
            }
        }
    }
}

final class ProxySwitchingProtocolsPlanTests: XCTestCase {
    private let response = proxyResponse(101, [("Upgrade", "websocket"), ("Connection", "Upgrade")], reason: "Switching Protocols")

    func testSwitchingProtocolsAfterUpgradeRequestIsATunnel() throws {
        let request = proxyRequest([("Upgrade", "websocket"), ("Connection", "Upgrade")])
        let plan = try ResponsePlan.make(response: response, request: request, clientKeepAlive: true,
                                         heartbeatInterval: .seconds(15), upgradeRequested: true)
        XCTAssertTrue(plan.isTunnel)
        XCTAssertEqual(plan.clientFraming, BodyFraming.none)
        XCTAssertFalse(plan.heartbeats)
        XCTAssertFalse(plan.keepAlive, "after a tunnel the connection is not reused for HTTP")
    }

    func testSwitchingProtocolsWithoutUpgradeRequestIsMalformed() {
        XCTAssertThrowsError(try ResponsePlan.make(response: response, request: proxyRequest([]), clientKeepAlive: true,
                                                   heartbeatInterval: nil)) { error in
            guard case HTTPParseError.malformed = error else { return XCTFail("\(error)") }
        }
    }
}

final class ProxyUpstreamReuseTests: XCTestCase {
    private func plan(_ response: ResponseHead, method: String = "GET") throws -> ResponsePlan {
        try ResponsePlan.make(response: response, request: proxyRequest([], method: method), clientKeepAlive: true,
                              heartbeatInterval: nil)
    }

    /// Only a persistent response whose end the proxy can see leaves the upstream connection reusable.
    func testReusableOnlyForPersistentDelimitedResponses() throws {
        XCTAssertTrue(try plan(proxyResponse(200, [("Content-Length", "2")])).upstreamReusable)
        XCTAssertTrue(try plan(proxyResponse(200, [("Transfer-Encoding", "chunked")])).upstreamReusable)
        XCTAssertTrue(try plan(proxyResponse(204, [], reason: "No Content")).upstreamReusable)
        XCTAssertTrue(try plan(proxyResponse(200, [("Content-Length", "2")]), method: "HEAD").upstreamReusable)
        XCTAssertFalse(try plan(proxyResponse(200, [])).upstreamReusable, "close-delimited")
        XCTAssertFalse(try plan(proxyResponse(200, [("Content-Length", "2"), ("Connection", "close")])).upstreamReusable)
        XCTAssertFalse(try plan(proxyResponse(200, [("Content-Length", "2")], version: .http10)).upstreamReusable)
        XCTAssertTrue(try plan(proxyResponse(200, [("Content-Length", "2"), ("Connection", "keep-alive")],
                                             version: .http10)).upstreamReusable)
    }
}

/// Issue 17: what the plan refuses, the one path it routes on and sends, and
/// the fields it drops.
final class RequestPlanHygieneTests: XCTestCase {
    private func make(_ method: String = "GET", _ target: String, _ fields: [(String, String)] = [("Host", "a")],
                      version: HTTPVersion = .http11, token: TokenSettings? = nil,
                      allowUnderscores: Bool = false) throws(HTTPParseError) -> RequestPlan {
        try RequestPlan.make(RequestHead(method: method, target: target, version: version, headers: HTTPHeaders(fields)),
                             token: token, allowUnderscoreHeaders: allowUnderscores)
    }

    func testConnectIsAnsweredBeforeRouting() {
        for target in ["a:443", "/x", "*"] {
            let request = RequestHead(method: "CONNECT", target: target, version: .http11, headers: HTTPHeaders([("Host", "a")]))
            let answer = RequestPlan.answeredByProxy(request)
            XCTAssertEqual(answer?.status, 405)
            XCTAssertEqual(answer?.headers, [ProxyAnswer.Field(name: "Allow", value: "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")])
            XCTAssertEqual(answer.map { String(decoding: $0.page, as: UTF8.self).hasPrefix("HTTP/1.1 405 Method Not Allowed\r\nAllow: ") }, true)
        }
        for method in ["GET", "POST", "OPTIONS", "TRACE", "connect"] {
            XCTAssertNil(RequestPlan.answeredByProxy(RequestHead(method: method, target: "/", version: .http11, headers: HTTPHeaders())))
        }
    }

    func testConnectIsRefusedWhateverItsTarget() {
        for (target, version) in [("a:443", HTTPVersion.http11), ("a:443", .http10), ("/x", .http11), ("http://a/", .http11)] {
            XCTAssertThrowsError(try make("CONNECT", target, [("Host", "a:443")], version: version)) {
                guard case .malformed(let reason) = $0 as? HTTPParseError else { return XCTFail("\($0)") }
                XCTAssertTrue(reason.contains("CONNECT"), reason)
            }
        }
        // other methods are not the proxy's business
        for method in ["GET", "POST", "OPTIONS", "PROPFIND", "connect"] {
            XCTAssertNoThrow(try make(method, "/x"), method)
        }
    }

    func testRoutingPathIsThePathSentUpstream() throws {
        let cases: [(String, String, String)] = [
            ("/%74ok/echo?token=S", "/tok/echo", "/tok/echo?token=S"),
            ("//tok/echo", "/tok/echo", "/tok/echo"),
            ("/x/../tok/echo?a=%2F", "/tok/echo", "/tok/echo?a=%2F"),
            ("/tok/../x?token=S", "/x", "/x?token=S"),
            ("http://a/tok/echo?q", "/tok/echo", "/tok/echo?q"),
        ]
        for (raw, path, sent) in cases {
            let plan = try make("GET", raw)
            XCTAssertEqual(plan.routingPath, path, raw)
            XCTAssertEqual(plan.upstreamHead.target, sent, raw)
        }
    }

    func testTokenIsMovedFromTheNormalisedTarget() throws {
        let plan = try make("GET", "/./tok//echo?a=1&token=S", token: TokenSettings())
        XCTAssertEqual(plan.upstreamHead.target, "/tok/echo?a=1")
        XCTAssertEqual(plan.upstreamHead.headers.values("Authorization"), ["Bearer S"])
    }

    func testUnusableTargetsAre400() {
        for raw in ["/a%2Fb", "/../x", "/a%00", "/%FF", "http://b/x", "*", "a:443", "/a\\b"] {
            XCTAssertThrowsError(try make("GET", raw), raw) {
                guard case .malformed = $0 as? HTTPParseError else { return XCTFail("\(raw): \($0)") }
            }
        }
        XCTAssertNoThrow(try make("OPTIONS", "*"))
    }

    func testAbsoluteFormWithoutHostGetsTheAuthorityAsHost() throws {
        let plan = try make("GET", "http://app:81/x", [], version: .http10)
        XCTAssertEqual(plan.upstreamHead.headers.values("Host"), ["app:81"])
        XCTAssertEqual(plan.upstreamHead.target, "/x")
    }

    func testUnderscoredFieldNamesDroppedUnlessAllowed() throws {
        let fields = [("Host", "a"), ("X_Forwarded_For", "6.6.6.6"), ("X-Forwarded-For", "1.1.1.1"),
                      ("Transfer_Encoding", "chunked"), ("_", "x"), ("Accept", "*/*")]
        var plan = try make("GET", "/x", fields)
        XCTAssertEqual(plan.upstreamHead.headers.fields.map(\.name), ["Host", "X-Forwarded-For", "Accept"])
        XCTAssertEqual(plan.droppedHeaderNames, ["X_Forwarded_For", "Transfer_Encoding", "_"])
        XCTAssertEqual(plan.bodyFraming, .none)

        plan = try make("GET", "/x", fields, allowUnderscores: true)
        XCTAssertEqual(plan.upstreamHead.headers.fields.map(\.name),
                       ["Host", "X_Forwarded_For", "X-Forwarded-For", "Transfer_Encoding", "_", "Accept"])
        XCTAssertEqual(plan.droppedHeaderNames, [])
    }

    func testTokenHeaderWithUnderscoreIsTheProxysOwn() throws {
        let settings = TokenSettings(query: "k", header: "X_Auth", scheme: "")
        let plan = try make("GET", "/x?k=mine", [("Host", "a"), ("X_Auth", "forged")], token: settings)
        XCTAssertEqual(plan.upstreamHead.headers.values("X_Auth"), ["mine"])
    }
}

/// Issue 17 item 5: response heads the proxy sends.
final class ResponseHygieneTests: XCTestCase {
    private func clientHead(_ status: Int, _ fields: [(String, String)], method: String = "GET",
                            version: HTTPVersion = .http11) throws -> ResponseHead {
        let request = RequestHead(method: method, target: "/s", version: version, headers: HTTPHeaders([("Host", "a")]))
        let response = ResponseHead(version: .http11, status: status, reason: "R", headers: HTTPHeaders(fields))
        let plan = try ResponsePlan.make(response: response, request: request, clientKeepAlive: true,
                                         heartbeatInterval: .seconds(15))
        return HeaderPolicy.clientResponse(response, plan: plan)
    }

    func testNoContentLengthOn204() throws {
        for fields in [[("Content-Length", "0")], [("Content-Length", "5")], [("Content-Length", "0"), ("Content-Length", "0")]] {
            let head = try clientHead(204, fields + [("X-A", "1")])
            XCTAssertFalse(head.headers.contains("Content-Length"), "\(fields)")
            XCTAssertEqual(head.headers["X-A"], "1")
        }
        // 304 may state the selected representation's length (RFC 9110 8.6)
        XCTAssertEqual(try clientHead(304, [("Content-Length", "7")]).headers.values("Content-Length"), ["7"])
    }

    func testInterimResponsesLoseContentLengthAndHopByHopFields() {
        let head = ResponseHead(version: .http11, status: 103, reason: "Early Hints",
                                headers: HTTPHeaders([("Link", "</a.css>; rel=preload"), ("Content-Length", "0"),
                                                      ("Connection", "X-Hop"), ("X-Hop", "1")]))
        let out = HeaderPolicy.interimResponse(head)
        XCTAssertEqual(out.headers.fields.map(\.name), ["Link"])
        XCTAssertEqual(out.status, 103)
    }

    func testHeadOfEventStreamGetsTheSameHeadersAsGet() throws {
        for version in [HTTPVersion.http11, .http10] {
            for fields in [[("Content-Type", "text/event-stream"), ("Cache-Control", "private"), ("X-Accel-Buffering", "yes")],
                           [("Content-Type", "text/event-stream; charset=utf-8"), ("Content-Length", "100")],
                           [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked")]] {
                let get = try clientHead(200, fields, method: "GET", version: version)
                let head = try clientHead(200, fields, method: "HEAD", version: version)
                let label = "\(version) \(fields)"
                XCTAssertEqual(head.headers.values("Cache-Control"), ["no-cache, no-transform"], label)
                XCTAssertEqual(head.headers.values("X-Accel-Buffering"), ["no"], label)
                XCTAssertEqual(head.headers.values("Content-Length"), [], label)
                // equal except for Connection (GET to a 1.0 client ends by close)
                let endToEnd = { (h: ResponseHead) in h.headers.fields.filter { $0.name != "Connection" } }
                XCTAssertEqual(endToEnd(head), endToEnd(get), label)
            }
        }
        // a HEAD of something else keeps its headers
        let plain = try clientHead(200, [("Content-Type", "text/plain"), ("Content-Length", "9")], method: "HEAD")
        XCTAssertEqual(plain.headers.values("Content-Length"), ["9"])
        XCTAssertFalse(plain.headers.contains("X-Accel-Buffering"))
    }
}

final class RequestPlanGivenTargetTests: XCTestCase {
    /// The machine parses the target once (for routing) and hands it to the plan: same plan, same refusals.
    func testAPlanGivenTheParsedTargetIsThePlanThatParsesIt() throws {
        let route = try ConfigLoader.parse(yaml: "routes:\n  - path: /\n", file: "t.yaml").routes[0]
        for target in ["/a/./b?x=1", "http://a/p", "/%7Eu", "/a b", "/../x", "*"] {
            let request = RequestHead(method: "GET", target: target, version: .http11, headers: HTTPHeaders([("Host", "a")]))
            let own = Result { () throws(HTTPParseError) in try RequestPlan.make(request, route: route) }
            let given = Result { () throws(HTTPParseError) in
                try RequestPlan.make(request, route: route, target: RequestTarget.parse(request))
            }
            XCTAssertEqual(own, given, target)
        }
    }
}
