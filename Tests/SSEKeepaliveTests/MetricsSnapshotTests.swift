import XCTest
@testable import SSEKeepalive

final class MetricsSnapshotTests: XCTestCase {
    func worker(_ seed: Int) -> MetricsSnapshot {
        var m = MetricsSnapshot()
        m.streamsOpen = ["/events": seed, "shared": 1]
        m.heartbeats = ["/events": 10 * seed, "w\(seed)": seed]
        m.bytesUpstreamToClient = 1000 * seed
        m.bytesClientToUpstream = 100 * seed
        m.requests = [RouteCode(route: "/events", code: 200): seed, RouteCode(route: "w\(seed)", code: 502): 1]
        m.upstreamErrors[RouteUpstreamError(route: "/events", kind: .timeout), default: 0] += seed
        m.upstreamErrors[RouteUpstreamError(route: "/events", kind: UpstreamErrorKind.allCases[(seed + 1) % 4]), default: 0] += 1
        m.clientDisconnects = [.reset: seed, .eof: 1]
        m.requestHeadersDropped = ["/events": seed, "w\(seed)": 1]
        m.connectionsOpen = seed
        m.connectionsAccepted = 3 * seed
        return m
    }

    func testAddSumsEveryField() {
        var total = worker(1)
        total.add(worker(2))
        var expected = MetricsSnapshot()
        expected.streamsOpen = ["/events": 3, "shared": 2]
        expected.heartbeats = ["/events": 30, "w1": 1, "w2": 2]
        expected.bytesUpstreamToClient = 3000
        expected.bytesClientToUpstream = 300
        expected.requests = [RouteCode(route: "/events", code: 200): 3, RouteCode(route: "w1", code: 502): 1,
                             RouteCode(route: "w2", code: 502): 1]
        expected.upstreamErrors = [RouteUpstreamError(route: "/events", kind: .timeout): 3,
                                   RouteUpstreamError(route: "/events", kind: .reset): 1,
                                   RouteUpstreamError(route: "/events", kind: .malformed): 1]
        expected.clientDisconnects = [.reset: 3, .eof: 2]
        expected.requestHeadersDropped = ["/events": 3, "w1": 1, "w2": 1]
        expected.connectionsOpen = 3
        expected.connectionsAccepted = 9
        XCTAssertEqual(total, expected)
    }

    func testAddIsCommutativeAndEmptyIsIdentity() {
        let a = worker(1), b = worker(3)
        var ab = a; ab.add(b)
        var ba = b; ba.add(a)
        XCTAssertEqual(ab, ba)
        var withEmpty = a; withEmpty.add(MetricsSnapshot())
        XCTAssertEqual(withEmpty, a)
        var fromEmpty = MetricsSnapshot(); fromEmpty.add(a)
        XCTAssertEqual(fromEmpty, a)
    }

    func testAddKeepsZeroValuedKeys() {
        var w1 = MetricsSnapshot(), w2 = MetricsSnapshot()
        w1.streamOpened(route: "/events")
        w1.streamClosed(route: "/events")
        w2.streamOpened(route: "/other")
        var total = MetricsSnapshot()
        total.add(w1)
        total.add(w2)
        XCTAssertEqual(total.streamsOpen, ["/events": 0, "/other": 1])
    }

    func testGaugesCanCrossWorkers() {
        // A gauge is a sum over workers; a per-worker value may be anything.
        var w1 = MetricsSnapshot(), w2 = MetricsSnapshot()
        (w1.connectionsAccepted, w1.connectionsOpen) = (5, 3)
        (w2.connectionsAccepted, w2.connectionsOpen) = (1, 0)
        var total = w1
        total.add(w2)
        XCTAssertEqual(total.connectionsAccepted, 6)
        XCTAssertEqual(total.connectionsOpen, 3)
    }

    func testHotPathHelpers() {
        var m = MetricsSnapshot()
        m.streamOpened(route: "/events")
        m.streamOpened(route: "/events")
        m.streamClosed(route: "/events")
        m.heartbeatWritten(route: "/events")
        m.heartbeatWritten(route: "/events")
        m.requestFinished(route: "default", code: 404)
        m.requestFinished(route: "default", code: 404)
        m.requestFinished(route: "default", code: 200)
        m.upstreamError(route: "/events", kind: .connect)
        m.clientDisconnected(.timeout)
        m.clientDisconnected(.timeout)
        XCTAssertEqual(m.streamsOpen, ["/events": 1])
        XCTAssertEqual(m.heartbeats, ["/events": 2])
        XCTAssertEqual(m.requests, [RouteCode(route: "default", code: 404): 2, RouteCode(route: "default", code: 200): 1])
        XCTAssertEqual(m.upstreamErrors, [RouteUpstreamError(route: "/events", kind: .connect): 1])
        XCTAssertEqual(m.clientDisconnects, [.timeout: 2])
    }

    func testSummedSnapshotsRenderTheSumOfWorkers() throws {
        var total = MetricsSnapshot()
        for w in 1...4 { total.add(worker(w)) }
        let parsed = try ParsedExposition(total.prometheusText(workers: 4, draining: false))
        XCTAssertEqual(parsed.value("sse_keepalive_streams_open", ["route": "/events"]), 10)
        XCTAssertEqual(parsed.value("sse_keepalive_streams_open", ["route": "shared"]), 4)
        XCTAssertEqual(parsed.value("sse_keepalive_heartbeats_total", ["route": "/events"]), 100)
        XCTAssertEqual(parsed.value("sse_keepalive_bytes_forwarded_total", ["direction": "upstream_to_client"]), 10_000)
        XCTAssertEqual(parsed.value("sse_keepalive_client_disconnects_total", ["kind": "eof"]), 4)
        XCTAssertEqual(parsed.value("sse_keepalive_client_disconnects_total", ["kind": "timeout"]), 0)
        XCTAssertEqual(parsed.value("sse_keepalive_workers"), 4)
    }
}

final class MetricsStreamSeriesTests: XCTestCase {
    func testOpeningAStreamStartsItsHeartbeatSeriesAtZero() {
        var m = MetricsSnapshot()
        m.streamOpened(route: "/quiet")
        XCTAssertEqual(m.heartbeats["/quiet"], 0)
        XCTAssertTrue(m.prometheusText(workers: 1, draining: false)
            .contains("sse_keepalive_heartbeats_total{route=\"/quiet\"} 0"))
    }
}
