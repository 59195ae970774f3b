import XCTest
@testable import SSEKeepalive

/// A `diagnostic: true` route in the exchange machine: answered locally
/// (never forwarded), the script's waits on the connection's timer, the
/// limiter's slot held for exactly the stream's life.
final class DiagnosticRouteMachineTests: XCTestCase {
    static let route = "/.well-known/sse-keepalive/probe"

    func harness() -> ExchangeHarness {
        var config = Config()
        config.routes = [RouteConfig(path: Self.route, heartbeat: config.heartbeat, diagnostic: true)]
        let h = ExchangeHarness(config: config)
        h.start()
        return h
    }

    func request(_ h: ExchangeHarness, _ query: String, method: String = "GET") {
        h.clientSends("\(method) \(Self.route)?\(query) HTTP/1.1\r\nHost: a\r\n\r\n")
    }

    func testScriptRunsToItsEndOnTheTimer() throws {
        let h = harness()
        request(h, "head_wait=100&gap=50&max_size=256&silence_from=100&silence_to=200")
        XCTAssertEqual(h.upstreamConnections.count, 0, "never forwarded")
        XCTAssertEqual(h.diagnosticSlots, 1)
        XCTAssertEqual(h.machine.timer, .diagnostic)
        XCTAssertTrue(h.clientText.hasPrefix("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"))
        XCTAssertFalse(h.clientText.contains("probe-size"), "nothing before head_wait")
        var fired = 0
        while h.fireTimer() && fired < 100 { fired += 1 }
        // head_wait, gap, (gap, silence) x 2; the last fire ends the script.
        XCTAssertEqual(Array(h.timerSpans.suffix(6).map(\.milliseconds)), [100, 50, 50, 100, 50, 200])
        XCTAssertTrue(h.closed)
        XCTAssertEqual(h.diagnosticSlots, 0)
        let responses = try ClientWireReader.read(h.clientWire, tags: h.clientWireTags, methods: ["GET"])
        let body = String(decoding: responses[0].body, as: UTF8.self)
        XCTAssertEqual(body.components(separatedBy: "event: probe-size").count - 1, 2)
        XCTAssertEqual(body.components(separatedBy: "event: probe-silence").count - 1, 2)
        XCTAssertTrue(body.hasSuffix("event: probe-end\nid: 4\ndata: {\"seq\":4,\"at_ms\":550}\n\n"), body)
        XCTAssertFalse(body.contains(":heartbeat"))
        XCTAssertEqual(h.accessLog.map(\.status), [200])
        XCTAssertEqual(h.accessLog.first?.ending, .complete)
        XCTAssertEqual(h.accessLog.first?.route, Self.route)
        XCTAssertNil(h.violation)
    }

    func testClientLeavingFreesTheSlot() {
        let h = harness()
        request(h, "")
        h.fireTimer()
        XCTAssertEqual(h.diagnosticSlots, 1)
        h.clientCloses()
        XCTAssertTrue(h.closed)
        XCTAssertEqual(h.diagnosticSlots, 0)
        XCTAssertEqual(h.accessLog.first?.ending, .clientClosed)
        XCTAssertNil(h.violation)
    }

    func testRefusalsAreErrorPages() {
        let h = harness()
        h.refuseDiagnostic = .refuse(retryAfter: 7)
        request(h, "")
        XCTAssertTrue(h.clientText.hasPrefix("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\n"), h.clientText)
        XCTAssertEqual(h.diagnosticSlots, 0)
        XCTAssertEqual(h.accessLog.map(\.status), [429])
        XCTAssertTrue(h.closed)
        let post = harness()
        request(post, "", method: "POST")
        XCTAssertTrue(post.clientText.hasPrefix("HTTP/1.1 405 Method Not Allowed\r\n"))
        XCTAssertEqual(post.upstreamConnections.count, 0)
        XCTAssertNil(h.violation)
    }

    func testShutdownEndsItCleanly() throws {
        let h = harness()
        request(h, "")
        h.fireTimer()
        h.shutdownGraceOver()
        XCTAssertTrue(h.clientText.hasSuffix("0\r\n\r\n"))
        XCTAssertEqual(h.diagnosticSlots, 0)
        XCTAssertEqual(h.accessLog.first?.ending, .complete)
        XCTAssertNil(h.violation)
    }
}
