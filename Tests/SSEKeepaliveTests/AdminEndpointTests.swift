import XCTest
@testable import SSEKeepalive

final class AdminEndpointTests: XCTestCase {
    struct NotParsed: Error {}

    struct Parsed {
        var head: ResponseHead
        var body: [UInt8]
        var bodyText: String { String(decoding: body, as: UTF8.self) }
    }

    /// Parses with the project's HeadParser and checks the framing every
    /// admin response must have.
    func parse(_ bytes: [UInt8], head isHead: Bool = false,
               file: StaticString = #filePath, line: UInt = #line) throws -> Parsed {
        guard case .complete(let head, let headLength) = HeadParser.parseResponse(bytes, maxHeaderBytes: 16 * 1024) else {
            XCTFail("response head does not parse: \(String(decoding: bytes, as: UTF8.self).debugDescription)", file: file, line: line)
            throw NotParsed()
        }
        let body = Array(bytes[headLength...])
        XCTAssertEqual(head.version, .http11, file: file, line: line)
        XCTAssertEqual(head.headers.values("Content-Length").count, 1, file: file, line: line)
        let length = try XCTUnwrap(head.headers["Content-Length"].flatMap { Int($0) }, file: file, line: line)
        XCTAssertEqual(isHead ? 0 : length, body.count, "Content-Length vs body", file: file, line: line)
        XCTAssertEqual(head.headers.tokens("Connection"), ["close"], file: file, line: line)
        XCTAssertFalse(head.headers.contains("Transfer-Encoding"), file: file, line: line)
        return Parsed(head: head, body: body)
    }

    var sample: MetricsSnapshot {
        var m = MetricsSnapshot()
        m.streamOpened(route: "/events")
        m.heartbeatWritten(route: "/events")
        m.requestFinished(route: "default", code: 200)
        m.connectionsAccepted = 1
        m.connectionsOpen = 1
        return m
    }

    func respond(_ method: String, _ target: String, draining: Bool = false, calls: inout Int) -> [UInt8] {
        let m = sample
        return AdminEndpoint.response(method: method, target: target, draining: draining) {
            calls += 1
            return (m, workers: 2)
        }
    }

    func testGetMetrics() throws {
        for draining in [false, true] {
            var calls = 0
            let r = try parse(respond("GET", "/metrics", draining: draining, calls: &calls))
            XCTAssertEqual(calls, 1)
            XCTAssertEqual(r.head.status, 200)
            XCTAssertEqual(r.head.reason, "OK")
            XCTAssertEqual(r.head.headers["Content-Type"], "text/plain; version=0.0.4; charset=utf-8")
            XCTAssertEqual(r.bodyText, sample.prometheusText(workers: 2, draining: draining))
            let parsed = try ParsedExposition(r.bodyText)
            XCTAssertEqual(parsed.value("sse_keepalive_draining"), draining ? 1 : 0)
            XCTAssertEqual(parsed.value("sse_keepalive_workers"), 2)
            XCTAssertEqual(parsed.value("sse_keepalive_streams_open", ["route": "/events"]), 1)
        }
    }

    func testHeadMetricsHasGetHeadersAndNoBody() throws {
        var calls = 0
        let get = try parse(respond("GET", "/metrics", calls: &calls))
        let head = try parse(respond("HEAD", "/metrics", calls: &calls), head: true)
        XCTAssertEqual(calls, 2)
        XCTAssertEqual(head.head.status, 200)
        XCTAssertEqual(head.body, [])
        XCTAssertEqual(head.head.headers, get.head.headers)
        XCTAssertEqual(head.head.headers["Content-Length"], String(get.body.count))
    }

    func testQueryStringAndAbsoluteFormIgnoredForMatching() throws {
        for target in ["/metrics?name[]=x", "/metrics?", "http://127.0.0.1:9090/metrics", "HTTP://h/metrics?x=1"] {
            var calls = 0
            let r = try parse(respond("GET", target, calls: &calls))
            XCTAssertEqual(r.head.status, 200, target)
            XCTAssertEqual(calls, 1, target)
        }
        for target in ["/healthz?probe=1", "http://localhost/healthz"] {
            var calls = 0
            let r = try parse(respond("GET", target, calls: &calls))
            XCTAssertEqual(r.head.status, 200, target)
            XCTAssertEqual(r.bodyText, "ok\n", target)
            XCTAssertEqual(calls, 0, target)
        }
    }

    func testHealthz() throws {
        var calls = 0
        let ok = try parse(respond("GET", "/healthz", draining: false, calls: &calls))
        XCTAssertEqual(ok.head.status, 200)
        XCTAssertEqual(ok.bodyText, "ok\n")
        XCTAssertEqual(ok.head.headers["Content-Type"], "text/plain; charset=utf-8")

        let draining = try parse(respond("GET", "/healthz", draining: true, calls: &calls))
        XCTAssertEqual(draining.head.status, 503)
        XCTAssertEqual(draining.head.reason, "Service Unavailable")
        XCTAssertEqual(draining.bodyText, "draining\n")

        let head = try parse(respond("HEAD", "/healthz", draining: true, calls: &calls), head: true)
        XCTAssertEqual(head.head.status, 503)
        XCTAssertEqual(head.body, [])
        XCTAssertEqual(head.head.headers["Content-Length"], "9")
        XCTAssertEqual(calls, 0, "healthz must not gather metrics")
    }

    func testUnknownPathsAre404WithoutGatheringMetrics() throws {
        for target in ["/", "/metrics/", "/metricsx", "/Metrics", "/healthz/x", "/x?/metrics", "*", "//metrics",
                       "http://h", "/%6Detrics"] {
            for method in ["GET", "POST", "HEAD"] {
                var calls = 0
                let r = try parse(respond(method, target, calls: &calls), head: method == "HEAD")
                XCTAssertEqual(r.head.status, 404, "\(method) \(target)")
                XCTAssertEqual(r.head.reason, "Not Found")
                XCTAssertEqual(calls, 0, "\(method) \(target)")
                if method != "HEAD" { XCTAssertEqual(r.bodyText, "not found\n") }
            }
        }
    }

    func testOtherMethodsAre405WithAllow() throws {
        for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "get", "head", "CONNECT", "TRACE"] {
            for target in ["/metrics", "/healthz", "/metrics?x"] {
                var calls = 0
                let r = try parse(respond(method, target, calls: &calls))
                XCTAssertEqual(r.head.status, 405, "\(method) \(target)")
                XCTAssertEqual(r.head.reason, "Method Not Allowed")
                XCTAssertEqual(r.head.headers["Allow"], "GET, HEAD")
                XCTAssertEqual(r.bodyText, "method not allowed\n")
                XCTAssertEqual(calls, 0, "\(method) \(target)")
            }
        }
    }

    func testMetricsAreGatheredOnlyForGetOrHeadMetrics() {
        for method in ["GET", "HEAD", "POST", "get"] {
            for target in ["/metrics", "/metrics?a=b", "/healthz", "/", "http://h/metrics"] {
                var calls = 0
                _ = respond(method, target, calls: &calls)
                let wanted = (method == "GET" || method == "HEAD") && target != "/healthz" && target != "/"
                XCTAssertEqual(calls, wanted ? 1 : 0, "\(method) \(target)")
            }
        }
    }

    func testExactHealthzBytes() {
        let bytes = AdminEndpoint.response(method: "GET", target: "/healthz", draining: false) {
            XCTFail("not called"); return (MetricsSnapshot(), workers: 0)
        }
        XCTAssertEqual(String(decoding: bytes, as: UTF8.self),
                       "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n"
                       + "Cache-Control: no-store\r\nConnection: close\r\n\r\nok\n")
    }
}
