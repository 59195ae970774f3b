import XCTest
@testable import SSEKeepalive

final class HTTPBodyFramingTests: XCTestCase {
    private func request(_ fields: [(String, String)], version: HTTPVersion = .http11, method: String = "POST") -> RequestHead {
        RequestHead(method: method, target: "/", version: version, headers: HTTPHeaders([("Host", "h")] + fields))
    }

    private func response(_ status: Int, _ fields: [(String, String)], version: HTTPVersion = .http11) -> ResponseHead {
        ResponseHead(version: version, status: status, reason: "", headers: HTTPHeaders(fields))
    }

    private func requestFraming(_ head: RequestHead) -> Result<BodyFraming, HTTPParseError> {
        Result { () throws(HTTPParseError) in try BodyFraming.request(head) }
    }

    private func responseFraming(_ head: ResponseHead, _ method: String) -> Result<BodyFraming, HTTPParseError> {
        Result { () throws(HTTPParseError) in try BodyFraming.response(head, requestMethod: method) }
    }

    private func assertMalformed(_ r: Result<BodyFraming, HTTPParseError>, _ message: String,
                                 file: StaticString = #filePath, line: UInt = #line) {
        switch r {
        case .failure(.malformed): break
        default: XCTFail("\(message): expected malformed, got \(r)", file: file, line: line)
        }
    }

    func testValidRequestFraming() {
        let cases: [(String, RequestHead, BodyFraming)] = [
            ("GET without body headers", request([], method: "GET"), .none),
            ("POST without body headers", request([]), .none),
            ("1.0 without body headers", request([], version: .http10), .none),
            ("CL 5", request([("Content-Length", "5")]), .contentLength(5)),
            ("CL 0", request([("Content-Length", "0")]), .contentLength(0)),
            ("CL leading zeros", request([("Content-Length", "007")]), .contentLength(7)),
            ("CL 2^62", request([("Content-Length", "4611686018427387904")]), .contentLength(1 << 62)),
            ("CL on 1.0", request([("Content-Length", "3")], version: .http10), .contentLength(3)),
            ("TE chunked", request([("Transfer-Encoding", "chunked")]), .chunked),
            ("TE Chunked case", request([("transfer-encoding", "CHUNKED")]), .chunked),
            ("TE chunked with empty list members", request([("Transfer-Encoding", " , chunked ,")]), .chunked),
            ("TE on GET", request([("Transfer-Encoding", "chunked")], method: "GET"), .chunked),
        ]
        for (name, head, expected) in cases {
            XCTAssertEqual(requestFraming(head), .success(expected), name)
        }
    }

    func testInvalidRequestFraming() {
        let cases: [(String, RequestHead)] = [
            ("TE and CL", request([("Transfer-Encoding", "chunked"), ("Content-Length", "5")])),
            ("CL and TE", request([("Content-Length", "5"), ("Transfer-Encoding", "chunked")])),
            ("gzip, chunked", request([("Transfer-Encoding", "gzip, chunked")])),
            ("chunked, chunked", request([("Transfer-Encoding", "chunked, chunked")])),
            ("chunked twice in two fields", request([("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")])),
            ("identity", request([("Transfer-Encoding", "identity")])),
            ("xchunked", request([("Transfer-Encoding", "xchunked")])),
            ("chunked with parameter", request([("Transfer-Encoding", "chunked;q=1")])),
            ("chunked, gzip", request([("Transfer-Encoding", "chunked, gzip")])),
            ("empty TE", request([("Transfer-Encoding", "")])),
            ("TE in HTTP/1.0", request([("Transfer-Encoding", "chunked")], version: .http10)),
            ("CL 5, 6", request([("Content-Length", "5, 6")])),
            ("CL two fields differ", request([("Content-Length", "5"), ("Content-Length", "6")])),
            ("CL +5", request([("Content-Length", "+5")])),
            ("CL 0x5", request([("Content-Length", "0x5")])),
            ("CL space", request([("Content-Length", " ")])),
            ("CL empty", request([("Content-Length", "")])),
            ("CL -1", request([("Content-Length", "-1")])),
            ("CL 5 5", request([("Content-Length", "5 5")])),
            ("CL 5,", request([("Content-Length", "5,")])),
            ("CL 5 and 05", request([("Content-Length", "5, 05")])),
            ("CL 2^62+1", request([("Content-Length", "4611686018427387905")])),
            ("CL Int.max", request([("Content-Length", "9223372036854775807")])),
            ("CL huge", request([("Content-Length", "99999999999999999999999999999")])),
            ("CL non-ASCII digit", request([("Content-Length", "\u{0665}")])),
            // identical repeats: allowed by RFC 9110 8.6, refused in requests (a Severe desync pattern)
            ("CL list 5, 5", request([("Content-Length", "5, 5")])),
            ("CL list 5,5 no space", request([("Content-Length", "5,5")])),
            ("CL two fields", request([("Content-Length", "5"), ("content-length", "5")])),
        ]
        for (name, head) in cases {
            assertMalformed(requestFraming(head), name)
        }
    }

    func testResponseFraming() {
        let cases: [(String, ResponseHead, String, BodyFraming)] = [
            ("100", response(100, [("Content-Length", "10")]), "GET", .none),
            ("101", response(101, [("Transfer-Encoding", "chunked")]), "GET", .none),
            ("199", response(199, []), "GET", .none),
            ("204 with CL", response(204, [("Content-Length", "10")]), "GET", .none),
            ("304 with CL", response(304, [("Content-Length", "10")]), "GET", .none),
            ("304 with TE and CL", response(304, [("Transfer-Encoding", "chunked"), ("Content-Length", "1")]), "GET", .none),
            ("HEAD with CL", response(200, [("Content-Length", "10")]), "HEAD", .none),
            ("HEAD with TE", response(200, [("Transfer-Encoding", "chunked")]), "HEAD", .none),
            ("HEAD with bad CL", response(200, [("Content-Length", "x")]), "HEAD", .none),
            ("CONNECT 200", response(200, []), "CONNECT", .none),
            ("CONNECT 407", response(407, [("Content-Length", "3")]), "CONNECT", .contentLength(3)),
            ("chunked", response(200, [("Transfer-Encoding", "chunked")]), "GET", .chunked),
            ("CL", response(200, [("Content-Length", "10")]), "GET", .contentLength(10)),
            ("CL list", response(200, [("Content-Length", "10, 10")]), "GET", .contentLength(10)),
            ("CL 0", response(200, [("Content-Length", "0")]), "GET", .contentLength(0)),
            ("CL on 404", response(404, [("Content-Length", "9")]), "GET", .contentLength(9)),
            ("nothing", response(200, []), "GET", .closeDelimited),
            ("nothing 1.0", response(200, [], version: .http10), "GET", .closeDelimited),
            ("lowercase head is not HEAD", response(200, [("Content-Length", "2")]), "head", .contentLength(2)),
        ]
        for (name, head, method, expected) in cases {
            XCTAssertEqual(responseFraming(head, method), .success(expected), name)
        }
    }

    func testInvalidResponseFraming() {
        let cases: [(String, ResponseHead)] = [
            ("TE and CL", response(200, [("Transfer-Encoding", "chunked"), ("Content-Length", "10")])),
            ("CL 5, 6", response(200, [("Content-Length", "5, 6")])),
            ("CL two fields differ", response(200, [("Content-Length", "5"), ("Content-Length", "6")])),
            ("CL -1", response(200, [("Content-Length", "-1")])),
            ("CL abc", response(200, [("Content-Length", "abc")])),
            ("CL overflow", response(200, [("Content-Length", "18446744073709551616")])),
            ("chunked twice", response(200, [("Transfer-Encoding", "chunked, chunked")])),
            // The proxy drops Transfer-Encoding (hop-by-hop), so it cannot pass other codings on.
            ("gzip, chunked", response(200, [("Transfer-Encoding", "gzip, chunked")])),
            ("gzip then chunked fields", response(200, [("Transfer-Encoding", "gzip"), ("Transfer-Encoding", "Chunked")])),
            ("chunked, gzip", response(200, [("Transfer-Encoding", "chunked, gzip")])),
            ("gzip", response(200, [("Transfer-Encoding", "gzip")])),
            ("identity", response(200, [("Transfer-Encoding", "identity")])),
            ("empty TE", response(200, [("Transfer-Encoding", " ")])),
        ]
        for (name, head) in cases {
            assertMalformed(responseFraming(head, "GET"), name)
        }
    }

    func testFramingOfParsedHeads() throws {
        let raw = bytes("POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc")
        guard let (head, length) = HeadParser.parseRequest(raw, maxHeaderBytes: 1024).completed else { return XCTFail() }
        XCTAssertEqual(try BodyFraming.request(head), .contentLength(3))
        XCTAssertEqual(raw.count - length, 3)
    }
}
