import XCTest
@testable import SSEKeepalive

/// Issue 17 through the exchange machine: what the request plan drops is
/// counted and logged, the route's `headers` setting applies, interim heads
/// are cleaned, and routing follows the normalised path.
final class ExchangeMachineHygieneTests: XCTestCase {
    func harness(_ yaml: String = "") throws -> ExchangeHarness {
        var config = try ConfigLoader.parse(yaml: yaml.isEmpty ? "{}" : yaml, file: "t.yaml")
        config.accessLog = true
        let h = ExchangeHarness(config: config)
        h.start()
        return h
    }

    func testUnderscoredFieldsAreDroppedCountedAndNamedInADebugLine() throws {
        let h = try harness("routes:\n  - path: /r\n")
        h.clientSends("GET /r/x HTTP/1.1\r\nHost: a\r\nX_A: secret-value\r\nX-B: 2\r\nTransfer_Encoding: chunked\r\n\r\n")
        h.upstreamConnects()
        let sent = h.upstreamText()
        XCTAssertFalse(sent.contains("X_A") || sent.contains("Transfer_Encoding"), sent)
        XCTAssertTrue(sent.contains("X-B: 2\r\n"), sent)
        XCTAssertEqual(h.metrics.requestHeadersDropped, ["/r": 2])
        XCTAssertEqual(h.logged(.debug).filter { if case .headerFieldsDropped = $0 { return true } else { return false } },
                       [.headerFieldsDropped(["X_A", "Transfer_Encoding"])])
        let line = ExchangeLogEvent.headerFieldsDropped(["X_A", "Transfer_Encoding"]).message(peer: "p", describe: { _ in "" })
        XCTAssertEqual(line, "header fields with '_' not forwarded: X_A, Transfer_Encoding")
        XCTAssertFalse(line.contains("secret-value"), "names only, never values")
        XCTAssertNil(h.violation)
    }

    func testNothingDroppedNothingCounted() throws {
        let h = try harness()
        h.clientSends("GET /x HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\r\n")
        h.upstreamConnects()
        XCTAssertEqual(h.metrics.requestHeadersDropped, [:])
        XCTAssertTrue(h.logged(.debug).allSatisfy { if case .headerFieldsDropped = $0 { return false } else { return true } })
    }

    func testAllowUnderscoresTopLevelAndPerRoute() throws {
        let yaml = """
        headers: {allow_underscores: true}
        routes:
          - path: /strict
            headers: {allow_underscores: false}
        """
        for (path, forwarded) in [("/open/x", true), ("/strict/x", false)] {
            let h = try harness(yaml)
            h.clientSends("GET \(path) HTTP/1.1\r\nHost: a\r\nX_A: 1\r\n\r\n")
            h.upstreamConnects()
            XCTAssertEqual(h.upstreamText().contains("X_A: 1\r\n"), forwarded, path)
            XCTAssertEqual(h.metrics.requestHeadersDropped.values.reduce(0, +), forwarded ? 0 : 1, path)
        }
    }

    func testInterimHeadLosesContentLengthAndHopByHopFields() throws {
        let h = try harness()
        h.clientSends("GET /hints HTTP/1.1\r\nHost: a\r\n\r\n")
        h.upstreamConnects()
        h.upstreamSends("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\nContent-Length: 0\r\nConnection: X-Hop\r\nX-Hop: 1\r\n\r\n")
        XCTAssertEqual(h.clientText, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n")
        h.upstreamSends("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\ny")
        XCTAssertTrue(h.clientText.hasSuffix("\r\n\r\ny"))
        XCTAssertNil(h.violation)
    }

    func testRoutingFollowsTheNormalisedPath() throws {
        let yaml = """
        routes:
          - path: /tok
            token: {}
        """
        for target in ["/%74ok/e?token=S", "//tok/e?token=S", "/x/../tok/e?token=S", "http://a/tok/e?token=S"] {
            let h = try harness(yaml)
            h.clientSends("GET \(target) HTTP/1.1\r\nHost: a\r\n\r\n")
            h.upstreamConnects()
            XCTAssertTrue(h.upstreamText().hasPrefix("GET /tok/e HTTP/1.1\r\n"), "\(target): \(h.upstreamText())")
            XCTAssertTrue(h.upstreamText().contains("Authorization: Bearer S\r\n"), target)
        }
    }

    func testConnectIsAnsweredByTheProxyWith405AndAllow() throws {
        for version in ["HTTP/1.1", "HTTP/1.0"] {
            let h = try harness()
            h.clientSends("CONNECT a:443 \(version)\r\nHost: a:443\r\n\r\nGET /inside HTTP/1.1\r\nHost: a\r\n\r\n")
            XCTAssertTrue(h.clientText.hasPrefix("HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n"),
                          h.clientText)
            XCTAssertTrue(h.clientText.hasSuffix("405 Method Not Allowed: CONNECT is not supported by this proxy\n"), h.clientText)
            XCTAssertFalse(h.clientText.contains("/inside"))
            XCTAssertEqual(h.upstreamConnections.count, 0)
            XCTAssertTrue(h.closed)
            XCTAssertEqual(h.accessLog.map(\.status), [405])
            XCTAssertEqual(h.accessLog.first?.method, "CONNECT")
            XCTAssertEqual(h.accessLog.first?.bytesSent, h.clientWire.count)
            XCTAssertNil(h.violation)
        }
    }
}
