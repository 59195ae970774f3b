import XCTest
@testable import SSEKeepalive

final class HTTPHeadParserTests: XCTestCase {
    let max = 16 * 1024

    // MARK: valid requests

    struct ValidRequest {
        var input: [UInt8]
        var expected: RequestHead
    }

    var validRequests: [ValidRequest] {
        var many = "GET /many HTTP/1.1\r\nHost: m\r\n"
        var manyFields: [(String, String)] = [("Host", "m")]
        for i in 0..<100 {
            many += "X-Header-\(i): value \(i)\r\n"
            manyFields.append(("X-Header-\(i)", "value \(i)"))
        }
        many += "\r\n"
        return [
            ValidRequest(input: bytes("GET /index.html?x=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"),
                         expected: RequestHead(method: "GET", target: "/index.html?x=1", version: .http11,
                                               headers: HTTPHeaders([("Host", "example.com"), ("Accept", "*/*")]))),
            ValidRequest(input: bytes("GET http://example.com:8080/a?b=%20 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n"),
                         expected: RequestHead(method: "GET", target: "http://example.com:8080/a?b=%20", version: .http11,
                                               headers: HTTPHeaders([("Host", "example.com:8080")]))),
            ValidRequest(input: bytes("GET / HTTP/1.0\r\n\r\n"),
                         expected: RequestHead(method: "GET", target: "/", version: .http10, headers: HTTPHeaders())),
            ValidRequest(input: bytes("POST /x HTTP/1.1\nHost: a\nContent-Length: 5\n\n"),
                         expected: RequestHead(method: "POST", target: "/x", version: .http11,
                                               headers: HTTPHeaders([("Host", "a"), ("Content-Length", "5")]))),
            ValidRequest(input: bytes("POST /mixed HTTP/1.1\r\nHost: a\nX: y\r\n\n"),
                         expected: RequestHead(method: "POST", target: "/mixed", version: .http11,
                                               headers: HTTPHeaders([("Host", "a"), ("X", "y")]))),
            ValidRequest(input: bytes("\r\n\n\r\nGET /lead HTTP/1.1\r\nhost: a\r\n\r\n"),
                         expected: RequestHead(method: "GET", target: "/lead", version: .http11,
                                               headers: HTTPHeaders([("host", "a")]))),
            ValidRequest(input: bytes(String(repeating: "\r\n", count: 8) + "GET / HTTP/1.1\r\nHOST: a\r\n\r\n"),
                         expected: RequestHead(method: "GET", target: "/", version: .http11,
                                               headers: HTTPHeaders([("HOST", "a")]))),
            ValidRequest(input: bytes(many),
                         expected: RequestHead(method: "GET", target: "/many", version: .http11, headers: HTTPHeaders(manyFields))),
            ValidRequest(input: bytes("GET /dup HTTP/1.1\r\nX-A: 1\r\nHost: h\r\nx-a: 2\r\nX-A:3\r\n\r\n"),
                         expected: RequestHead(method: "GET", target: "/dup", version: .http11,
                                               headers: HTTPHeaders([("X-A", "1"), ("Host", "h"), ("x-a", "2"), ("X-A", "3")]))),
            ValidRequest(input: bytes("GET / HTTP/1.1\r\nHost: h\r\nX-Trim: \t v a\tl \t\r\nX-Empty:\r\nX-Spaces:   \r\n\r\n"),
                         expected: RequestHead(method: "GET", target: "/", version: .http11,
                                               headers: HTTPHeaders([("Host", "h"), ("X-Trim", "v a\tl"), ("X-Empty", ""), ("X-Spaces", "")]))),
            ValidRequest(input: bytes("GET / HTTP/1.1\r\nHost: h\r\nX-U: caf\u{e9}\r\n\r\n"),
                         expected: RequestHead(method: "GET", target: "/", version: .http11,
                                               headers: HTTPHeaders([("Host", "h"), ("X-U", "caf\u{e9}")]))),
            ValidRequest(input: bytes("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"),
                         expected: RequestHead(method: "OPTIONS", target: "*", version: .http11, headers: HTTPHeaders([("Host", "h")]))),
            ValidRequest(input: bytes("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
                         expected: RequestHead(method: "CONNECT", target: "example.com:443", version: .http11,
                                               headers: HTTPHeaders([("Host", "example.com:443")]))),
            ValidRequest(input: bytes("M-SEARCH! /~a HTTP/1.0\r\nX: a:b:c\r\n\r\n"),
                         expected: RequestHead(method: "M-SEARCH!", target: "/~a", version: .http10,
                                               headers: HTTPHeaders([("X", "a:b:c")]))),
        ]
    }

    func testValidRequests() {
        for (n, c) in validRequests.enumerated() {
            let r = HeadParser.parseRequest(c.input, maxHeaderBytes: max)
            guard let (head, length) = r.completed else { XCTFail("case \(n): \(r)"); continue }
            XCTAssertEqual(head, c.expected, "case \(n)")
            XCTAssertEqual(length, c.input.count, "case \(n)")
        }
    }

    func testEveryPrefixOfValidRequestIsIncompleteAndTrailingBytesAreNotConsumed() {
        let trailers = [bytes(""), bytes("hello"), bytes("GET /next HTTP/1.1\r\nHost: x\r\n\r\n"), bytes("\r\n")]
        for (n, c) in validRequests.enumerated() {
            for k in 0..<c.input.count {
                let r = HeadParser.parseRequest(Array(c.input[..<k]), maxHeaderBytes: max)
                XCTAssertTrue(r.isIncomplete, "case \(n) prefix \(k): \(r)")
            }
            for t in trailers {
                let r = HeadParser.parseRequest(c.input + t, maxHeaderBytes: max)
                XCTAssertEqual(r, .complete(c.expected, headLength: c.input.count), "case \(n)")
            }
        }
    }

    // MARK: valid responses

    struct ValidResponse {
        var input: [UInt8]
        var expected: ResponseHead
    }

    var validResponses: [ValidResponse] {
        [
            ValidResponse(input: bytes("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"),
                          expected: ResponseHead(version: .http11, status: 200, reason: "OK",
                                                 headers: HTTPHeaders([("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")]))),
            ValidResponse(input: bytes("HTTP/1.1 204\r\n\r\n"),
                          expected: ResponseHead(version: .http11, status: 204, reason: "", headers: HTTPHeaders())),
            ValidResponse(input: bytes("HTTP/1.1 200 \r\nA: b\r\n\r\n"),
                          expected: ResponseHead(version: .http11, status: 200, reason: "", headers: HTTPHeaders([("A", "b")]))),
            ValidResponse(input: bytes("HTTP/1.0 404 Not Found\nServer: x\n\n"),
                          expected: ResponseHead(version: .http10, status: 404, reason: "Not Found", headers: HTTPHeaders([("Server", "x")]))),
            ValidResponse(input: bytes("HTTP/1.1 500 Bad\tThing caf\u{e9} (!)\r\n\r\n"),
                          expected: ResponseHead(version: .http11, status: 500, reason: "Bad\tThing caf\u{e9} (!)", headers: HTTPHeaders())),
            ValidResponse(input: bytes("HTTP/1.1 999 Custom\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n"),
                          expected: ResponseHead(version: .http11, status: 999, reason: "Custom",
                                                 headers: HTTPHeaders([("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]))),
            ValidResponse(input: bytes("HTTP/1.1 100 Continue\r\n\r\n"),
                          expected: ResponseHead(version: .http11, status: 100, reason: "Continue", headers: HTTPHeaders())),
            ValidResponse(input: bytes("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
                          expected: ResponseHead(version: .http11, status: 101, reason: "Switching Protocols",
                                                 headers: HTTPHeaders([("Upgrade", "websocket"), ("Connection", "Upgrade")]))),
        ]
    }

    func testValidResponses() {
        for (n, c) in validResponses.enumerated() {
            let r = HeadParser.parseResponse(c.input, maxHeaderBytes: max)
            XCTAssertEqual(r, .complete(c.expected, headLength: c.input.count), "case \(n)")
        }
    }

    func testEveryPrefixOfValidResponseIsIncompleteAndBodyIsNotConsumed() {
        for (n, c) in validResponses.enumerated() {
            for k in 0..<c.input.count {
                let r = HeadParser.parseResponse(Array(c.input[..<k]), maxHeaderBytes: max)
                XCTAssertTrue(r.isIncomplete, "case \(n) prefix \(k): \(r)")
            }
            let r = HeadParser.parseResponse(c.input + bytes("data: x\n\n"), maxHeaderBytes: max)
            XCTAssertEqual(r, .complete(c.expected, headLength: c.input.count), "case \(n)")
        }
    }

    func testUnsafeRawBufferOverloadMatches() {
        let input = bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\nrest")
        let r = input.withUnsafeBytes { HeadParser.parseRequest($0, maxHeaderBytes: 100) }
        XCTAssertEqual(r.completed?.1, input.count - 4)
    }

    /// Upstream responses are not refused for obs-text (a 502 would be worse than a replaced byte).
    func testResponseObsTextIsNotRefused() {
        let input = bytes("HTTP/1.1 200 OK\r\nX: a") + [0xFF, 0x62, 0x0D, 0x0A, 0x0D, 0x0A]
        guard case .complete(let head, _) = HeadParser.parseResponse(input, maxHeaderBytes: 1024) else {
            return XCTFail("refused")
        }
        XCTAssertEqual(head.headers["X"], "a\u{FFFD}b")
    }

    // MARK: invalid

    static let invalidRequests: [(String, [UInt8], ErrorKind)] = [
        ("bare CR in value", bytes("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"), .malformed),
        ("bare CR in request-line", bytes("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n"), .malformed),
        ("CR CR LF", bytes("GET / HTTP/1.1\r\r\nHost: a\r\n\r\n"), .malformed),
        ("bare CR as blank line", bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\r\n"), .malformed),
        ("NUL in value", bytes("GET / HTTP/1.1\r\nHost: a\u{0}b\r\n\r\n"), .malformed),
        ("DEL in value", bytes("GET / HTTP/1.1\r\nHost: a\r\nX: a\u{7F}\r\n\r\n"), .malformed),
        ("control in value", bytes("GET / HTTP/1.1\r\nHost: a\r\nX: a\u{1B}b\r\n\r\n"), .malformed),
        // request header values are forwarded as strings: bytes that are not UTF-8 could not stay unchanged
        ("obs-text not UTF-8", bytes("GET / HTTP/1.1\r\nHost: a\r\nX: a") + [0xFF, 0x62, 0x0D, 0x0A, 0x0D, 0x0A], .malformed),
        ("latin-1 byte", bytes("GET / HTTP/1.1\r\nHost: a\r\nX: caf") + [0xE9, 0x0D, 0x0A, 0x0D, 0x0A], .malformed),
        ("truncated UTF-8 at line end", bytes("GET / HTTP/1.1\r\nHost: a\r\nX: a") + [0xC3, 0x0D, 0x0A, 0x0D, 0x0A], .malformed),
        ("overlong UTF-8", bytes("GET / HTTP/1.1\r\nHost: a\r\nX: ") + [0xC0, 0xAF, 0x0D, 0x0A, 0x0D, 0x0A], .malformed),
        ("obs-fold", bytes("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"), .malformed),
        ("obs-fold tab", bytes("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n"), .malformed),
        ("whitespace before first header", bytes("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), .malformed),
        ("space before colon", bytes("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), .malformed),
        ("tab before colon", bytes("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"), .malformed),
        ("empty name", bytes("GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n"), .malformed),
        ("missing colon", bytes("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n"), .malformed),
        ("bad char in name", bytes("GET / HTTP/1.1\r\nHost: a\r\nX(y): b\r\n\r\n"), .malformed),
        ("bad method char", bytes("G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), .malformed),
        ("empty method", bytes(" / HTTP/1.1\r\nHost: a\r\n\r\n"), .malformed),
        ("two spaces after method", bytes("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), .malformed),
        ("two spaces before version", bytes("GET /  HTTP/1.1\r\nHost: a\r\n\r\n"), .malformed),
        ("trailing space after version", bytes("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), .malformed),
        ("tab as separator", bytes("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), .malformed),
        ("lowercase version", bytes("GET / http/1.1\r\nHost: a\r\n\r\n"), .malformed),
        ("HTTP/1.10", bytes("GET / HTTP/1.10\r\nHost: a\r\n\r\n"), .malformed),
        ("HTTP/11", bytes("GET / HTTP/11\r\nHost: a\r\n\r\n"), .malformed),
        ("HTTP/0.9 line", bytes("GET /\r\n\r\n"), .malformed),
        ("missing version", bytes("GET / \r\nHost: a\r\n\r\n"), .malformed),
        ("HTTP/2.0", bytes("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), .unsupportedVersion),
        ("HTTP/1.2", bytes("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), .unsupportedVersion),
        ("HTTP/0.9 versioned", bytes("GET / HTTP/0.9\r\n\r\n"), .unsupportedVersion),
        ("missing Host on 1.1", bytes("GET / HTTP/1.1\r\nAccept: x\r\n\r\n"), .malformed),
        ("two Hosts", bytes("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"), .malformed),
        ("two Hosts on 1.0", bytes("GET / HTTP/1.0\r\nHost: a\r\nHOST: b\r\n\r\n"), .malformed),
        ("control in target", bytes("GET /a\u{1}b HTTP/1.1\r\nHost: a\r\n\r\n"), .malformed),
        ("tab in target", bytes("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n"), .malformed),
        ("DEL in target", bytes("GET /a\u{7F} HTTP/1.1\r\nHost: a\r\n\r\n"), .malformed),
        (">= 0x80 in target", bytes("GET /caf\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n"), .malformed),
        ("NUL in method", [0x47, 0x00] + bytes("T / HTTP/1.1\r\nHost: a\r\n\r\n"), .malformed),
        ("too many leading empty lines", bytes(String(repeating: "\r\n", count: 9) + "GET / HTTP/1.1\r\nHost: a\r\n\r\n"), .malformed),
        ("empty", bytes("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n"), .malformed),
    ]

    static let invalidResponses: [(String, [UInt8], ErrorKind)] = [
        ("two-digit status", bytes("HTTP/1.1 20 OK\r\n\r\n"), .malformed),
        ("two-digit status no reason", bytes("HTTP/1.1 20\r\n\r\n"), .malformed),
        ("four-digit status", bytes("HTTP/1.1 2000 OK\r\n\r\n"), .malformed),
        ("status below 100", bytes("HTTP/1.1 099 Low\r\n\r\n"), .malformed),
        ("non-digit status", bytes("HTTP/1.1 2x0 OK\r\n\r\n"), .malformed),
        ("two spaces before status", bytes("HTTP/1.1  200 OK\r\n\r\n"), .malformed),
        ("missing status", bytes("HTTP/1.1\r\n\r\n"), .malformed),
        ("missing status after space", bytes("HTTP/1.1 \r\n\r\n"), .malformed),
        ("lowercase version", bytes("http/1.1 200 OK\r\n\r\n"), .malformed),
        ("HTTP/2.0", bytes("HTTP/2.0 200 OK\r\n\r\n"), .unsupportedVersion),
        ("HTTP/1.2", bytes("HTTP/1.2 200 OK\r\n\r\n"), .unsupportedVersion),
        ("control in reason", bytes("HTTP/1.1 200 O\u{1}K\r\n\r\n"), .malformed),
        ("DEL in reason", bytes("HTTP/1.1 200 O\u{7F}K\r\n\r\n"), .malformed),
        ("bare CR in reason", bytes("HTTP/1.1 200 O\rK\r\n\r\n"), .malformed),
        ("leading empty line", bytes("\r\nHTTP/1.1 200 OK\r\n\r\n"), .malformed),
        ("obs-fold", bytes("HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n"), .malformed),
        ("space before colon", bytes("HTTP/1.1 200 OK\r\nA : b\r\n\r\n"), .malformed),
        ("NUL in value", bytes("HTTP/1.1 200 OK\r\nA: \u{0}\r\n\r\n"), .malformed),
        ("garbage", bytes("SSH-2.0-OpenSSH\r\n\r\n"), .malformed),
    ]

    func testInvalidRequests() {
        for (name, input, kind) in Self.invalidRequests {
            XCTAssertEqual(HeadParser.parseRequest(input, maxHeaderBytes: max).errorKind, kind, name)
            // With trailing bytes too.
            XCTAssertEqual(HeadParser.parseRequest(input + bytes("xyz"), maxHeaderBytes: max).errorKind, kind, name)
            // Every prefix: incomplete, or already the same failure.
            for k in 0..<input.count {
                let r = HeadParser.parseRequest(Array(input[..<k]), maxHeaderBytes: max)
                XCTAssertTrue(r.isIncomplete || r.errorKind == kind, "\(name) prefix \(k): \(r)")
            }
        }
    }

    func testInvalidResponses() {
        for (name, input, kind) in Self.invalidResponses {
            XCTAssertEqual(HeadParser.parseResponse(input, maxHeaderBytes: max).errorKind, kind, name)
            for k in 0..<input.count {
                let r = HeadParser.parseResponse(Array(input[..<k]), maxHeaderBytes: max)
                XCTAssertTrue(r.isIncomplete || r.errorKind == kind, "\(name) prefix \(k): \(r)")
            }
        }
    }

    func testInvalidPrefixFailsEarly() {
        let early: [(String, [UInt8])] = [
            ("NUL in value", bytes("GET / HTTP/1.1\r\nHost: a\u{0}")),
            ("bad method char", bytes("G(")),
            ("NUL in method", [0x47, 0x00]),
            ("two spaces", bytes("GET  ")),
            ("lowercase version", bytes("GET / h")),
            ("control in target", bytes("GET /\u{1}")),
            ("bare CR", bytes("GET / HTTP/1.1\r\nHost: a\rb")),
            ("obs-fold", bytes("GET / HTTP/1.1\r\nHost: a\r\n ")),
            ("space before colon", bytes("GET / HTTP/1.1\r\nHost ")),
            ("two Hosts", bytes("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n")),
            ("unsupported version", bytes("GET / HTTP/3.0\r\n")),
        ]
        for (name, input) in early {
            XCTAssertNotNil(HeadParser.parseRequest(input, maxHeaderBytes: max).errorKind, name)
        }
        XCTAssertEqual(HeadParser.parseResponse(bytes("HTTP/1.1 2x"), maxHeaderBytes: max).errorKind, .malformed)
        XCTAssertEqual(HeadParser.parseResponse(bytes("HTTQ"), maxHeaderBytes: max).errorKind, .malformed)
        // A prefix that may still become valid waits.
        XCTAssertTrue(HeadParser.parseRequest(bytes("GET / HTTP/1.1\r\nHost: a\r"), maxHeaderBytes: max).isIncomplete)
        XCTAssertTrue(HeadParser.parseRequest(bytes("GET / HTTP/1.1\r\nHost: a\r\n\r"), maxHeaderBytes: max).isIncomplete)
    }

    // MARK: size limits

    func testMaxHeaderBytesBoundaries() {
        let head = bytes("GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789\r\n\r\n")
        let n = head.count
        XCTAssertEqual(HeadParser.parseRequest(head, maxHeaderBytes: n).completed?.1, n)
        XCTAssertEqual(HeadParser.parseRequest(head + bytes("body"), maxHeaderBytes: n).completed?.1, n)
        XCTAssertEqual(HeadParser.parseRequest(head, maxHeaderBytes: n - 1).errorKind, .headersTooLarge)
        XCTAssertEqual(HeadParser.parseRequest(head + bytes("body"), maxHeaderBytes: n - 1).errorKind, .headersTooLarge)
        // Unterminated: incomplete up to the limit, too large beyond it.
        let open = Array(head.dropLast(2))
        XCTAssertTrue(HeadParser.parseRequest(open, maxHeaderBytes: open.count).isIncomplete)
        XCTAssertEqual(HeadParser.parseRequest(open, maxHeaderBytes: open.count - 1).errorKind, .headersTooLarge)
        // Leading empty lines count.
        let led = bytes("\r\n") + head
        XCTAssertEqual(HeadParser.parseRequest(led, maxHeaderBytes: n + 2).completed?.1, n + 2)
        XCTAssertEqual(HeadParser.parseRequest(led, maxHeaderBytes: n + 1).errorKind, .headersTooLarge)

        let response = bytes("HTTP/1.1 200 OK\r\nA: b\r\n\r\n")
        XCTAssertEqual(HeadParser.parseResponse(response, maxHeaderBytes: response.count).completed?.1, response.count)
        XCTAssertEqual(HeadParser.parseResponse(response, maxHeaderBytes: response.count - 1).errorKind, .headersTooLarge)
    }

    func testHugeUnterminatedHead() {
        var huge = bytes("GET / HTTP/1.1\r\nHost: a\r\n")
        while huge.count < 1 << 20 { huge += bytes("X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n") }
        XCTAssertEqual(HeadParser.parseRequest(huge, maxHeaderBytes: 16 * 1024).errorKind, .headersTooLarge)
        // One endless line.
        let line = bytes("GET /") + [UInt8](repeating: 0x61, count: 100_000)
        XCTAssertEqual(HeadParser.parseRequest(line, maxHeaderBytes: 16 * 1024).errorKind, .headersTooLarge)
        XCTAssertTrue(HeadParser.parseRequest(Array(line[..<(16 * 1024)]), maxHeaderBytes: 16 * 1024).isIncomplete)
        // A big valid head within a big limit parses.
        let big = huge + bytes("\r\n")
        XCTAssertEqual(HeadParser.parseRequest(big, maxHeaderBytes: big.count).completed?.1, big.count)
    }
}
