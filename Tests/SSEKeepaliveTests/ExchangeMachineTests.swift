import XCTest
@testable import SSEKeepalive

/// The exchange machine's lifecycle, driven through the in-memory runtime:
/// each test feeds inputs and checks the actions (bytes, timers, pool,
/// logs, metrics, access log) that come out.
final class ExchangeMachineTests: XCTestCase {
    static let streamHead = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"

    /// Heartbeats every `interval`, no first comment at open (tests of that set it themselves).
    func config(interval: TimeSpan? = .seconds(10), _ change: (inout Config) -> Void = { _ in }) -> Config {
        var config = Config()
        config.heartbeat.interval = interval
        config.heartbeat.onOpen = false
        change(&config)
        return config
    }

    /// A client with an open event stream (close-delimited upstream, chunked to the client).
    func openStream(_ config: Config) -> ExchangeHarness {
        let h = ExchangeHarness(config: config)
        h.start()
        h.clientSends("GET /events HTTP/1.1\r\nHost: a\r\n\r\n")
        h.upstreamConnects()
        h.upstreamSends(Self.streamHead)
        return h
    }

    func body(_ h: ExchangeHarness, method: String = "GET") -> String {
        guard let responses = try? ClientWireReader.read(h.clientWire, tags: h.clientWireTags, methods: [method]),
              let last = responses.last else { return "<unreadable>" }
        return String(decoding: last.body, as: UTF8.self)
    }

    func assertClean(_ h: ExchangeHarness, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNil(h.violation, file: file, line: line)
    }

    // MARK: Plain exchanges

    func testRequestGoesUpstreamAndResponseComesBackThenKeepAlive() {
        let h = ExchangeHarness()
        h.start()
        XCTAssertEqual(h.timerSpans.last, Config().clientHeaderTimeout)
        h.clientSends("GET /x?a=1 HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
        XCTAssertEqual(h.upstreamConnections.count, 1)
        XCTAssertEqual(h.machine.timer, .connect)
        h.upstreamConnects()
        XCTAssertTrue(h.upstreamText().hasPrefix("GET /x?a=1 HTTP/1.1\r\n"))
        XCTAssertEqual(h.machine.timer, .response)
        h.upstreamSends("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        XCTAssertTrue(h.clientText.hasSuffix("\r\n\r\nhello"))
        XCTAssertEqual(h.givenToPool, 1, "a response read to its end frees the upstream for reuse")
        XCTAssertEqual(h.machine.timer, .keepAlive)
        guard case .awaitingRequest = h.machine.state else { return XCTFail("\(h.machine.state)") }
        XCTAssertEqual(h.accessLog.map(\.status), [200])
        XCTAssertEqual(h.accessLog.first?.ending, .complete)
        XCTAssertEqual(h.metrics.requests[RouteCode(route: "default", code: 200)], 1)
        h.fireTimer()
        XCTAssertTrue(h.closed, "an idle keep-alive connection closes when its clock runs out")
        assertClean(h)
    }

    func testChunkedRequestBodyIsReframedAndTheResponseClockWaitsForIt() {
        let h = ExchangeHarness()
        h.start()
        h.clientSends("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        h.upstreamConnects()
        XCTAssertEqual(h.machine.timer, .none, "no response clock while the body is still coming")
        h.clientSends("2;ext=1\r\nde\r\n0\r\n\r\n")
        XCTAssertTrue(h.upstreamText().hasSuffix("\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), h.upstreamText())
        XCTAssertEqual(h.machine.timer, .response)
        assertClean(h)
    }

    func testMalformedRequestBodyGets400() {
        let h = ExchangeHarness()
        h.start()
        h.clientSends("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        XCTAssertTrue(h.clientText.hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        XCTAssertEqual(h.upstream, .none)
        assertClean(h)
    }

    func testMalformedRequestHeadIsRefusedAndTheAccessLogCountsThePage() {
        let h = ExchangeHarness()
        h.start()
        h.clientSends("GET / HTTP/1.1\r\nBad Header\r\n\r\n")
        XCTAssertTrue(h.clientText.hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        XCTAssertEqual(h.upstreamConnections.count, 0, "nothing reaches the upstream")
        XCTAssertEqual(h.accessLog.first?.bytesSent, h.clientWire.count)
        XCTAssertEqual(h.accessLog.first?.status, 400)
        XCTAssertTrue(h.closed)
        assertClean(h)
    }

    func testOneXXThenTwoHundred() {
        let h = ExchangeHarness()
        h.start()
        h.clientSends("POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        h.upstreamConnects()
        h.upstreamSends("HTTP/1.1 100 Continue\r\n\r\n")
        XCTAssertEqual(h.clientText, "HTTP/1.1 100 Continue\r\n\r\n", "interim responses go to HTTP/1.1 clients")
        h.clientSends("ok")
        h.upstreamSends("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\ny")
        let responses = try? ClientWireReader.read(h.clientWire, tags: h.clientWireTags, methods: ["POST"])
        XCTAssertEqual(responses?.map(\.head.status), [100, 103, 200])
        XCTAssertEqual(h.accessLog.map(\.status), [200])

        // HTTP/1.0 clients get no interim response.
        let old = ExchangeHarness()
        old.start()
        old.clientSends("GET / HTTP/1.0\r\n\r\n")
        old.upstreamConnects()
        old.upstreamSends("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz")
        XCTAssertTrue(old.clientText.hasPrefix("HTTP/1.1 200 OK\r\n"), old.clientText)
        assertClean(h)
        assertClean(old)
    }

    func testPipelinedRequestsAreAnsweredInOrderOneUpstreamRequestAtATime() {
        let h = ExchangeHarness()
        h.poolIdle = 0
        h.start()
        h.clientSends("GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
        XCTAssertEqual(h.upstreamConnections.count, 1, "the second request waits for the first response")
        h.upstreamConnects()
        XCTAssertFalse(h.upstreamText(0).contains("GET /2"))
        h.upstreamSends("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none")
        // The first response freed its upstream to the pool; the machine asked for a pooled one.
        XCTAssertEqual(h.upstreamConnections.count, 2)
        h.upstreamConnects()
        XCTAssertTrue(h.upstreamText(1).hasPrefix("GET /2 HTTP/1.1\r\n"))
        h.upstreamSends("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")
        let responses = try? ClientWireReader.read(h.clientWire, tags: h.clientWireTags, methods: ["GET", "GET"])
        XCTAssertEqual(responses?.map { String(decoding: $0.body, as: UTF8.self) }, ["one", "two"])
        XCTAssertEqual(h.accessLog.map(\.target), ["/1", "/2"])
        assertClean(h)
    }

    func testPipelinedBytesAreBounded() {
        let h = ExchangeHarness()
        h.start()
        h.clientSends("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        h.upstreamConnects()
        h.clientSends(Array(repeating: UInt8(ascii: "G"), count: 70_000))
        XCTAssertEqual(h.reading[.client], false, "a client cannot pile up unbounded pipelined bytes")
        assertClean(h)
    }

    // MARK: Upstream failures

    func testStalePooledUpstreamIsRetriedOnceOnANewConnection() {
        let h = ExchangeHarness()
        h.poolIdle = 1
        h.start()
        h.clientSends("GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
        XCTAssertEqual(h.upstreamConnections.first?.pooled, true)
        XCTAssertTrue(h.upstreamText(0).hasPrefix("GET /a "))
        h.upstreamFails(.vanished(errno: 104))
        XCTAssertEqual(h.upstreamConnections.count, 2, "one retry on a new connection")
        XCTAssertEqual(h.upstreamConnections.last?.pooled, false)
        XCTAssertTrue(h.logged(.debug).contains(.staleUpstreamRetried))
        h.upstreamConnects()
        XCTAssertTrue(h.upstreamText(1).hasPrefix("GET /a "), "the same head again")
        // The fresh connection fails too: no second retry, a 502.
        h.upstreamFails(.eof)
        XCTAssertEqual(h.upstreamConnections.count, 2)
        XCTAssertTrue(h.clientText.hasPrefix("HTTP/1.1 502 Bad Gateway\r\n"), h.clientText)
        XCTAssertEqual(h.accessLog.first?.ending, .upstreamClosed)
        assertClean(h)
    }

    func testRequestWithABodyIsNotRetried() {
        let h = ExchangeHarness()
        h.poolIdle = 1
        h.start()
        h.clientSends("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx")
        h.upstreamFails(.vanished(errno: 104))
        XCTAssertEqual(h.upstreamConnections.count, 1)
        XCTAssertTrue(h.clientText.hasPrefix("HTTP/1.1 502 "))
        assertClean(h)
    }

    func testUnreachableUpstreamGets502NamingIt() {
        let h = ExchangeHarness()
        h.connectFailure = 111
        h.start()
        h.clientSends("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        XCTAssertTrue(h.clientText.hasPrefix("HTTP/1.1 502 Bad Gateway\r\n"))
        XCTAssertTrue(h.clientText.contains("upstream 127.0.0.1:3000 unreachable: errno 111"), h.clientText)
        XCTAssertEqual(h.logged(.error), [.upstreamUnreachable(.inet(host: "127.0.0.1", port: 3000), errno: 111)])
        XCTAssertEqual(h.metrics.upstreamErrors[RouteUpstreamError(route: "default", kind: .connect)], 1)
        assertClean(h)
    }

    /// Found by the `exchange` fuzzer: a connect that fails after starting must release its socket.
    func testConnectThatFailsLaterGets502AndReleasesTheSocket() {
        let h = ExchangeHarness()
        h.start()
        h.clientSends("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        h.upstreamFails(.failed(errno: 111))
        XCTAssertTrue(h.clientText.hasPrefix("HTTP/1.1 502 Bad Gateway\r\n"))
        XCTAssertTrue(h.actions.contains(.releaseUpstream(pool: nil)))
        XCTAssertEqual(h.upstream, .none)
        assertClean(h)
    }

    func testSilentUpstreamGets504() {
        let h = ExchangeHarness()
        h.start()
        h.clientSends("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        h.fireTimer()
        XCTAssertTrue(h.clientText.hasPrefix("HTTP/1.1 504 Gateway Timeout\r\n"))
        XCTAssertTrue(h.clientText.contains("did not accept the connection within 5s"))
        XCTAssertTrue(h.actions.contains(.upstreamConnectTimedOut), "the address is reported as failing")

        let r = ExchangeHarness()
        r.start()
        r.clientSends("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        r.upstreamConnects()
        r.fireTimer()
        XCTAssertTrue(r.clientText.contains("sent no response within 1m"), r.clientText)
        XCTAssertEqual(r.accessLog.first?.ending, .timeout)

        // On a pooled connection there is no connect: the response clock starts at once.
        let p = ExchangeHarness()
        p.poolIdle = 1
        p.start()
        p.clientSends("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        XCTAssertEqual(p.machine.timer, .response)
        p.fireTimer()
        XCTAssertTrue(p.clientText.hasPrefix("HTTP/1.1 504 Gateway Timeout\r\n"))
        assertClean(h)
        assertClean(r)
        assertClean(p)
    }

    func testUpstreamClosesMidEventCutsTheStream() {
        let h = openStream(config())
        h.upstreamSends("data: complete\n\ndata: half")
        h.upstreamFails(.vanished(errno: 104))
        XCTAssertTrue(h.closed)
        XCTAssertFalse(h.clientText.hasSuffix("0\r\n\r\n"), "no final chunk: the client sees the truncation")
        XCTAssertEqual(h.accessLog.first?.ending, .upstreamClosed)
        XCTAssertEqual(h.metrics.streamsOpen["default"], 0)
        XCTAssertEqual(h.metrics.upstreamErrors[RouteUpstreamError(route: "default", kind: .reset)], 1)
        assertClean(h)
    }

    func testCloseDelimitedStreamEndsCleanlyAtUpstreamEOF() {
        let h = openStream(config())
        h.upstreamSends("data: x\n\n")
        h.upstreamCloses()
        XCTAssertEqual(body(h), "data: x\n\n")
        XCTAssertTrue(h.clientText.hasSuffix("0\r\n\r\n"))
        XCTAssertEqual(h.accessLog.first?.ending, .complete)
        assertClean(h)
    }

    func testClientClosesMidResponse() {
        let h = openStream(config())
        h.upstreamSends("data: x\n\n")
        h.clientFails(.vanished(errno: 104))
        XCTAssertTrue(h.closed)
        XCTAssertEqual(h.upstream, .none)
        XCTAssertEqual(h.logged(.debug).last, .disconnected(.client, .vanished(errno: 104)), "a reset is quiet")
        XCTAssertEqual(h.accessLog.first?.ending, .clientClosed)
        XCTAssertEqual(h.metrics.clientDisconnects[.reset], 1)

        let before = ExchangeHarness()
        before.start()
        before.clientSends("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        before.clientCloses()
        XCTAssertEqual(before.accessLog.first?.status, 499, "the client left before any response head")
        assertClean(h)
        assertClean(before)
    }

    // MARK: Backpressure

    func testSlowClientPausesTheUpstreamAndResumesWhenItDrains() {
        let h = openStream(config { $0.streamBuffer = 1024 })
        h.clientWindow = 0
        h.upstreamSends(Array(repeating: UInt8(ascii: "a"), count: 2000))
        XCTAssertEqual(h.reading[.upstream], false, "stream_buffer reached: the upstream is paused")
        XCTAssertEqual(h.machine.timer, .drain)
        h.clientReads()
        XCTAssertEqual(h.reading[.upstream], true)
        XCTAssertEqual(h.machine.timer, .heartbeat, "back on the heartbeat clock")
        assertClean(h)
    }

    func testClientThatReadsNothingIsClosedAfterTheDrainClock() {
        let h = openStream(config { $0.streamBuffer = 1024 })
        h.clientWindow = 0
        h.upstreamSends(Array(repeating: UInt8(ascii: "a"), count: 2000))
        h.kernelQueue = 100
        h.fireTimer()
        XCTAssertTrue(h.closed)
        XCTAssertEqual(h.accessLog.first?.ending, .timeout)
        XCTAssertEqual(h.metrics.clientDisconnects[.timeout], 1)

        // A client that reads slowly keeps its stream.
        let slow = openStream(config { $0.streamBuffer = 1024 })
        slow.clientWindow = 0
        slow.upstreamSends(Array(repeating: UInt8(ascii: "a"), count: 2000))
        slow.clientWindow = 10
        slow.clientReads(0)
        slow.fireTimer()
        XCTAssertFalse(slow.closed)
        XCTAssertEqual(slow.machine.timer, .drain)
        assertClean(h)
        assertClean(slow)
    }

    // MARK: Heartbeats and reload

    func testHeartbeatAtBoundaryAndDeferredMidLine() {
        let h = openStream(config())
        XCTAssertEqual(h.machine.timer, .heartbeat)
        h.fireTimer()
        XCTAssertEqual(body(h), ":heartbeat\n\n")
        h.upstreamSends("data: par")
        h.fireTimer()
        XCTAssertEqual(body(h), ":heartbeat\n\ndata: par", "never mid-line")
        XCTAssertFalse(h.timerArmed, "waits for the next upstream write")
        h.upstreamSends("tial\n")
        h.fireTimer()
        XCTAssertEqual(body(h), ":heartbeat\n\ndata: partial\n:heartbeat\n")
        XCTAssertEqual(h.metrics.heartbeats["default"], 2)
        assertClean(h)
    }

    /// Due at last write + interval: a reload just before that keeps the heartbeat where it was.
    func testReloadJustBeforeDueDoesNotPushTheHeartbeatBack() {
        let h = openStream(config(interval: .seconds(10)))
        h.advance(9_500)
        h.reload(config(interval: .seconds(10)))
        XCTAssertEqual(h.timerDeadline, 10_000)
        h.fireTimer()
        XCTAssertEqual(body(h), ":heartbeat\n\n")
        XCTAssertEqual(h.clock, 10_000)
        assertClean(h)
    }

    func testReloadsMoreOftenThanTheIntervalDoNotStarveTheStream() {
        let h = openStream(config(interval: .seconds(10)))
        var longestSilence = 0
        var lastWrite = 0
        var written = h.clientWire.count
        for _ in 0..<40 {
            // A reload every 0.8 x interval; the timer fires whenever it comes due before the next one.
            let next = h.clock + 8_000
            while let deadline = h.timerDeadline, deadline <= next {
                h.fireTimer()
                if h.clientWire.count > written {
                    longestSilence = max(longestSilence, h.clock - lastWrite)
                    lastWrite = h.clock
                    written = h.clientWire.count
                }
            }
            h.clock = next
            h.reload(config(interval: .seconds(10)))
        }
        XCTAssertEqual(h.metrics.heartbeats["default"], 32, "320 s at 10 s: one heartbeat every interval")
        XCTAssertLessThanOrEqual(longestSilence, 10_000)
        assertClean(h)
    }

    func testReloadToAShorterIntervalWhenAlreadyIdleLongerSendsAtOnce() {
        let h = openStream(config(interval: .seconds(30)))
        h.advance(12_000)
        h.reload(config(interval: .seconds(5)))
        XCTAssertEqual(h.timerDeadline, 12_000, "overdue under the new interval: due now")
        h.fireTimer()
        XCTAssertEqual(body(h), ":heartbeat\n\n")
        XCTAssertEqual(h.timerDeadline, 17_000, "then every new interval")

        // A longer interval: due at last write + the new interval.
        let l = openStream(config(interval: .seconds(5)))
        l.advance(3_000)
        l.reload(config(interval: .seconds(20)))
        XCTAssertEqual(l.timerDeadline, 20_000)
        assertClean(h)
        assertClean(l)
    }

    func testReloadTurningHeartbeatsOnMidLineWaitsForASafePoint() {
        let h = openStream(config(interval: nil))
        XCTAssertFalse(h.timerArmed)
        h.upstreamSends("data: x")
        h.advance(60_000)
        h.reload(config(interval: .seconds(10)))
        h.fireTimer()
        XCTAssertEqual(body(h), "data: x", "the cursor followed the stream while heartbeats were off")
        h.upstreamSends("\n\n")
        h.fireTimer()
        XCTAssertEqual(body(h), "data: x\n\n:heartbeat\n\n")
        assertClean(h)
    }

    func testReloadTurningHeartbeatsOff() {
        let h = openStream(config(interval: .seconds(10)))
        h.reload(config(interval: nil))
        XCTAssertFalse(h.timerArmed)
        h.upstreamSends("data: x\n\n")
        XCTAssertFalse(h.timerArmed)
        assertClean(h)
    }

    // MARK: First bytes at open, retry hints, stream lifetimes

    func testFirstCommentAtOpenWhenTheHeadCameAlone() {
        let h = openStream(config { $0.heartbeat.onOpen = true })
        XCTAssertEqual(body(h), ":heartbeat\n\n", "at once, with the head")
        XCTAssertEqual(h.metrics.heartbeats["default"], 1)
        XCTAssertEqual(h.timerDeadline, 10_000, "the interval counts from that write")

        // Payload with the head: no comment needed.
        let busy = ExchangeHarness(config: config { $0.heartbeat.onOpen = true })
        busy.start()
        busy.clientSends("GET /e HTTP/1.1\r\nHost: a\r\n\r\n")
        busy.upstreamConnects()
        busy.upstreamSends(Self.streamHead + "data: now\n\n")
        XCTAssertEqual(body(busy), "data: now\n\n")
        assertClean(h)
        assertClean(busy)
    }

    func testFirstCommentPaddedAndTheLeadingBOMDroppedAfterIt() {
        let h = openStream(config {
            $0.heartbeat.onOpen = true
            $0.heartbeat.padding = 2048
        })
        let first = body(h)
        XCTAssertEqual(first.utf8.count, 2048)
        XCTAssertTrue(first.hasPrefix(":heartbeat ") && first.hasSuffix(" \n\n"))
        h.upstreamSends(LeadingBOM.bytes + Array("data: x\n\n".utf8))
        let payload = body(h).utf8.dropFirst(2048)
        XCTAssertEqual(String(decoding: payload, as: UTF8.self), "data: x\n\n", "the BOM no longer leads: dropped")
        XCTAssertEqual(WHATWGEventParser.parse(Array(body(h).utf8)).map(\.data), ["x"])
        assertClean(h)
    }

    func testRetryHintAtOpenUnlessTheUpstreamSetsOne() {
        let h = openStream(config { $0.retry = JitteredSpan(base: .seconds(2), jitter: .seconds(2)) })
        let hint = body(h)
        XCTAssertTrue(hint.hasPrefix("retry: ") && hint.hasSuffix("\n\n"), hint)
        let ms = Int(hint.dropFirst(7).dropLast(2)) ?? -1
        XCTAssertTrue((2000...4000).contains(ms), hint)
        XCTAssertEqual(WHATWGEventParser.parseAll(Array(hint.utf8)).events, [], "a retry line dispatches no event")

        let own = ExchangeHarness(config: config { $0.retry = JitteredSpan(base: .seconds(2)) })
        own.start()
        own.clientSends("GET /e HTTP/1.1\r\nHost: a\r\n\r\n")
        own.upstreamConnects()
        own.upstreamSends(Self.streamHead + "retry: 500\n\n")
        XCTAssertEqual(body(own), "retry: 500\n\n", "the upstream's own retry is not overridden")
        assertClean(h)
        assertClean(own)
    }

    func testRetryValuesSpreadOverTheJitter() {
        var values: Set<Int> = []
        for i in 0..<100 {
            let h = ExchangeHarness(config: config { $0.retry = JitteredSpan(base: .seconds(2), jitter: .seconds(2)) })
            h.rng = FuzzRNG(seed: UInt64(i))
            h.start()
            h.clientSends("GET /e HTTP/1.1\r\nHost: a\r\n\r\n")
            h.upstreamConnects()
            h.upstreamSends(Self.streamHead)
            values.insert(Int(body(h).dropFirst(7).dropLast(2)) ?? -1)
        }
        XCTAssertTrue(values.allSatisfy { (2000...4000).contains($0) }, "\(values.sorted())")
        XCTAssertGreaterThan(values.count, 80, "drawn per stream")
    }

    func testMaxStreamDurationEndsAtAnEventBoundary() {
        let h = openStream(config { $0.maxStreamDuration = JitteredSpan(base: .seconds(20), jitter: .seconds(10)) })
        XCTAssertEqual(h.machine.timer, .heartbeat, "the end is further away than the next heartbeat")
        h.upstreamSends("data: a\n\n")
        var rounds = 0
        while !h.closed && rounds < 100 {
            rounds += 1
            if h.machine.timer == .streamEnd { XCTAssertTrue((20_000...30_000).contains(h.timerDeadline ?? 0)) }
            h.fireTimer()
        }
        XCTAssertTrue(h.closed)
        XCTAssertTrue((20_000...30_000).contains(h.clock), "ended at \(h.clock)")
        XCTAssertTrue(body(h).hasSuffix("\n\n"), "at an event boundary")
        XCTAssertTrue(h.clientText.hasSuffix("0\r\n\r\n"), "with a clean end of body")
        XCTAssertEqual(h.accessLog.first?.ending, .maxDuration)
        XCTAssertEqual(h.metrics.streamsEnded[RouteEnding(route: "default", reason: "max_duration")], 1)
        assertClean(h)
    }

    func testDeferredHeartbeatsAreCounted() {
        let mid = openStream(config())
        mid.upstreamSends("data: x")
        mid.fireTimer()
        XCTAssertEqual(mid.metrics.heartbeatsDeferred["default"], 1)
        XCTAssertEqual(mid.logged(.debug).last, .heartbeatDeferred(route: "default", idle: .seconds(10)))

        let boundary = openStream(config())
        boundary.upstreamSends("data: x\n\n")
        boundary.fireTimer()
        XCTAssertEqual(boundary.metrics.heartbeatsDeferred["default"], 0)
        XCTAssertEqual(boundary.metrics.heartbeats["default"], 1)
        assertClean(mid)
        assertClean(boundary)
    }

    // MARK: Shutdown

    func testShutdownEndsAStreamAtItsEndTimeAtAnEventBoundary() {
        let h = openStream(config { $0.shutdownGrace = .seconds(5) })
        h.upstreamSends("data: x\n\n")
        h.drain()
        XCTAssertFalse(h.closed, "an open stream runs until its own end time")
        XCTAssertEqual(h.machine.timer, .streamEnd)
        let end = try? XCTUnwrap(h.timerDeadline)
        XCTAssertLessThanOrEqual(end ?? .max, 5_000, "within the grace")
        h.fireTimer()
        XCTAssertTrue(h.clientText.hasSuffix("data: x\n\n\r\n0\r\n\r\n"), h.clientText)
        XCTAssertTrue(h.closed)
        XCTAssertEqual(h.accessLog.first?.ending, .shutdown)
        XCTAssertEqual(h.metrics.streamsEnded[RouteEnding(route: "default", reason: "shutdown")], 1)
        assertClean(h)
    }

    func testShutdownWaitsForTheEventToEndAndCutsItWhenTheGraceIsOver() {
        let h = openStream(config { $0.shutdownGrace = .seconds(5) })
        h.upstreamSends("data: half")
        h.drain()
        h.fireTimer()
        XCTAssertFalse(h.closed, "mid-event: wait for the boundary")
        // The end comes at the first write that leaves the stream at an event boundary.
        h.upstreamSends(" done\n\ndata: next")
        XCTAssertFalse(h.closed)
        h.upstreamSends("\n\n")
        XCTAssertTrue(h.closed, "ended right after an event completed")
        XCTAssertEqual(body(h), "data: half done\n\ndata: next\n\n")

        let stuck = openStream(config { $0.shutdownGrace = .seconds(5) })
        stuck.upstreamSends("data: half")
        stuck.drain()
        stuck.fireTimer()
        stuck.shutdownGraceOver()
        XCTAssertTrue(stuck.closed, "an upstream stalled mid-event is cut when the grace is over")
        XCTAssertEqual(stuck.accessLog.first?.ending, .shutdown)
        assertClean(h)
        assertClean(stuck)
    }

    func testShutdownEndTimesSpreadOverTheGrace() {
        var ends: [Int] = []
        for i in 0..<200 {
            let h = openStream(config { $0.shutdownGrace = .seconds(5) })
            h.rng = FuzzRNG(seed: UInt64(i))
            h.drain()
            ends.append(h.timerDeadline ?? -1)
        }
        XCTAssertTrue(ends.allSatisfy { (0...5_000).contains($0) }, "\(ends)")
        let buckets = Set(ends.map { $0 / 500 })
        XCTAssertGreaterThanOrEqual(buckets.count, 9, "end times spread over the grace, not one instant: \(buckets.sorted())")
    }

    func testDrainClosesIdleConnectionsAndEndsKeepAlive() {
        let idle = ExchangeHarness()
        idle.start()
        idle.drain()
        XCTAssertTrue(idle.closed)

        let busy = ExchangeHarness()
        busy.start()
        busy.clientSends("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        busy.upstreamConnects()
        busy.drain()
        busy.upstreamSends("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx")
        XCTAssertTrue(busy.closed, "no keep-alive while draining")
        XCTAssertEqual(busy.givenToPool, 0)
        assertClean(idle)
        assertClean(busy)
    }

    // MARK: Tunnel

    func testUpgradeTunnelsBothWaysAndHalfClosesInTurn() {
        let h = ExchangeHarness()
        h.start()
        h.clientSends("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
        h.upstreamConnects()
        XCTAssertTrue(h.upstreamText().contains("Upgrade: websocket"))
        h.upstreamSends("HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nfrom-up")
        guard case .tunneling = h.machine.state else { return XCTFail("\(h.machine.state)") }
        h.clientSends("from-client")
        XCTAssertTrue(h.clientText.hasSuffix("from-up"))
        XCTAssertTrue(h.upstreamText().hasSuffix("from-client"))
        h.clientCloses()
        XCTAssertEqual(Set(h.shutdownWrites), [.upstream], "the client's EOF is passed on")
        XCTAssertFalse(h.closed)
        h.upstreamSends("more")
        XCTAssertTrue(h.clientText.hasSuffix("more"))
        h.upstreamCloses()
        XCTAssertTrue(h.closed)
        XCTAssertEqual(h.accessLog.first?.ending, .complete)
        assertClean(h)
    }

    func testOneHundredOneWithoutAnUpgradeRequestIs502() {
        let h = ExchangeHarness()
        h.start()
        h.clientSends("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        h.upstreamConnects()
        h.upstreamSends("HTTP/1.1 101 Switching Protocols\r\n\r\n")
        XCTAssertTrue(h.clientText.hasPrefix("HTTP/1.1 502 "))
        assertClean(h)
    }

    // MARK: Limits

    func testRejectedConnectionGets503AndCloses() {
        let h = ExchangeHarness()
        h.machine.reject(status: 503, reason: "too many connections", h)
        h.clientReads()
        XCTAssertTrue(h.clientText.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"))
        XCTAssertTrue(h.closed)
        XCTAssertEqual(h.logged(.warning), [.refused(reason: "too many connections")])
        assertClean(h)
    }

    func testSlowlorisGets408() {
        let h = ExchangeHarness()
        h.start()
        h.clientSends("GET / HTTP/1.1\r\nHo")
        h.fireTimer()
        XCTAssertTrue(h.clientText.hasPrefix("HTTP/1.1 408 "))
        let silent = ExchangeHarness()
        silent.start()
        silent.fireTimer()
        XCTAssertTrue(silent.closed)
        XCTAssertTrue(silent.clientWire.isEmpty, "a connection that sent nothing just closes")
        assertClean(h)
        assertClean(silent)
    }
}
