import XCTest
@testable import SSEKeepalive

/// Checks of the reference parsers themselves (they are the oracle of the
/// property test, so they must follow the spec).
final class SSEReferenceParserTests: XCTestCase {
    func parse(_ s: String) -> [SSEEvent] { WHATWGEventParser.parse(Array(s.utf8)) }
    func ev(_ data: String, _ type: String = "message", id: String = "") -> SSEEvent {
        SSEEvent(type: type, data: data, lastEventId: id)
    }

    func testSpecExamples() {
        // WHATWG examples.
        XCTAssertEqual(parse("data: YHOO\ndata: +2\ndata: 10\n\n"), [ev("YHOO\n+2\n10")])
        XCTAssertEqual(parse(": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n"),
                       [ev("first event", id: "1"), ev("second event")])   // third is incomplete
        XCTAssertEqual(parse("data\n\ndata\ndata\n\ndata:"), [ev(""), ev("\n")])
        XCTAssertEqual(parse("data:test\n\ndata: test\n\n"), [ev("test"), ev("test")])
    }

    func testLineEndings() {
        XCTAssertEqual(parse("data: a\r\rdata: b\r\n\r\ndata: c\n\n"), [ev("a"), ev("b"), ev("c")])
        XCTAssertEqual(parse("data: a\rdata: b\n\r\n"), [ev("a\nb")])
    }

    func testFields() {
        XCTAssertEqual(parse("event: add\ndata: 1\n\ndata: 2\n\n"), [ev("1", "add"), ev("2")])
        XCTAssertEqual(parse("id: 7\ndata: a\n\nid: x\0y\ndata: b\n\n"), [ev("a", id: "7"), ev("b", id: "7")])
        XCTAssertEqual(parse("id: 7\n\nid\ndata: b\n\n"), [ev("b", id: "")])
        XCTAssertEqual(parse("dat: a\ndata:  two spaces\n\n"), [ev(" two spaces")])
        XCTAssertEqual(parse("event: only\n\ndata: x\n\n"), [ev("x")])   // an empty event resets the type
        let r = WHATWGEventParser.parseAll(Array("retry: 1500\nretry: 15x\nretry:\n\n".utf8))
        XCTAssertEqual(r.reconnectionTime, 1500)
        XCTAssertEqual(r.events, [])
    }

    func testBOMOnlyAtStart() {
        let bom: [UInt8] = [0xEF, 0xBB, 0xBF]
        XCTAssertEqual(WHATWGEventParser.parse(bom + Array("data: a\n\n".utf8)), [ev("a")])
        XCTAssertEqual(WHATWGEventParser.parse(bom + bom + Array("data: a\n\n".utf8)), [])
        XCTAssertEqual(WHATWGEventParser.parse(Array("data: a\n\n".utf8) + bom + Array("data: b\n\n".utf8)), [ev("a")])
    }

    func testInvalidUTF8IsReplaced() {
        XCTAssertEqual(WHATWGEventParser.parse(Array("data: ".utf8) + [0xFF, 0xC3] + Array("\n\n".utf8)),
                       [ev("\u{FFFD}\u{FFFD}")])
    }

    func testUnterminatedTailIsDiscarded() {
        XCTAssertEqual(parse("data: a\n\ndata: b\n"), [ev("a")])
        XCTAssertEqual(parse("data: a\n\ndata: b"), [ev("a")])
        XCTAssertEqual(parse("data: a\n\nid: 3"), [ev("a")])
        XCTAssertEqual(WHATWGEventParser.parseAll(Array("id: 3".utf8)).lastEventId, "")
    }

    /// Why `heartbeat.blank_line: false` exists: once an id has been seen,
    /// httpx-sse 0.4 dispatches an empty message at every blank line, so the
    /// boundary heartbeat ":heartbeat\n\n" shows up as an event there, while
    /// WHATWG parsers (browsers) ignore it. ":heartbeat\n" is invisible to both.
    func testHTTPXStyleDispatchesAtEveryBlankLineAfterAnId() {
        let upstream = Array("id: 1\ndata: a\n\n".utf8)
        let withBlank = upstream + HeartbeatBytes(blankLine: true).boundary
        let withoutBlank = upstream + HeartbeatBytes(blankLine: false).boundary

        XCTAssertEqual(WHATWGEventParser.parse(withBlank), WHATWGEventParser.parse(upstream))
        XCTAssertEqual(WHATWGEventParser.parse(withoutBlank), WHATWGEventParser.parse(upstream))

        XCTAssertEqual(HTTPXStyleEventParser.parse(upstream), [ev("a", id: "1")])
        XCTAssertEqual(HTTPXStyleEventParser.parse(withBlank), [ev("a", id: "1"), ev("", id: "1")])
        XCTAssertEqual(HTTPXStyleEventParser.parse(withoutBlank), HTTPXStyleEventParser.parse(upstream))

        // Before any id, a lone blank line dispatches nothing in httpx style either.
        XCTAssertEqual(HTTPXStyleEventParser.parse(Array(":heartbeat\n\ndata: a\n\n".utf8)), [ev("a")])
        // retry alone dispatches in httpx style (not in WHATWG).
        XCTAssertEqual(HTTPXStyleEventParser.parse(Array("retry: 5\n\n".utf8)),
                       [SSEEvent(type: "message", data: "", lastEventId: "", retry: 5)])
        XCTAssertEqual(WHATWGEventParser.parse(Array("retry: 5\n\n".utf8)), [])
    }
}
