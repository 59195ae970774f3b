import XCTest
@testable import SSEKeepalive

/// Helpers shared by the Proxy*Tests files (all names prefixed `proxy`/`Proxy`),
/// plus a check that the helpers themselves behave (ProxySupportTests).

func proxyRequest(_ fields: [(String, String)], method: String = "GET", target: String = "/",
                  version: HTTPVersion = .http11, host: Bool = true) -> RequestHead {
    RequestHead(method: method, target: target, version: version,
                headers: HTTPHeaders((host ? [("Host", "example.test")] : []) + fields))
}

func proxyResponse(_ status: Int = 200, _ fields: [(String, String)], reason: String = "OK",
                   version: HTTPVersion = .http11) -> ResponseHead {
    ResponseHead(version: version, status: status, reason: reason, headers: HTTPHeaders(fields))
}

/// Field names in order, as sent.
func proxyNames(_ headers: HTTPHeaders) -> [String] { headers.fields.map(\.name) }

/// Number of fields named `name` (case-insensitive).
func proxyCount(_ headers: HTTPHeaders, _ name: String) -> Int { headers.values(name).count }

/// Serialises a request head and re-parses it with HeadParser: the result
/// must be a valid, complete head of exactly the serialised length.
func proxyReparse(_ head: RequestHead, file: StaticString = #filePath, line: UInt = #line) -> RequestHead? {
    let wire = head.serialized()
    switch HeadParser.parseRequest(wire, maxHeaderBytes: 1 << 20) {
    case .complete(let parsed, let length):
        XCTAssertEqual(length, wire.count, "head length", file: file, line: line)
        return parsed
    case .incomplete:
        XCTFail("serialised request head incomplete: \(String(decoding: wire, as: UTF8.self))", file: file, line: line)
    case .failed(let error):
        XCTFail("serialised request head rejected (\(error)): \(String(decoding: wire, as: UTF8.self))", file: file, line: line)
    }
    return nil
}

func proxyReparse(_ head: ResponseHead, file: StaticString = #filePath, line: UInt = #line) -> ResponseHead? {
    let wire = head.serialized()
    switch HeadParser.parseResponse(wire, maxHeaderBytes: 1 << 20) {
    case .complete(let parsed, let length):
        XCTAssertEqual(length, wire.count, "head length", file: file, line: line)
        return parsed
    case .incomplete:
        XCTFail("serialised response head incomplete: \(String(decoding: wire, as: UTF8.self))", file: file, line: line)
    case .failed(let error):
        XCTFail("serialised response head rejected (\(error)): \(String(decoding: wire, as: UTF8.self))", file: file, line: line)
    }
    return nil
}


func proxyBytes(_ s: String) -> [UInt8] { Array(s.utf8) }
func proxyString(_ b: [UInt8]) -> String { String(decoding: b, as: UTF8.self) }

final class ProxySupportTests: XCTestCase {
    func testReparseRoundTripsHeads() {
        let request = proxyRequest([("Accept", "text/event-stream"), ("X-A", "1")], target: "/a?b=c")
        XCTAssertEqual(proxyReparse(request), request)
        let response = proxyResponse(200, [("Content-Type", "text/plain"), ("Content-Length", "3")])
        XCTAssertEqual(proxyReparse(response), response)
    }

    func testRNGIsDeterministic() {
        var a = SeededRNG(seed: 7), b = SeededRNG(seed: 7)
        XCTAssertEqual((0..<5).map { _ in a.next() }, (0..<5).map { _ in b.next() })
    }
}
