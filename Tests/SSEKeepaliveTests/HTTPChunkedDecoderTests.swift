import XCTest
@testable import SSEKeepalive

final class HTTPChunkedDecoderTests: XCTestCase {
    struct Message {
        var name: String
        var encoded: [UInt8]
        var payload: [UInt8]
    }

    static func pattern(_ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) } }

    static var messages: [Message] {
        let big = pattern(0x1000)
        return [
            Message(name: "simple", encoded: bytes("5\r\nhello\r\n0\r\n\r\n"), payload: bytes("hello")),
            Message(name: "two chunks", encoded: bytes("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), payload: bytes("hello world")),
            Message(name: "empty body", encoded: bytes("0\r\n\r\n"), payload: []),
            Message(name: "extensions",
                    encoded: bytes("5;ext=1;foo;q=\"a;b\\\"c\\\\\"\r\nhello\r\n6 ; x = y ;z\r\n world\r\n0;last\r\n\r\n"),
                    payload: bytes("hello world")),
            Message(name: "quoted CRLF-looking ext", encoded: bytes("3;a=\"\\r\\n\"\r\nabc\r\n0\r\n\r\n"), payload: bytes("abc")),
            Message(name: "uppercase hex", encoded: bytes("A\r\n0123456789\r\n0\r\n\r\n"), payload: bytes("0123456789")),
            Message(name: "leading zeros", encoded: bytes("0003\r\nabc\r\n000\r\n\r\n"), payload: bytes("abc")),
            Message(name: "trailers",
                    encoded: bytes("3\r\nabc\r\n0\r\nExpires: never\r\nX-T:a b\t\r\nX-Empty:\r\n\r\n"),
                    payload: bytes("abc")),
            Message(name: "payload containing CRLF and framing-like bytes",
                    encoded: bytes("7\r\n0\r\n\r\n\r\n\r\n0\r\n\r\n"), payload: bytes("0\r\n\r\n\r\n")),
            Message(name: "binary payload", encoded: bytes("4\r\n") + [0, 0xFF, 0x0D, 0x0A] + bytes("\r\n0\r\n\r\n"),
                    payload: [0, 0xFF, 0x0D, 0x0A]),
            Message(name: "4 KiB chunk", encoded: bytes("1000\r\n") + big + bytes("\r\n1\r\nz\r\n0\r\n\r\n"), payload: big + bytes("z")),
            Message(name: "SSE events", encoded: bytes("d\r\ndata: hello\n\n\r\n1\r\n:\r\n1\r\n\n\r\n0\r\n\r\n"),
                    payload: bytes("data: hello\n\n:\n")),
        ]
    }

    static let following = bytes("HTTP/1.1 200 OK\r\n")

    private func run(_ feeds: [[UInt8]], file: StaticString = #filePath, line: UInt = #line) -> ChunkedRun? {
        var decoder = ChunkedDecoder()
        do {
            return try driveChunked(feeds, decoder: &decoder, file: file, line: line)
        } catch {
            XCTFail("unexpected \(error)", file: file, line: line)
            return nil
        }
    }

    private func check(_ m: Message, _ feeds: [[UInt8]], _ label: String,
                       file: StaticString = #filePath, line: UInt = #line) {
        guard let r = run(feeds, file: file, line: line) else { return }
        XCTAssertEqual(r.payload, m.payload, "\(m.name) \(label)", file: file, line: line)
        XCTAssertEqual(r.doneAt, m.encoded.count, "\(m.name) \(label)", file: file, line: line)
        XCTAssertEqual(r.rest, Self.following, "\(m.name) \(label)", file: file, line: line)
    }

    func testWholeMessages() {
        for m in Self.messages {
            check(m, [m.encoded + Self.following], "whole")
        }
    }

    func testSplitAtEveryPosition() {
        for m in Self.messages {
            let all = m.encoded + Self.following
            for p in 0...all.count {
                check(m, [Array(all[..<p]), Array(all[p...])], "split at \(p)")
            }
        }
    }

    func testOneByteAtATime() {
        for m in Self.messages {
            check(m, (m.encoded + Self.following).map { [$0] }, "bytewise")
        }
    }

    func testDoneIsNotReportedBeforeTheEnd() {
        for m in Self.messages {
            for p in 0..<m.encoded.count {
                guard let r = run([Array(m.encoded[..<p])]) else { continue }
                XCTAssertNil(r.doneAt, "\(m.name) prefix \(p)")
            }
        }
    }

    func testFramingStepsAndState() throws {
        var d = ChunkedDecoder()
        var (used, step) = try d.consumeFraming(bytes("1a;x\r\nrest"))
        XCTAssertEqual(used, 6)
        XCTAssertEqual(step, .payload(26))
        XCTAssertEqual(d.payloadRemaining, 26)
        d.consumePayload(20)
        XCTAssertEqual(d.payloadRemaining, 6)
        d.consumePayload(6)
        XCTAssertEqual(d.payloadRemaining, 0)
        (used, step) = try d.consumeFraming(bytes("\r"))
        XCTAssertEqual(used, 1)
        XCTAssertEqual(step, .needMore)
        (used, step) = try d.consumeFraming(bytes("\n0\r\n\r\nnext"))
        XCTAssertEqual(used, 6)
        XCTAssertEqual(step, .done)
        XCTAssertTrue(d.isDone)
        (used, step) = try d.consumeFraming(bytes("more"))
        XCTAssertEqual(used, 0)
        XCTAssertEqual(step, .done)
    }

    func testBigSizesAreReportedNotBuffered() throws {
        var d = ChunkedDecoder()
        let (used, step) = try d.consumeFraming(bytes("fffffffffffffff\r\n"))
        XCTAssertEqual(used, 17)
        XCTAssertEqual(step, .payload(0xfff_ffff_ffff_ffff))
        d.consumePayload(1 << 40)
        XCTAssertEqual(d.payloadRemaining, 0xfff_ffff_ffff_ffff - (1 << 40))

        var e = ChunkedDecoder()
        XCTAssertEqual(try e.consumeFraming(bytes("7FFFFFFF\r\n")).step, .payload(0x7FFF_FFFF))
    }

    func testEncodingRoundTrip() {
        XCTAssertEqual(ChunkedEncoding.chunkHeader(0), bytes("0\r\n"))
        XCTAssertEqual(ChunkedEncoding.chunkHeader(1), bytes("1\r\n"))
        XCTAssertEqual(ChunkedEncoding.chunkHeader(26), bytes("1a\r\n"))
        XCTAssertEqual(ChunkedEncoding.chunkHeader(255), bytes("ff\r\n"))
        XCTAssertEqual(ChunkedEncoding.chunkHeader(4096), bytes("1000\r\n"))
        XCTAssertEqual(ChunkedEncoding.chunkHeader(Int.max), bytes("7fffffffffffffff\r\n"))
        XCTAssertEqual(ChunkedEncoding.chunkEnd, bytes("\r\n"))
        XCTAssertEqual(ChunkedEncoding.lastChunk, bytes("0\r\n\r\n"))

        let chunks = [Self.pattern(1), Self.pattern(17), Self.pattern(300), Self.pattern(16)]
        var encoded: [UInt8] = []
        for c in chunks { encoded += ChunkedEncoding.chunkHeader(c.count) + c + ChunkedEncoding.chunkEnd }
        encoded += ChunkedEncoding.lastChunk
        let r = run([encoded])
        XCTAssertEqual(r?.payload, chunks.flatMap { $0 })
        XCTAssertEqual(r?.doneAt, encoded.count)
    }

    // MARK: invalid

    static let invalid: [(String, [UInt8])] = [
        ("overflow 16 digits", bytes("1000000000000000\r\n")),
        ("overflow leading zeros", bytes("0000000000000001\r\n")),
        ("negative", bytes("-1\r\n")),
        ("plus sign", bytes("+5\r\nhello\r\n0\r\n\r\n")),
        ("0x prefix", bytes("0x10\r\n")),
        ("leading space", bytes(" 5\r\nhello\r\n0\r\n\r\n")),
        ("leading tab", bytes("\t5\r\n")),
        ("trailing space without extension", bytes("5 \r\nhello\r\n0\r\n\r\n")),
        ("trailing space after extension name", bytes("5;a \r\nhello\r\n0\r\n\r\n")),
        ("trailing space after extension value", bytes("5;a=b\t\r\nhello\r\n0\r\n\r\n")),
        ("trailing space after quoted value", bytes("5;a=\"b\" \r\nhello\r\n0\r\n\r\n")),
        ("text after quoted value", bytes("5;a=\"b\"c\r\nhello\r\n0\r\n\r\n")),
        ("unterminated quoted value", bytes("5;a=\"b\r\nhello\r\n0\r\n\r\n")),
        ("missing size", bytes("\r\nhello\r\n")),
        ("garbage", bytes("zz\r\n")),
        ("garbage after size", bytes("5x\r\nhello\r\n")),
        ("missing CRLF after data", bytes("5\r\nhelloX\r\n0\r\n\r\n")),
        ("CR then garbage after data", bytes("5\r\nhello\rX0\r\n\r\n")),
        ("bare LF after data", bytes("5\r\nhello\n0\r\n\r\n")),
        ("bare LF after size", bytes("5\nhello\r\n0\r\n\r\n")),
        ("bare LF after last chunk", bytes("5\r\nhello\r\n0\n\r\n")),
        ("bare LF as final line", bytes("5\r\nhello\r\n0\r\n\n")),
        ("bare CR after size", bytes("5\rhello\r\n")),
        ("bare CR in extension", bytes("5;a\rb\r\nhello\r\n0\r\n\r\n")),
        ("bare CR in quoted extension", bytes("5;a=\"x\ry\"\r\nhello\r\n0\r\n\r\n")),
        ("control in extension", bytes("5;a=\"x\u{1}\"\r\nhello\r\n0\r\n\r\n")),
        ("NUL in extension name", bytes("5;a\u{0}\r\nhello\r\n")),
        ("empty extension", bytes("5;\r\nhello\r\n0\r\n\r\n")),
        ("extension without value", bytes("5;a=\r\nhello\r\n0\r\n\r\n")),
        ("bad extension name", bytes("5;(a)\r\nhello\r\n")),
        ("over-long line", bytes("5;") + [UInt8](repeating: 0x61, count: 5000) + bytes("\r\nhello\r\n0\r\n\r\n")),
        ("trailer obs-fold", bytes("0\r\nA: b\r\n c\r\n\r\n")),
        ("trailer space before colon", bytes("0\r\nA : b\r\n\r\n")),
        ("trailer empty name", bytes("0\r\n: b\r\n\r\n")),
        ("trailer missing colon", bytes("0\r\nAb\r\n\r\n")),
        ("trailer NUL", bytes("0\r\nA: \u{0}\r\n\r\n")),
        ("trailer DEL", bytes("0\r\nA: \u{7F}\r\n\r\n")),
        ("trailer bare LF", bytes("0\r\nA: b\n\r\n")),
        ("trailer bare CR", bytes("0\r\nA: b\rc\r\n\r\n")),
        ("final bare CR", bytes("0\r\n\r\r")),
    ]

    func testInvalidInputs() {
        for (name, input) in Self.invalid {
            for feeds in [[input], input.map { [$0] }] {
                var d = ChunkedDecoder()
                do {
                    let r = try driveChunked(feeds, decoder: &d)
                    XCTFail("\(name): accepted, doneAt \(String(describing: r.doneAt))")
                } catch {
                    guard case .malformed = error else { XCTFail("\(name): \(error)"); continue }
                }
                // A failed decoder stays failed.
                XCTAssertThrowsError(try d.consumeFraming(bytes("0\r\n\r\n")), name)
            }
        }
    }

    func testLimits() {
        var d = ChunkedDecoder(maxLineBytes: 8, maxTrailerBytes: 16)
        XCTAssertEqual(try d.consumeFraming(bytes("5;abcdef\r\n")).step, .payload(5))
        var e = ChunkedDecoder(maxLineBytes: 8, maxTrailerBytes: 16)
        XCTAssertThrowsError(try e.consumeFraming(bytes("5;abcdefg\r\n")))

        var t = ChunkedDecoder(maxLineBytes: 8, maxTrailerBytes: 16)
        XCTAssertEqual(try t.consumeFraming(bytes("0\r\nA: 0123456789\r\n")).step, .needMore)
        XCTAssertThrowsError(try t.consumeFraming(bytes("\r\n")))
        var u = ChunkedDecoder(maxLineBytes: 8, maxTrailerBytes: 16)
        XCTAssertEqual(try u.consumeFraming(bytes("0\r\nA: 012345678\r\n\r\n")).step, .done)
    }
}
