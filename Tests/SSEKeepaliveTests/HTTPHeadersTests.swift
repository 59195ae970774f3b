import XCTest
@testable import SSEKeepalive

final class HTTPHeadersTests: XCTestCase {
    func testLookupIsCaseInsensitiveAndKeepsOrder() {
        var h = HTTPHeaders([("Content-Type", "text/plain"), ("x-a", "1"), ("X-A", "2")])
        XCTAssertEqual(h["content-type"], "text/plain")
        XCTAssertEqual(h.values("x-A"), ["1", "2"])
        h.set("X-a", "3")
        XCTAssertEqual(h.values("x-a"), ["3"])
        XCTAssertEqual(h.fields.map(\.name), ["Content-Type", "X-a"])
    }

    func testTokensSplitsListsAndLowercases() {
        let h = HTTPHeaders([("Connection", "Keep-Alive, X-Foo"), ("connection", " close ,")])
        XCTAssertEqual(h.tokens("Connection"), ["keep-alive", "x-foo", "close"])
    }

    func testCaseInsensitiveCompareOnlyFoldsLetters() {
        XCTAssertTrue("Content-Length".asciiCaseInsensitiveEquals("content-length"))
        XCTAssertFalse("a[".asciiCaseInsensitiveEquals("a{"))
        XCTAssertFalse("ab".asciiCaseInsensitiveEquals("abc"))
    }

    func testSerializedRequestHead() {
        let head = RequestHead(method: "GET", target: "/a?b=1", version: .http11,
                               headers: HTTPHeaders([("Host", "x")]))
        XCTAssertEqual(String(decoding: head.serialized(), as: UTF8.self), "GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(head.path, "/a")
    }
}
