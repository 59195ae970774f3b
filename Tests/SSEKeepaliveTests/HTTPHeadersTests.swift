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

    func testContainsTokenLooksAtEveryListElementOfEveryField() {
        let h = HTTPHeaders([("Accept", "text/html ,, Text/Event-Stream;q=0.9"), ("Connection", "a"),
                             ("connection", " Keep-Alive ,")])
        XCTAssertTrue(h.containsToken("connection", "keep-alive"))
        XCTAssertTrue(h.containsToken("Connection", "A"))
        XCTAssertFalse(h.containsToken("Connection", "close"))
        XCTAssertFalse(h.containsToken("Upgrade", "a"))
        var seen: [String] = []
        XCTAssertFalse(h.containsToken("Accept") { seen.append(String($0)); return false })
        XCTAssertEqual(seen, ["text/html", "Text/Event-Stream;q=0.9"], "trimmed, empty elements skipped, as received")
        XCTAssertTrue(HeaderPolicy.acceptsEventStream(h))
        XCTAssertFalse(HeaderPolicy.acceptsEventStream(HTTPHeaders([("Accept", "text/event-streams, text/plain")])))
    }

    func testRemoveAllSeesEachFieldOnceInOrderAndKeepsTheRestInOrder() {
        var h = HTTPHeaders([("A", "1"), ("B", "2"), ("a", "3"), ("C", "4"), ("A", "5")])
        var seen: [String] = []
        h.removeAll { seen.append($0.value); return $0.name.asciiCaseInsensitiveEquals("a") }
        XCTAssertEqual(seen, ["1", "2", "3", "4", "5"])
        XCTAssertEqual(h.fields.map(\.value), ["2", "4"])
        h.remove("nothing")
        XCTAssertEqual(h.fields.map(\.value), ["2", "4"])
    }

    func testSerializedResponseHeadAndVersions() {
        let head = ResponseHead(version: .http10, status: 204, reason: "No Content",
                                headers: HTTPHeaders([("X-Long-Name-Of-A-Field", String(repeating: "v", count: 40)), ("B", "")]))
        XCTAssertEqual(String(decoding: head.serialized(), as: UTF8.self),
                       "HTTP/1.0 204 No Content\r\nX-Long-Name-Of-A-Field: \(String(repeating: "v", count: 40))\r\nB: \r\n\r\n")
        let bare = ResponseHead(version: HTTPVersion(major: 1, minor: 1), status: 200, reason: "", headers: HTTPHeaders())
        XCTAssertEqual(String(decoding: bare.serialized(), as: UTF8.self), "HTTP/1.1 200 \r\n\r\n")
    }

    func testLowercasedASCIIFoldsOnlyASCIILetters() {
        XCTAssertEqual("Keep-Alive".lowercasedASCII(), "keep-alive")
        XCTAssertEqual("already-lower".lowercasedASCII(), "already-lower")
        XCTAssertEqual("X-A-Much-Longer-Header-Name-Ä".lowercasedASCII(), "x-a-much-longer-header-name-Ä")
        XCTAssertEqual("".lowercasedASCII(), "")
        XCTAssertEqual("[AZ@]"[...].lowercasedASCII(), "[az@]")
    }
}
