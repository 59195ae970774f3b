import XCTest
@testable import SSEKeepalive

/// Shared streams: the fan-out cutter (`SharedStream`), the share key, the
/// `share` config key, and the client side of the exchange machine.
final class SharedStreamTests: XCTestCase {
    static let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"

    /// Feeds `parts` (the first holding the head) and returns the pieces emitted.
    final class Feed {
        let stream: SharedStream
        var pieces: [SharedStream.Piece] = []
        var openedCount = 0
        var now = 0

        init(_ settings: ShareSettings = ShareSettings(), holdLimit: Int = 1024) {
            stream = SharedStream(settings: settings, tag: "t", holdLimit: holdLimit)
        }

        func send(_ text: String) { send(Array(text.utf8)) }

        func send(_ bytes: [UInt8]) {
            bytes.withUnsafeBytes { raw in
                stream.consume(raw, now: now, opened: { self.openedCount += 1 }, emit: { self.pieces.append($0) })
            }
        }

        var text: String { String(decoding: pieces.flatMap(\.bytes), as: UTF8.self) }
        var texts: [String] { pieces.map { String(decoding: $0.bytes, as: UTF8.self) } }
    }

    // MARK: Cutting

    func testOnlyWholeEventsGoOutWhateverTheReadsAre() {
        let f = Feed()
        f.send(Self.head + "data: a")
        XCTAssertEqual(f.stream.phase, .live)
        XCTAssertEqual(f.openedCount, 1)
        XCTAssertEqual(f.pieces, [], "half an event is held")
        f.send("\ndata: b\n")
        XCTAssertEqual(f.pieces, [])
        f.send("\ndata: c\n\nda")
        XCTAssertEqual(f.texts, ["data: a\ndata: b\n\ndata: c\n\n"])
        f.send("ta: d\r\n\r\n")
        XCTAssertEqual(f.texts.last, "data: d\r\n\r\n")
        XCTAssertTrue(f.pieces.allSatisfy(\.atBoundary))
    }

    func testCRLineEndsAndACRLFSplitAcrossReads() {
        let f = Feed()
        f.send(Self.head + "data: a\r\r")
        XCTAssertEqual(f.texts, ["data: a\r\r"], "a bare CR blank line at the end of a read ends the event at once")
        f.send("\ndata: b\r")
        f.send("\n\r\n")
        // The LF after the first CR is the rest of a CRLF, not an empty line: "data: b" is one event,
        // and the LF of its CRLF blank line, in the same read, goes with it.
        XCTAssertEqual(f.texts, ["data: a\r\r", "\ndata: b\r\n\r\n"])
    }

    func testCommentLinesGoOutAtOnceBetweenEvents() {
        let f = Feed()
        f.send(Self.head + ":heartbeat\n")
        XCTAssertEqual(f.texts, [":heartbeat\n"], "a comment at a boundary (blank_line: false) is not held")
        f.send("data: x\n:inside\n")
        XCTAssertEqual(f.pieces.count, 1, "a comment inside an event stays with it")
        f.send("\n")
        XCTAssertEqual(f.texts.last, "data: x\n:inside\n\n")
    }

    func testPreambleIsWhatCameBeforeTheFirstEvent() {
        let f = Feed()
        f.send(Self.head + "retry: 1000\n\n:padding\n\ndata: 1\n\n:later\n\n")
        XCTAssertEqual(String(decoding: f.stream.preamble, as: UTF8.self), "retry: 1000\n\n:padding\n\n")
        XCTAssertTrue(f.stream.preambleSetsRetry)
        let opening = f.stream.opening(lastEventID: nil, now: 0)
        XCTAssertEqual(String(decoding: opening.bytes, as: UTF8.self), "retry: 1000\n\n:padding\n\n")
        XCTAssertEqual(opening.replayed, 0)
    }

    func testALeadingBOMIsDroppedEvenSplit() {
        let f2 = Feed()
        f2.send(Array(Self.head.utf8) + [0xEF])
        f2.send([0xBB])
        f2.send([0xBF] + Array("data: x\n\n".utf8))
        XCTAssertEqual(f2.texts, ["data: x\n\n"])
    }

    // MARK: Replay and ids

    func testReplayGivesTheEventsAfterAKnownID() {
        var settings = ShareSettings()
        settings.replay = ReplayBound(events: 3, age: .seconds(60))
        let f = Feed(settings)
        f.send(Self.head + "id: 1\ndata: a\n\nid: 2\ndata: b\n\n:comment\n\nid: 3\ndata: c\n\n")
        let after1 = f.stream.opening(lastEventID: "1", now: 0)
        XCTAssertEqual(String(decoding: after1.bytes, as: UTF8.self), "id: 2\ndata: b\n\nid: 3\ndata: c\n\n",
                       "comments are not kept")
        XCTAssertEqual(after1.replayed, 2)
        XCTAssertEqual(f.stream.opening(lastEventID: "3", now: 0).replayed, 0)
        let unknown = f.stream.opening(lastEventID: "nope", now: 0)
        XCTAssertTrue(unknown.unknownID)
        XCTAssertEqual(unknown.bytes, [])
        f.send("id: 4\ndata: d\n\n")
        XCTAssertTrue(f.stream.opening(lastEventID: "1", now: 0).unknownID, "only 3 events are kept")
        XCTAssertEqual(f.stream.opening(lastEventID: "2", now: 0).replayed, 2)
        XCTAssertTrue(f.stream.opening(lastEventID: "2", now: 61_000).unknownID, "nor older than the age")
    }

    func testProxyIDsOnlyWhileTheUpstreamSendsNone() {
        var settings = ShareSettings()
        settings.ids = true
        settings.replay = ReplayBound(events: 10, age: .seconds(60))
        let f = Feed(settings)
        f.send(Self.head + "data: a\n\n:c\n\ndata: b\n\n")
        XCTAssertEqual(f.text, "id: t-1\ndata: a\n\n:c\n\nid: t-2\ndata: b\n\n", "comment blocks get no id")
        XCTAssertEqual(f.stream.opening(lastEventID: "t-1", now: 0).replayed, 1)
        f.send("id: 77\ndata: c\n\ndata: d\n\n")
        XCTAssertEqual(f.texts.last, "id: 77\ndata: c\n\ndata: d\n\n", "upstream ids are kept and then the proxy adds none")
    }

    // MARK: Not an event stream, and bounds

    func testANonEventStreamResponseIsHandedOverWhole() {
        let f = Feed()
        f.send("HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nno")
        XCTAssertEqual(f.stream.phase, .passthrough)
        f.send(" entry")
        XCTAssertEqual(f.pieces, [])
        XCTAssertEqual(f.stream.finish().map { String(decoding: $0, as: UTF8.self) },
                       "HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nno entry")
        let big = Feed(holdLimit: 1024)
        big.send("HTTP/1.1 500 Oops\r\nConnection: close\r\n\r\n" + String(repeating: "x", count: 2000))
        XCTAssertNil(big.stream.finish(), "too large to hold: the waiting clients get a 502")
    }

    func testAnEventLargerThanTheHoldLimitGoesOutAsItComes() {
        let f = Feed(holdLimit: 1024)
        f.send(Self.head + "data: small\n\n")
        f.send("data: " + String(repeating: "y", count: 1500))
        XCTAssertEqual(f.pieces.count, 2)
        XCTAssertTrue(f.pieces[1].atBoundary, "its start is at a boundary")
        XCTAssertTrue(f.stream.isMidEvent)
        f.send(String(repeating: "y", count: 10) + "\n\ndata: next\n\n")
        XCTAssertFalse(f.pieces[2].atBoundary, "its rest is not: clients that joined in between skip it")
        XCTAssertFalse(f.stream.isMidEvent)
        f.send("data: after\n\n")
        XCTAssertTrue(f.pieces[3].atBoundary)
    }

    /// The real streams of the corpus, cut at every read size: clients get
    /// exactly the upstream's bytes (BOM aside), and every piece ends where a parser stands at a boundary.
    func testCorpusStreamsSurviveAnyReadSplit() throws {
        for payload in ["data: a\n\nevent: x\ndata: b\r\nid: 9\r\n\r\n: c\ndata: d\rdata: e\r\r", "data:\n\ndata\n\n"] {
            for size in [1, 2, 3, 7, 64] {
                let f = Feed()
                f.send(Self.head)
                let bytes = Array(payload.utf8)
                var i = 0
                while i < bytes.count {
                    f.send(Array(bytes[i..<min(bytes.count, i + size)]))
                    i += size
                }
                XCTAssertEqual(f.text, payload, "read size \(size)")
            }
        }
    }

    // MARK: The share key

    func testTheKeyHoldsTheCredentialsAndTheMovedToken() throws {
        let yaml = """
        routes:
          - path: /feed
            share: true
            token: {}
          - path: /open
            share: {key_headers: []}
        """
        let table = RouteTable(config: try ConfigLoader.parse(yaml: yaml, file: "t.yaml"))
        func key(_ target: String, _ headers: [(String, String)] = []) throws -> ShareKey {
            var fields = HTTPHeaders()
            fields.add("Host", "a")
            for (n, v) in headers { fields.add(n, v) }
            let request = RequestHead(method: "GET", target: target, version: .http11, headers: fields)
            let route = table.route(for: Substring(request.path))
            let plan = try RequestPlan.make(request, route: route.config)
            return ShareKey(route: route, upstreamHead: plan.upstreamHead, settings: route.config.share!)
        }
        XCTAssertEqual(try key("/feed/x"), try key("/feed/./x"), "the normalised path")
        XCTAssertEqual(try key("/feed", [("Authorization", "Bearer a")]), try key("/feed", [("Authorization", "Bearer a")]))
        XCTAssertNotEqual(try key("/feed", [("Authorization", "Bearer a")]), try key("/feed", [("Authorization", "Bearer b")]))
        XCTAssertNotEqual(try key("/feed", [("Cookie", "s=1")]), try key("/feed"))
        XCTAssertNotEqual(try key("/feed?token=a"), try key("/feed?token=b"), "a moved token is a credential")
        XCTAssertEqual(try key("/feed?token=a"), try key("/feed", [("Authorization", "Bearer a")]))
        XCTAssertEqual(try key("/open", [("Authorization", "Bearer a")]), try key("/open", [("Authorization", "Bearer b")]))
    }

    func testTheProxysOwnRequestIsHTTP10WithoutLastEventID() {
        var fields = HTTPHeaders()
        fields.add("Host", "a")
        fields.add("Last-Event-ID", "42")
        fields.add("Connection", "keep-alive")
        let request = RequestHead(method: "GET", target: "/feed", version: .http11, headers: fields)
        let table = RouteTable(config: Config())
        let join = SharedJoin(key: ShareKey(route: table.fallback, upstreamHead: request, settings: ShareSettings()), request: request)
        let text = String(decoding: join.upstreamRequest, as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("GET /feed HTTP/1.0\r\n"))
        XCTAssertFalse(text.contains("Last-Event-ID"))
        XCTAssertFalse(text.contains("keep-alive"))
        XCTAssertEqual(join.lastEventID, "42")
    }

    // MARK: Config

    func testShareConfig() throws {
        let c = try ConfigLoader.parse(yaml: """
        routes:
          - path: /a
            share: true
          - path: /b
            share: {key_headers: [X-Tenant], replay: {events: 5, age: 1m}, ids: true, linger: 2s}
          - path: /c
            share: false
          - path: /d
            share: {replay: off}
        """, file: "t.yaml")
        XCTAssertEqual(c.routes[0].share, ShareSettings())
        var b = ShareSettings()
        b.keyHeaders = ["X-Tenant"]
        b.replay = ReplayBound(events: 5, age: .seconds(60))
        b.ids = true
        b.linger = .seconds(2)
        XCTAssertEqual(c.routes[1].share, b)
        XCTAssertNil(c.routes[2].share)
        XCTAssertNil(c.routes[3].share?.replay)
        let rendered = c.rendered()
        XCTAssertTrue(rendered.contains("key_headers: [\"X-Tenant\"]") || rendered.contains("- \"X-Tenant\"") || rendered.contains("X-Tenant"), rendered)
        XCTAssertTrue(rendered.contains("linger: 2s"), rendered)
        XCTAssertEqual(try ConfigLoader.parse(yaml: c.rendered(), file: "again.yaml").routes.map(\.share), c.routes.map(\.share))
    }

    func testBadShareValues() {
        let cases: [(String, String, String)] = [
            ("share: 3", "routes[0].share", "true or false"),
            ("share: {replay: {events: 0}}", "routes[0].share.replay.events", "out of range"),
            ("share: {replay: {events: -1}}", "routes[0].share.replay.events", "integer"),
            ("share: {linger: forever}", "routes[0].share.linger", "duration"),
            ("share: {key_headers: [\"a b\"]}", "routes[0].share.key_headers[0]", "invalid header name"),
            ("share: {key_headers: Cookie}", "routes[0].share.key_headers", "list"),
            ("share: {idz: true}", "routes[0].share.idz", "did you mean \"ids\""),
        ]
        for (line, key, fragment) in cases {
            do {
                _ = try ConfigLoader.parse(yaml: "routes:\n  - path: /a\n    \(line)\n", file: "bad.yaml")
                XCTFail("\(line) was accepted")
            } catch {
                XCTAssertEqual(error.key, key, "\(line): \(error)")
                XCTAssertTrue(error.message.contains(fragment), "\(line): \(error.message)")
            }
        }
    }
}

/// The client side of a shared stream in the exchange machine, through the in-memory runtime.
final class SharedClientMachineTests: XCTestCase {
    static let upstreamHead = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache, no-transform\r\nX-Accel-Buffering: no\r\nConnection: close\r\n\r\n"

    func config(_ change: (inout RouteConfig) -> Void = { _ in }) -> Config {
        var config = Config()
        config.heartbeat.onOpen = false
        var route = ConfigKeys.route(path: "/feed", inheriting: config)
        route.share = ShareSettings()
        change(&route)
        config.routes = [route]
        return config
    }

    func joined(_ config: Config, request: String = "GET /feed HTTP/1.1\r\nHost: a\r\n\r\n") -> ExchangeHarness {
        let h = ExchangeHarness(config: config)
        h.start()
        h.clientSends(request)
        return h
    }

    func testAGetOnASharedRouteJoinsInsteadOfConnecting() {
        let h = joined(config(), request: "GET /feed HTTP/1.1\r\nHost: a\r\nLast-Event-ID: 7\r\n\r\n")
        XCTAssertEqual(h.sharedJoins.count, 1)
        XCTAssertEqual(h.sharedJoins.first?.lastEventID, "7")
        XCTAssertEqual(h.sharedJoins.first?.key.route, "/feed")
        XCTAssertEqual(h.upstreamConnections.count, 0, "no upstream of its own")
        XCTAssertEqual(h.machine.timer, .none, "the request head clock stopped")
        let post = joined(config(), request: "POST /feed HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
        XCTAssertEqual(post.sharedJoins.count, 0, "only GETs share")
        XCTAssertEqual(post.upstreamConnections.count, 1)
        let other = joined(config(), request: "GET /other HTTP/1.1\r\nHost: a\r\n\r\n")
        XCTAssertEqual(other.sharedJoins.count, 0, "a route without share")
        XCTAssertNil(h.violation)
    }

    func testAJoinerGetsItsHeadTheOpeningThenPieces() throws {
        let h = joined(config { $0.retry = JitteredSpan(base: .seconds(3)) })
        h.sharedStreamOpened(head: Self.upstreamHead, opening: "id: 1\ndata: replayed\n\n", replayed: 1)
        h.sharedPiece("data: live\n\n")
        let responses = try ClientWireReader.read(h.clientWire, tags: h.clientWireTags, methods: ["GET"])
        XCTAssertEqual(responses.count, 1)
        XCTAssertTrue(h.clientText.contains("Transfer-Encoding: chunked"), h.clientText)
        XCTAssertEqual(String(decoding: responses[0].body, as: UTF8.self), "retry: 3000\n\nid: 1\ndata: replayed\n\ndata: live\n\n")
        XCTAssertEqual(h.metrics.streamsOpen["/feed"], 1)
        XCTAssertEqual(h.metrics.sharedClients["/feed"], 1)
        XCTAssertEqual(h.metrics.replayedEvents["/feed"], 1)
        let withRetry = joined(config { $0.retry = JitteredSpan(base: .seconds(3)) })
        withRetry.sharedStreamOpened(head: Self.upstreamHead, opening: "retry: 500\n\n", preambleSetsRetry: true)
        XCTAssertFalse(withRetry.clientText.contains("retry: 3000"), "the upstream's retry wins")
        XCTAssertNil(h.violation)
    }

    func testNothingAfterTheHeadMeansTheFirstComment() throws {
        let h = joined(config { $0.heartbeat.onOpen = true })
        h.sharedStreamOpened(head: Self.upstreamHead)
        XCTAssertTrue(h.clientText.hasSuffix(":heartbeat\n\n\r\n"), h.clientText)
        XCTAssertEqual(h.metrics.heartbeats["/feed"], 1)
    }

    func testAClientThatFallsBehindIsDroppedAtABoundaryAndLeavesOnce() {
        var c = config()
        c.streamBuffer = 64 * 1024
        let h = joined(c)
        h.clientWindow = 0
        h.sharedStreamOpened(head: Self.upstreamHead)
        let event = "data: " + String(repeating: "x", count: 10_000) + "\n\n"
        for _ in 0..<10 where !h.closed { h.sharedPiece(event) }
        XCTAssertTrue(h.closed)
        XCTAssertEqual(h.sharedLeaves, 1)
        XCTAssertEqual(h.metrics.sharedClientsDropped["/feed"], 1)
        XCTAssertEqual(h.metrics.sharedClients["/feed"], 0)
        XCTAssertEqual(h.accessLog.last?.ending, .fellBehind)
        XCTAssertTrue(h.clientOut.count <= 64 * 1024 + event.count + 16, "never more than the buffer and one piece queued")
        XCTAssertNil(h.violation)
    }

    func testAnEventLargerThanTheBufferStillReachesAClientThatKeepsUp() {
        var c = config()
        c.streamBuffer = 4096
        let h = joined(c)
        h.sharedStreamOpened(head: Self.upstreamHead)
        h.sharedPiece("data: " + String(repeating: "z", count: 10_000) + "\n\n")
        XCTAssertFalse(h.closed, "nothing was queued for it: it takes the piece")
        XCTAssertTrue(h.clientText.contains(String(repeating: "z", count: 10_000)))
    }

    func testABOMStartingTheFirstPieceIsNotLeadingForTheJoiner() throws {
        let h = joined(config())
        h.sharedStreamOpened(head: Self.upstreamHead)
        h.sharedPiece("\u{FEFF}data: x\n\n")
        let body = try ClientWireReader.read(h.clientWire, tags: h.clientWireTags, methods: ["GET"]).first?.body ?? []
        XCTAssertEqual(Array(body.prefix(4)), [0x0A, 0xEF, 0xBB, 0xBF], "an empty line first, as the others read it")
        XCTAssertEqual(WHATWGEventParser.parse(body), [], "the BOM is part of a field name for every client")
        // The same when the stream's preamble starts with one (a second BOM after the upstream's leading one).
        let late = joined(config())
        late.sharedStreamOpened(head: Self.upstreamHead, opening: "\u{FEFF}data: x\n\n")
        let lateBody = try ClientWireReader.read(late.clientWire, tags: late.clientWireTags, methods: ["GET"]).first?.body ?? []
        XCTAssertEqual(Array(lateBody.prefix(4)), [0x0A, 0xEF, 0xBB, 0xBF])
        XCTAssertEqual(WHATWGEventParser.parse(lateBody), [])
    }

    func testEachClientCountsTheSharedHeartbeats() {
        let h = joined(config())
        h.sharedStreamOpened(head: Self.upstreamHead)
        h.sharedPiece(":heartbeat\n\n")
        XCTAssertEqual(h.metrics.heartbeats["/feed"], 0, "an upstream comment is not a heartbeat")
        h.machine.sharedPiece(SharedStream.Piece(bytes: Array(":heartbeat\n\n".utf8), atBoundary: true, heartbeats: 1), h)
        XCTAssertEqual(h.metrics.heartbeats["/feed"], 1)
        h.clientCloses()
        XCTAssertEqual(h.accessLog.last?.heartbeats, 1)
    }

    func testClientGoneLeavesTheStream() {
        let h = joined(config())
        h.sharedStreamOpened(head: Self.upstreamHead)
        h.clientCloses()
        XCTAssertEqual(h.sharedLeaves, 1)
        XCTAssertEqual(h.metrics.sharedClients["/feed"], 0)
        XCTAssertEqual(h.metrics.streamsOpen["/feed"], 0)
        let waiting = joined(config())
        waiting.clientCloses()
        XCTAssertEqual(waiting.sharedLeaves, 1, "a client waiting for the head leaves too")
        XCTAssertNil(waiting.metrics.sharedClients["/feed"], "it never counted as a shared client")
    }

    func testSkipsToTheNextBoundaryWhenJoinedMidEvent() {
        let h = joined(config())
        h.sharedStreamOpened(head: Self.upstreamHead)
        h.machine.sharedJoinedMidEvent(h)
        h.sharedPiece("rest of a big event\n\ndata: next\n\n", atBoundary: false)
        h.sharedPiece("data: whole\n\n")
        XCTAssertFalse(h.clientText.contains("rest of"))
        XCTAssertTrue(h.clientText.contains("data: whole"))
    }

    func testTheStreamEndingEndsEveryClientAndErrorsReachWaitingOnes() throws {
        let h = joined(config())
        h.sharedStreamOpened(head: Self.upstreamHead)
        h.sharedPiece("data: 1\n\n")
        h.sharedStreamEnded()
        XCTAssertTrue(h.closed)
        XCTAssertTrue(h.clientText.hasSuffix("0\r\n\r\n"), "a proper end of the chunked body")
        XCTAssertEqual(h.accessLog.last?.ending, .complete)
        let denied = joined(config())
        denied.sharedStreamAnswered("HTTP/1.1 401 Unauthorized\r\nConnection: close\r\n\r\nno")
        XCTAssertTrue(denied.clientText.hasPrefix("HTTP/1.1 401 Unauthorized"))
        XCTAssertEqual(denied.accessLog.last?.status, 401)
        let tooBig = joined(config())
        tooBig.sharedStreamAnswered(nil)
        XCTAssertTrue(tooBig.clientText.hasPrefix("HTTP/1.1 502"))
        XCTAssertEqual(tooBig.sharedLeaves, 1)
    }

    func testShutdownEndsEachClientWithinTheGrace() {
        let h = joined(config { $0.retry = JitteredSpan(base: .seconds(2)) })
        h.sharedStreamOpened(head: Self.upstreamHead)
        h.drain()
        XCTAssertEqual(h.machine.timer, .streamEnd)
        h.advance(Config().shutdownGrace.milliseconds)
        h.fireTimer()
        XCTAssertTrue(h.closed)
        XCTAssertEqual(h.accessLog.last?.ending, .shutdown)
        XCTAssertEqual(h.clientText.components(separatedBy: "retry: 2000").count, 3, "a retry hint at open and at the end")
        XCTAssertEqual(h.sharedLeaves, 1)
        let late = ExchangeHarness(config: config())
        late.start()
        late.drain()
        XCTAssertTrue(late.closed, "an idle connection closes at drain")
    }
}
