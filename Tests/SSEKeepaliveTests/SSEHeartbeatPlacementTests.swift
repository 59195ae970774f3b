import XCTest
@testable import SSEKeepalive

final class SSEHeartbeatPlacementTests: XCTestCase {
    /// The heartbeat written after `payload` has been forwarded, or nil.
    func heartbeat(after payload: String, comment: String = "heartbeat", blankLine: Bool = true) -> String? {
        let s = EventStreamDriver(heartbeat: HeartbeatBytes(comment: comment, blankLine: blankLine))
        s.upstream(Array(payload.utf8))
        guard let form = s.idle() else { return nil }
        return String(decoding: s.heartbeat.bytes(form), as: UTF8.self)
    }

    func testHeartbeatBytes() {
        let d = HeartbeatBytes(comment: "heartbeat", blankLine: true)
        XCTAssertEqual(d.boundary, Array(":heartbeat\n\n".utf8))
        XCTAssertEqual(d.line, Array(":heartbeat\n".utf8))
        XCTAssertEqual(d.bytes(.boundary), d.boundary)
        XCTAssertEqual(d.bytes(.line), d.line)
        XCTAssertEqual(HeartbeatBytes(), d)
        let n = HeartbeatBytes(comment: "ping", blankLine: false)
        XCTAssertEqual(n.boundary, Array(":ping\n".utf8))
        XCTAssertEqual(n.line, Array(":ping\n".utf8))
        XCTAssertEqual(HeartbeatBytes(comment: "", blankLine: true).boundary, Array(":\n\n".utf8))
        XCTAssertEqual(HeartbeatBytes(comment: "caf\u{E9}", blankLine: true).line, [0x3A, 0x63, 0x61, 0x66, 0xC3, 0xA9, 0x0A])
    }

    func testCommentCannotEndTheLineEarly() {
        XCTAssertTrue(HeartbeatBytes.isValidComment("keep alive"))
        XCTAssertFalse(HeartbeatBytes.isValidComment("a\ndata: x"))
        XCTAssertFalse(HeartbeatBytes.isValidComment("a\rb"))
        let h = HeartbeatBytes(comment: "a\r\ndata: x", blankLine: true)
        XCTAssertEqual(h.comment, "adata: x")
        XCTAssertEqual(h.boundary, Array(":adata: x\n\n".utf8))
        XCTAssertEqual(WHATWGEventParser.parse(h.boundary + Array("data: y\n\n".utf8)),
                       [SSEEvent(type: "message", data: "y", lastEventId: "")])
    }

    func testStartOfStream() {
        XCTAssertEqual(heartbeat(after: ""), ":heartbeat\n\n")
    }

    func testInsideAnEventAtALineBoundary() {
        XCTAssertEqual(heartbeat(after: "data: x\n"), ":heartbeat\n")
        XCTAssertEqual(heartbeat(after: "data: x\r\n"), ":heartbeat\n")
        XCTAssertEqual(heartbeat(after: "data: x\rdata: y\n"), ":heartbeat\n")
    }

    func testNeverMidLine() {
        XCTAssertNil(heartbeat(after: "data: x"))
        XCTAssertNil(heartbeat(after: "data: x\n\ndata"))
        XCTAssertNil(heartbeat(after: ":"))
    }

    func testNeverRightAfterCR() {
        XCTAssertNil(heartbeat(after: "data: x\r"))
        XCTAssertNil(heartbeat(after: "data: x\r\r"))
        XCTAssertNil(heartbeat(after: "data: x\r\n\r"))
    }

    func testAtEventBoundaries() {
        XCTAssertEqual(heartbeat(after: "data: x\n\n"), ":heartbeat\n\n")
        XCTAssertEqual(heartbeat(after: "\r\n\r\n"), ":heartbeat\n\n")
        XCTAssertEqual(heartbeat(after: "data: x\r\n\r\n"), ":heartbeat\n\n")
        XCTAssertEqual(heartbeat(after: "data: x\r\r\n"), ":heartbeat\n\n")
        XCTAssertEqual(heartbeat(after: "\n"), ":heartbeat\n\n")
    }

    func testCustomCommentAndNoBlankLine() {
        XCTAssertEqual(heartbeat(after: "", comment: "ping"), ":ping\n\n")
        XCTAssertEqual(heartbeat(after: "data: x\n", comment: "ping"), ":ping\n")
        XCTAssertEqual(heartbeat(after: "", comment: "ping", blankLine: false), ":ping\n")
        XCTAssertEqual(heartbeat(after: "data: x\n\n", blankLine: false), ":heartbeat\n")
        XCTAssertEqual(heartbeat(after: "\r\n\r\n", comment: "ka", blankLine: false), ":ka\n")
        XCTAssertNil(heartbeat(after: "data: x\r", blankLine: false))
    }

    func testCommentAfterBlankLineIsTreatedAsLineBoundary() {
        // Conservative: the cursor does not look at line contents.
        XCTAssertEqual(heartbeat(after: "data: x\n\n:upstream comment\n"), ":heartbeat\n")
    }

    func testRepeatedHeartbeatsOnAnIdleStream() {
        let s = EventStreamDriver(heartbeat: HeartbeatBytes())
        XCTAssertEqual(s.idle(), .boundary)
        XCTAssertEqual(s.idle(), .boundary)
        s.upstream(Array("data: a\n".utf8))
        XCTAssertEqual(s.idle(), .line)
        XCTAssertEqual(s.idle(), .line)
        s.upstream(Array("\n".utf8))
        XCTAssertEqual(s.idle(), .boundary)
        XCTAssertEqual(String(decoding: s.output, as: UTF8.self),
                       ":heartbeat\n\n:heartbeat\n\ndata: a\n:heartbeat\n:heartbeat\n\n:heartbeat\n\n")
        XCTAssertEqual(WHATWGEventParser.parse(s.output), [SSEEvent(type: "message", data: "a", lastEventId: "")])

        let n = EventStreamDriver(heartbeat: HeartbeatBytes(blankLine: false))
        XCTAssertEqual(n.idle(), .boundary)
        XCTAssertEqual(n.idle(), .line)   // a comment line after a blank line: line boundary
        XCTAssertEqual(String(decoding: n.output, as: UTF8.self), ":heartbeat\n:heartbeat\n")
    }

    func testCRLFSplitAcrossReadsGetsNoHeartbeatInBetween() {
        let s = EventStreamDriver(heartbeat: HeartbeatBytes())
        s.upstream(Array("id: 1\r\ndata: x\r".utf8))
        XCTAssertNil(s.idle())
        s.upstream(Array("\n\r".utf8))
        XCTAssertNil(s.idle())
        s.upstream(Array("\n".utf8))
        XCTAssertEqual(s.idle(), .boundary)
        XCTAssertEqual(WHATWGEventParser.parse(s.output), [SSEEvent(type: "message", data: "x", lastEventId: "1")])
    }

    func testHeartbeatAfterCRWouldDispatchAHalfBuiltEvent() {
        // What the cursor prevents: a heartbeat between the CR and LF of a CRLF.
        let bad = Array("data: a\r:heartbeat\n\ndata: b\r\n\r\n".utf8)
        XCTAssertEqual(WHATWGEventParser.parse(bad).map(\.data), ["a", "b"])
        let good = Array("data: a\r\ndata: b\r\n\r\n".utf8)
        XCTAssertEqual(WHATWGEventParser.parse(good).map(\.data), ["a\nb"])
    }

    func testHeartbeatBeforeFirstByteDropsTheBOM() {
        let s = EventStreamDriver(heartbeat: HeartbeatBytes())
        s.idle()
        s.upstream([0xEF])
        s.upstream([0xBB])
        XCTAssertEqual(s.output, Array(":heartbeat\n\n".utf8))   // held back
        XCTAssertEqual(s.idle(), .boundary)                       // still nothing forwarded: heartbeats go on
        s.upstream([0xBF] + Array("data: x\n\n".utf8))
        XCTAssertTrue(s.bomStripped)
        XCTAssertEqual(String(decoding: s.output, as: UTF8.self), ":heartbeat\n\n:heartbeat\n\ndata: x\n\n")
        XCTAssertEqual(WHATWGEventParser.parse(s.output), [SSEEvent(type: "message", data: "x", lastEventId: "")])

        // Without the drop the BOM would corrupt the first field name.
        let corrupted = Array(":heartbeat\n\n".utf8) + LeadingBOM.bytes + Array("data: x\n\n".utf8)
        XCTAssertEqual(WHATWGEventParser.parse(corrupted), [])

        // No heartbeat before the first byte: the BOM is forwarded untouched.
        let t = EventStreamDriver(heartbeat: HeartbeatBytes())
        t.upstream(LeadingBOM.bytes + Array("data: x\n\n".utf8))
        XCTAssertFalse(t.bomStripped)
        XCTAssertEqual(t.output, LeadingBOM.bytes + Array("data: x\n\n".utf8))

        // A partial BOM at end of stream is kept.
        let u = EventStreamDriver(heartbeat: HeartbeatBytes())
        u.idle()
        u.upstream([0xEF, 0xBB])
        u.endOfStream()
        XCTAssertEqual(u.output, Array(":heartbeat\n\n".utf8) + [0xEF, 0xBB])
    }
}
