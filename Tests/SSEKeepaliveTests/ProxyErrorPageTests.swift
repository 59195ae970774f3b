import XCTest
@testable import SSEKeepalive

/// The proxy's own error responses (docs/behaviour.md, "Errors").
final class ProxyErrorPageTests: XCTestCase {
    func testStatusForParseErrors() {
        XCTAssertEqual(ErrorPage.status(for: .malformed("bare CR")), 400)
        XCTAssertEqual(ErrorPage.status(for: .malformed("")), 400)
        XCTAssertEqual(ErrorPage.status(for: .headersTooLarge), 431)
        XCTAssertEqual(ErrorPage.status(for: .unsupportedVersion), 505)
    }

    func testReasonPhrases() {
        let expected: [Int: String] = [
            400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
            505: "HTTP Version Not Supported",
        ]
        for (status, reason) in expected { XCTAssertEqual(ErrorPage.reason(status), reason, "\(status)") }
    }

    /// Parses an error page back with HeadParser and checks head and body.
    private func assertValidPage(status: Int, message: String, file: StaticString = #filePath, line: UInt = #line) {
        let wire = ErrorPage.response(status: status, message: message)
        guard case .complete(let head, let headLength) = HeadParser.parseResponse(wire, maxHeaderBytes: 1 << 16) else {
            XCTFail("\(status): not a valid response head: \(proxyString(wire).debugDescription)", file: file, line: line)
            return
        }
        let body = Array(wire[headLength...])
        XCTAssertEqual(head.version, .http11, file: file, line: line)
        XCTAssertEqual(head.status, status, file: file, line: line)
        XCTAssertEqual(head.reason, ErrorPage.reason(status), file: file, line: line)
        XCTAssertEqual(head.headers.values("Content-Length"), [String(body.count)],
                       "Content-Length must match the body", file: file, line: line)
        XCTAssertEqual(try? BodyFraming.response(head, requestMethod: "GET"), .contentLength(body.count),
                       file: file, line: line)
        XCTAssertEqual(head.headers.values("Connection"), ["close"], file: file, line: line)
        XCTAssertFalse(head.headers.contains("Transfer-Encoding"), file: file, line: line)
        XCTAssertTrue(head.headers["Content-Type"]?.hasPrefix("text/plain") ?? false, file: file, line: line)
        // One line: ends with LF, no other line break.
        XCTAssertEqual(body.last, UInt8(ascii: "\n"), file: file, line: line)
        XCTAssertEqual(body.filter { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") }.count, 1,
                       "one-line body: \(proxyString(body).debugDescription)", file: file, line: line)
        let text = proxyString(body)
        XCTAssertTrue(text.hasPrefix("\(status) "), "body names the status: \(text)", file: file, line: line)
        XCTAssertTrue(message.isEmpty || text.contains(message), "body names the cause: \(text)", file: file, line: line)
    }

    func testEveryProxyErrorIsAValidClosingResponse() {
        let cases: [(Int, String)] = [
            (400, "malformed request: bare CR"),
            (408, "request head not received in time"),
            (431, "request header fields too large"),
            (502, "upstream 127.0.0.1:3000 unreachable: Connection refused"),
            (502, "upstream unix:/run/app.sock closed the connection without a response"),
            (503, "too many connections"),
            (504, "upstream 127.0.0.1:3000 did not answer within 60s"),
            (505, "HTTP version not supported"),
            (599, "something else"),
        ]
        for (status, message) in cases { assertValidPage(status: status, message: message) }
    }

    func testEmptyAndNonASCIIMessagesStillFramedExactly() {
        assertValidPage(status: 502, message: "")
        assertValidPage(status: 502, message: "upstream café ☕ unreachable") // Content-Length counts bytes
    }

    func testParseErrorsBecomeMatchingPages() {
        let errors: [HTTPParseError] = [.malformed("invalid character 'x' in header name"), .headersTooLarge, .unsupportedVersion]
        for error in errors {
            let status = ErrorPage.status(for: error)
            assertValidPage(status: status, message: "\(error)")
        }
    }

    /// The runtime writes the page and then closes: nothing may follow the body,
    /// so the byte count must be exactly head + Content-Length.
    func testNothingAfterTheBody() {
        let wire = ErrorPage.response(status: 504, message: "timeout")
        guard case .complete(let head, let headLength) = HeadParser.parseResponse(wire, maxHeaderBytes: 1 << 16),
              let length = head.headers["Content-Length"].flatMap(Int.init)
        else { return XCTFail("invalid page") }
        XCTAssertEqual(wire.count, headLength + length)
    }
}
