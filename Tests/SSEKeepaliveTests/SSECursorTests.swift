import XCTest
@testable import SSEKeepalive

/// An independent byte-by-byte model of the cursor: it tracks the current
/// line's length, whether the last byte was a CR, and whether the last
/// terminated line was empty, then maps that onto a Position.
struct ReferenceCursor {
    var lineLength = 0
    var lastByteWasCR = false
    var lastTerminatedLineWasEmpty = true   // the start of stream acts like a blank line

    mutating func feed(_ byte: UInt8) {
        if lastByteWasCR && byte == 0x0A {
            lastByteWasCR = false          // the LF of a CRLF: the line already ended at the CR
            return
        }
        lastByteWasCR = false
        if byte == 0x0D || byte == 0x0A {
            lastTerminatedLineWasEmpty = lineLength == 0
            lineLength = 0
            lastByteWasCR = byte == 0x0D
        } else {
            lineLength += 1
        }
    }

    mutating func feed(_ bytes: [UInt8]) { for b in bytes { feed(b) } }

    var position: SSECursor.Position {
        if lastByteWasCR { return .afterCR(lineWasEmpty: lastTerminatedLineWasEmpty) }
        if lineLength > 0 { return .midLine }
        return lastTerminatedLineWasEmpty ? .eventBoundary : .lineBoundary
    }
}

let allPositions: [SSECursor.Position] = [
    .eventBoundary, .lineBoundary, .midLine, .afterCR(lineWasEmpty: true), .afterCR(lineWasEmpty: false),
]

/// Bytes that bring a fresh cursor (and the reference) to each position.
func bytesReaching(_ position: SSECursor.Position) -> [UInt8] {
    switch position {
    case .eventBoundary: return Array("data: a\n\n".utf8)
    case .lineBoundary: return Array("data: a\n".utf8)
    case .midLine: return Array("data: a".utf8)
    case .afterCR(lineWasEmpty: true): return Array("data: a\n\r".utf8)
    case .afterCR(lineWasEmpty: false): return Array("data: a\r".utf8)
    }
}

final class SSECursorTests: XCTestCase {
    let CR: UInt8 = 0x0D, LF: UInt8 = 0x0A, X: UInt8 = UInt8(ascii: "x")

    func testStartsAtEventBoundary() {
        let c = SSECursor()
        XCTAssertEqual(c.position, .eventBoundary)
        XCTAssertEqual(c.safeHeartbeat, .boundary)
    }

    func testEveryTransitionForEveryByteClass() {
        typealias P = SSECursor.Position
        let table: [(P, UInt8, P)] = [
            (.eventBoundary, CR, .afterCR(lineWasEmpty: true)),
            (.eventBoundary, LF, .eventBoundary),
            (.eventBoundary, X, .midLine),
            (.lineBoundary, CR, .afterCR(lineWasEmpty: true)),
            (.lineBoundary, LF, .eventBoundary),
            (.lineBoundary, X, .midLine),
            (.midLine, CR, .afterCR(lineWasEmpty: false)),
            (.midLine, LF, .lineBoundary),
            (.midLine, X, .midLine),
            (.afterCR(lineWasEmpty: true), CR, .afterCR(lineWasEmpty: true)),
            (.afterCR(lineWasEmpty: true), LF, .eventBoundary),
            (.afterCR(lineWasEmpty: true), X, .midLine),
            (.afterCR(lineWasEmpty: false), CR, .afterCR(lineWasEmpty: true)),
            (.afterCR(lineWasEmpty: false), LF, .lineBoundary),
            (.afterCR(lineWasEmpty: false), X, .midLine),
        ]
        XCTAssertEqual(table.count, allPositions.count * 3)
        for (from, byte, to) in table {
            var c = SSECursor(position: from)
            c.advance([byte])
            XCTAssertEqual(c.position, to, "\(from) + \(byte)")
            // The same transition reached through real bytes, and in the reference model.
            var viaBytes = SSECursor()
            viaBytes.advance(bytesReaching(from))
            XCTAssertEqual(viaBytes.position, from)
            viaBytes.advance([byte])
            XCTAssertEqual(viaBytes.position, to, "\(from) + \(byte) via bytes")
            var ref = ReferenceCursor()
            ref.feed(bytesReaching(from))
            XCTAssertEqual(ref.position, from)
            ref.feed(byte)
            XCTAssertEqual(ref.position, to, "reference: \(from) + \(byte)")
        }
        // "Other" means every byte that is not CR or LF, including ':' and non-ASCII.
        for byte in UInt8.min...UInt8.max where byte != CR && byte != LF {
            for from in allPositions {
                var c = SSECursor(position: from)
                c.advance([byte])
                XCTAssertEqual(c.position, .midLine)
            }
        }
    }

    func testSafeHeartbeatPerPosition() {
        XCTAssertEqual(SSECursor(position: .eventBoundary).safeHeartbeat, .boundary)
        XCTAssertEqual(SSECursor(position: .lineBoundary).safeHeartbeat, .line)
        XCTAssertNil(SSECursor(position: .midLine).safeHeartbeat)
        XCTAssertNil(SSECursor(position: .afterCR(lineWasEmpty: true)).safeHeartbeat)
        XCTAssertNil(SSECursor(position: .afterCR(lineWasEmpty: false)).safeHeartbeat)
    }

    func testLineEndings() {
        func pos(_ s: String) -> SSECursor.Position {
            var c = SSECursor(); c.advance(Array(s.utf8)); return c.position
        }
        // LF
        XCTAssertEqual(pos("data: x\n"), .lineBoundary)
        XCTAssertEqual(pos("data: x\n\n"), .eventBoundary)
        // CR
        XCTAssertEqual(pos("data: x\r"), .afterCR(lineWasEmpty: false))
        XCTAssertEqual(pos("data: x\r\r"), .afterCR(lineWasEmpty: true))
        XCTAssertEqual(pos("data: x\rdata: y"), .midLine)
        // CRLF
        XCTAssertEqual(pos("data: x\r\n"), .lineBoundary)
        XCTAssertEqual(pos("data: x\r\n\r"), .afterCR(lineWasEmpty: true))
        XCTAssertEqual(pos("data: x\r\n\r\n"), .eventBoundary)
        XCTAssertEqual(pos("\r\n\r\n"), .eventBoundary)
        // Mixed
        XCTAssertEqual(pos("data: x\r\n\n"), .eventBoundary)
        XCTAssertEqual(pos("data: x\n\r\n"), .eventBoundary)
        XCTAssertEqual(pos("data: x\r\r\n"), .eventBoundary)   // CR ends the line, CRLF is the blank line
        XCTAssertEqual(pos("data: x\n\r"), .afterCR(lineWasEmpty: true))
        XCTAssertEqual(pos("a\rb\nc\r\n"), .lineBoundary)
        // Comments are lines like any other.
        XCTAssertEqual(pos(":c\n"), .lineBoundary)
        XCTAssertEqual(pos("data: x\n\n:c\n"), .lineBoundary)
        XCTAssertEqual(pos("\n"), .eventBoundary)
    }

    func testCRAtEndOfReadThenLFInNextRead() {
        var c = SSECursor()
        c.advance(Array("data: x\r".utf8))
        XCTAssertEqual(c.position, .afterCR(lineWasEmpty: false))
        XCTAssertNil(c.safeHeartbeat)
        c.advance([LF])
        XCTAssertEqual(c.position, .lineBoundary)
        XCTAssertEqual(c.safeHeartbeat, .line)
        c.advance([CR])
        XCTAssertEqual(c.position, .afterCR(lineWasEmpty: true))
        XCTAssertNil(c.safeHeartbeat)
        c.advance(Array("\nnext".utf8))
        XCTAssertEqual(c.position, .midLine)
        var d = SSECursor()
        d.advance(Array("data: x\r\n\r".utf8))
        d.advance(Array("\n".utf8))
        XCTAssertEqual(d.position, .eventBoundary)
    }

    func testEmptyReadChangesNothing() {
        for p in allPositions {
            var c = SSECursor(position: p)
            c.advance([])
            XCTAssertEqual(c.position, p)
        }
    }

    func testUnsafeRawBufferPointerOverloadMatches() {
        let bytes = Array("id: 1\r\ndata: x\r\n\r\n".utf8)
        var a = SSECursor(), b = SSECursor()
        a.advance(bytes)
        bytes.withUnsafeBytes { b.advance($0) }
        XCTAssertEqual(a, b)
        XCTAssertEqual(a.position, .eventBoundary)
    }

    /// Exhaustive: every string of length 0...6 over {a, \r, \n, :}, split at
    /// every point into two reads, from every starting position, equals the
    /// byte-by-byte reference (and the byte-by-byte cursor).
    func testLongSegmentsEqualByteByByteExhaustively() {
        let alphabet: [UInt8] = [UInt8(ascii: "a"), CR, LF, UInt8(ascii: ":")]
        var checked = 0
        var strings: [[UInt8]] = [[]]
        var all: [[UInt8]] = [[]]
        for _ in 1...6 {
            strings = strings.flatMap { s in alphabet.map { s + [$0] } }
            all += strings
        }
        XCTAssertEqual(all.count, 1 + 4 + 16 + 64 + 256 + 1024 + 4096)
        for start in allPositions {
            let startBytes = bytesReaching(start)
            for s in all {
                var ref = ReferenceCursor()
                ref.feed(startBytes)
                ref.feed(s)
                var byteByByte = SSECursor(position: start)
                for b in s { byteByByte.advance([b]) }
                XCTAssertEqual(byteByByte.position, ref.position, "byte by byte \(start) \(s)")
                for split in 0...s.count {
                    var c = SSECursor(position: start)
                    c.advance(Array(s[..<split]))
                    c.advance(Array(s[split...]))
                    if c.position != ref.position {
                        XCTFail("\(start) \(s) split at \(split): \(c.position) != \(ref.position)")
                    }
                    checked += 1
                }
                // The "last 3 bytes from .midLine" claim itself, for long segments.
                if s.count > 3 {
                    var tail = SSECursor(position: .midLine)
                    for b in s.suffix(3) { tail.advance([b]) }
                    XCTAssertEqual(tail.position, ref.position)
                }
            }
        }
        XCTAssertGreaterThan(checked, 100_000)
    }

    func testDidWriteHeartbeat() {
        // Boundary form with its blank line: back at an event boundary.
        var c = SSECursor()
        c.didWriteHeartbeat(.boundary, blankLine: true)
        XCTAssertEqual(c.position, .eventBoundary)
        // Boundary form without the blank line at an event boundary: a comment
        // line after a blank line, counted (conservatively) as a line boundary.
        c = SSECursor()
        c.didWriteHeartbeat(.boundary, blankLine: false)
        XCTAssertEqual(c.position, .lineBoundary)
        // Line form at a line boundary: unchanged.
        c = SSECursor(position: .lineBoundary)
        c.didWriteHeartbeat(.line, blankLine: true)
        XCTAssertEqual(c.position, .lineBoundary)
        c = SSECursor(position: .lineBoundary)
        c.didWriteHeartbeat(.line, blankLine: false)
        XCTAssertEqual(c.position, .lineBoundary)
        // Line form at an event boundary: line boundary.
        c = SSECursor(position: .eventBoundary)
        c.didWriteHeartbeat(.line, blankLine: true)
        XCTAssertEqual(c.position, .lineBoundary)
    }

    /// didWriteHeartbeat records exactly the state that advancing over the
    /// heartbeat bytes would give, from every position and for every form.
    func testDidWriteHeartbeatEqualsAdvancingOverItsBytes() {
        for comment in ["heartbeat", "", "x", "ping pong", ":", "\u{E9}t\u{E9}"] {
            for blankLine in [true, false] {
                let hb = HeartbeatBytes(comment: comment, blankLine: blankLine)
                for form in [HeartbeatForm.boundary, .line] {
                    for p in allPositions {
                        var a = SSECursor(position: p)
                        a.didWriteHeartbeat(form, blankLine: hb.blankLine)
                        var b = SSECursor(position: p)
                        b.advance(hb.bytes(form))
                        XCTAssertEqual(a, b, "\(comment) \(blankLine) \(form) \(p)")
                    }
                }
            }
        }
    }
}
