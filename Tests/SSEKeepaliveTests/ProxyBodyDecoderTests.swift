import XCTest
@testable import SSEKeepalive

/// BodyDecoder driven the way the runtime drives it: bytes arrive in feeds and
/// are buffered; after each feed the decoder is asked for instructions until it
/// needs more or the body ends. The window it may read is a prefix of the
/// buffered bytes of random length >= 1 (an evbuffer's first extent). Payload
/// counts are forwarded (moved out of the buffer), skips are dropped.
final class ProxyBodyDecoderTests: XCTestCase {
    struct Run {
        var payload: [UInt8] = []
        var ended = false
        /// Buffered bytes after the end, plus any later feeds: untouched.
        var rest: [UInt8] = []
        /// `endsAtClose` after each feed was processed.
        var endsAtCloseAfterFeed: [Bool] = []
        var endsAtClose = false
        var instructions = 0
    }

    /// - partialForward: forward a random 1...n of each `.payload(n)` instead of all of it.
    func drive(_ framing: BodyFraming, _ feeds: [[UInt8]], rng: inout SeededRNG, partialForward: Bool = false,
               file: StaticString = #filePath, line: UInt = #line) throws(HTTPParseError) -> Run {
        var decoder = BodyDecoder(framing)
        var run = Run()
        var buffer: [UInt8] = []
        for feed in feeds {
            buffer += feed
            if run.ended {
                run.endsAtCloseAfterFeed.append(decoder.endsAtClose)
                continue
            }
            feedLoop: while true {
                run.instructions += 1
                if run.instructions > 1_000_000 { XCTFail("decoder does not progress", file: file, line: line); break }
                let available = buffer.count
                let windowLength = available == 0 ? 0 : Int.random(in: 1...available, using: &rng)
                let instruction = try buffer.withUnsafeBytes { p in
                    Result { () throws(HTTPParseError) in
                        try decoder.next(available: available, window: UnsafeRawBufferPointer(rebasing: p[0..<windowLength]))
                    }
                }.get()
                switch instruction {
                case .payload(let n):
                    XCTAssertGreaterThan(n, 0, "empty payload instruction", file: file, line: line)
                    XCTAssertLessThanOrEqual(n, available, "payload beyond what is available", file: file, line: line)
                    let k = partialForward ? Int.random(in: 1...max(1, n), using: &rng) : n
                    run.payload += buffer[..<k]
                    buffer.removeFirst(k)
                    decoder.didForwardPayload(k)
                case .skip(let n):
                    XCTAssertGreaterThan(n, 0, "empty skip", file: file, line: line)
                    XCTAssertLessThanOrEqual(n, windowLength, "skip beyond the window it was given", file: file, line: line)
                    buffer.removeFirst(n)
                case .needMore:
                    // With a non-empty window every framing makes progress, so needMore means "buffer empty".
                    XCTAssertEqual(available, 0, "needMore with \(available) bytes buffered", file: file, line: line)
                    break feedLoop
                case .end:
                    run.ended = true
                    XCTAssertTrue(decoder.endsAtClose, "ended body must end cleanly at close", file: file, line: line)
                    // .end is sticky and consumes nothing.
                    let again = try buffer.withUnsafeBytes { p in
                        Result { () throws(HTTPParseError) in
                            try decoder.next(available: buffer.count, window: p)
                        }
                    }.get()
                    XCTAssertEqual(again, .end, file: file, line: line)
                    break feedLoop
                }
            }
            run.endsAtCloseAfterFeed.append(decoder.endsAtClose)
        }
        run.rest = run.ended ? buffer : []
        run.endsAtClose = decoder.endsAtClose
        return run
    }

    /// Splits `data` into random feeds (sizes 0...maxFeed; empty feeds included).
    func randomFeeds(_ data: [UInt8], maxFeed: Int, rng: inout SeededRNG) -> [[UInt8]] {
        var feeds: [[UInt8]] = []
        var i = 0
        while i < data.count {
            let n = min(data.count - i, Int.random(in: 0...maxFeed, using: &rng))
            feeds.append(Array(data[i..<i + n]))
            i += n
        }
        return feeds
    }

    static let pipelined = proxyBytes("GET /next HTTP/1.1\r\nHost: h\r\n\r\n")

    // MARK: - Content-Length

    func testContentLengthAnySplitLeavesPipelinedBytes() throws {
        var rng = SeededRNG(seed: 1)
        for length in [1, 2, 7, 100, 4096] {
            let body = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            let wire = body + Self.pipelined
            for trial in 0..<40 {
                let feeds = randomFeeds(wire, maxFeed: max(1, length / 3 + trial % 5), rng: &rng)
                let run = try drive(.contentLength(length), feeds, rng: &rng, partialForward: trial % 2 == 1)
                XCTAssertEqual(run.payload, body, "CL \(length) trial \(trial)")
                XCTAssertTrue(run.ended)
                XCTAssertEqual(run.rest, Self.pipelined, "the next message is untouched")
                XCTAssertTrue(run.endsAtClose)
            }
        }
    }

    func testContentLengthEveryTwoWaySplit() throws {
        var rng = SeededRNG(seed: 2)
        let body = proxyBytes("hello, world")
        let wire = body + Self.pipelined
        for cut in 0...wire.count {
            let run = try drive(.contentLength(body.count), [Array(wire[..<cut]), Array(wire[cut...])], rng: &rng)
            XCTAssertEqual(run.payload, body, "cut \(cut)")
            XCTAssertEqual(run.rest, Self.pipelined, "cut \(cut)")
            XCTAssertEqual(run.endsAtCloseAfterFeed, [cut >= body.count, true], "cut \(cut)")
        }
    }

    func testContentLengthTruncatedDoesNotEndAtClose() throws {
        var rng = SeededRNG(seed: 3)
        let body = proxyBytes("0123456789")
        for have in 0..<body.count {
            let run = try drive(.contentLength(body.count), [Array(body[..<have])], rng: &rng)
            XCTAssertFalse(run.ended)
            XCTAssertEqual(run.payload, Array(body[..<have]))
            XCTAssertFalse(run.endsAtClose, "closing after \(have) of \(body.count) bytes is a truncated body")
        }
    }

    func testContentLengthPayloadCappedAtRemaining() throws {
        var decoder = BodyDecoder(.contentLength(3))
        let data = proxyBytes("abcdef")
        let first = try data.withUnsafeBytes { p in
            Result { () throws(HTTPParseError) in try decoder.next(available: 6, window: p) }
        }.get()
        XCTAssertEqual(first, .payload(3))
        decoder.didForwardPayload(2)
        XCTAssertFalse(decoder.endsAtClose)
        let second = try data.withUnsafeBytes { p in
            Result { () throws(HTTPParseError) in try decoder.next(available: 4, window: UnsafeRawBufferPointer(rebasing: p[2...])) }
        }.get()
        XCTAssertEqual(second, .payload(1))
        decoder.didForwardPayload(1)
        XCTAssertTrue(decoder.endsAtClose)
        let third = try data.withUnsafeBytes { p in
            Result { () throws(HTTPParseError) in try decoder.next(available: 3, window: UnsafeRawBufferPointer(rebasing: p[3...])) }
        }.get()
        XCTAssertEqual(third, .end)
    }

    // MARK: - No body

    func testNoBodyEndsImmediatelyAndTouchesNothing() throws {
        var rng = SeededRNG(seed: 4)
        for framing in [BodyFraming.none, .contentLength(0)] {
            var fresh = BodyDecoder(framing)
            XCTAssertTrue(fresh.endsAtClose, "\(framing)")
            let empty = try [UInt8]().withUnsafeBytes { p in
                Result { () throws(HTTPParseError) in try fresh.next(available: 0, window: p) }
            }.get()
            XCTAssertEqual(empty, .end, "\(framing) with nothing buffered")
            let run = try drive(framing, [Self.pipelined], rng: &rng)
            XCTAssertTrue(run.ended)
            XCTAssertEqual(run.payload, [])
            XCTAssertEqual(run.rest, Self.pipelined)
            XCTAssertTrue(run.endsAtClose)
        }
    }

    // MARK: - Close-delimited

    func testCloseDelimitedForwardsEverythingAndEndsOnlyAtClose() throws {
        var rng = SeededRNG(seed: 5)
        let data = (0..<3000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        for trial in 0..<30 {
            let feeds = randomFeeds(data, maxFeed: 1 + trial * 20, rng: &rng)
            let run = try drive(.closeDelimited, feeds, rng: &rng, partialForward: trial % 3 == 0)
            XCTAssertFalse(run.ended, "a close-delimited body never ends by itself")
            XCTAssertEqual(run.payload, data)
            XCTAssertTrue(run.endsAtCloseAfterFeed.allSatisfy { $0 }, "closing is always a clean end")
        }
        // Everything available is payload at once.
        var decoder = BodyDecoder(.closeDelimited)
        let instruction = try data.withUnsafeBytes { p in
            Result { () throws(HTTPParseError) in
                try decoder.next(available: data.count, window: UnsafeRawBufferPointer(rebasing: p[0..<1]))
            }
        }.get()
        XCTAssertEqual(instruction, .payload(data.count))
    }

    // MARK: - Chunked

    static let chunkedBody = proxyBytes("hello") + Array(repeating: UInt8(ascii: "x"), count: 26) + proxyBytes("\r\n\r\n")
    static let chunkedWire = proxyBytes("5\r\nhello\r\n1a;name=\"quoted;value\";flag\r\n")
        + Array(repeating: UInt8(ascii: "x"), count: 26) + proxyBytes("\r\n4\r\n\r\n\r\n\r\n0\r\nExpires: never\r\nX-T: 1\r\n\r\n")

    func testChunkedSplitAtEveryPosition() throws {
        var rng = SeededRNG(seed: 6)
        let wire = Self.chunkedWire + Self.pipelined
        for cut in 0...wire.count {
            for trial in 0..<3 {
                let run = try drive(.chunked, [Array(wire[..<cut]), Array(wire[cut...])], rng: &rng,
                                    partialForward: trial == 2)
                XCTAssertEqual(run.payload, Self.chunkedBody, "cut \(cut)")
                XCTAssertTrue(run.ended, "cut \(cut)")
                XCTAssertEqual(run.rest, Self.pipelined, "cut \(cut): pipelined bytes untouched")
                XCTAssertEqual(run.endsAtCloseAfterFeed, [cut >= Self.chunkedWire.count, true], "cut \(cut)")
            }
        }
    }

    func testChunkedByteByByte() throws {
        var rng = SeededRNG(seed: 7)
        let wire = Self.chunkedWire + Self.pipelined
        let run = try drive(.chunked, wire.map { [$0] }, rng: &rng)
        XCTAssertEqual(run.payload, Self.chunkedBody)
        XCTAssertEqual(run.rest, Self.pipelined)
        let doneAt = Self.chunkedWire.count
        XCTAssertEqual(run.endsAtCloseAfterFeed, (1...wire.count).map { $0 >= doneAt })
    }

    func testChunkedRandomMessagesRandomFeeds() throws {
        var rng = SeededRNG(seed: 8)
        for trial in 0..<300 {
            var wire: [UInt8] = []
            var body: [UInt8] = []
            for _ in 0..<Int.random(in: 0...6, using: &rng) {
                let size = Int.random(in: 1...300, using: &rng)
                let chunk = (0..<size).map { _ in UInt8.random(in: 0...255, using: &rng) }
                let hex = String(size, radix: 16, uppercase: Bool.random(using: &rng))
                let ext = Bool.random(using: &rng) ? ";a=b" : ""
                wire += proxyBytes("\(hex)\(ext)\r\n") + chunk + proxyBytes("\r\n")
                body += chunk
            }
            wire += proxyBytes("0\r\n")
            if Bool.random(using: &rng) { wire += proxyBytes("T: v\r\n") }
            wire += proxyBytes("\r\n")
            let full = wire + Self.pipelined
            let run = try drive(.chunked, randomFeeds(full, maxFeed: Int.random(in: 1...200, using: &rng), rng: &rng),
                                rng: &rng, partialForward: trial % 4 == 0)
            XCTAssertEqual(run.payload, body, "trial \(trial)")
            XCTAssertTrue(run.ended, "trial \(trial)")
            XCTAssertEqual(run.rest, Self.pipelined, "trial \(trial)")
        }
    }

    func testChunkedTruncatedDoesNotEndAtClose() throws {
        var rng = SeededRNG(seed: 9)
        for have in 0..<Self.chunkedWire.count {
            let run = try drive(.chunked, [Array(Self.chunkedWire[..<have])], rng: &rng)
            XCTAssertFalse(run.ended, "have \(have)")
            XCTAssertFalse(run.endsAtClose, "closing after \(have) bytes of a chunked body is a truncated body")
        }
    }

    func testChunkedMalformedFramingThrows() {
        let bad = ["zz\r\nabc\r\n0\r\n\r\n", "5\r\nhelloXX0\r\n\r\n", "5\nhello\r\n0\r\n\r\n", "\r\n", "-1\r\n"]
        for text in bad {
            for seed in UInt64(0)..<5 {
                var rng = SeededRNG(seed: seed)
                do {
                    _ = try drive(.chunked, [proxyBytes(text)], rng: &rng)
                    XCTFail("\(text.debugDescription): expected an error")
                } catch {
                    guard case .malformed = error else { XCTFail("\(text.debugDescription): \(error)"); continue }
                }
            }
        }
    }

    func testChunkedNeedsMoreOnlyWhenNothingIsBuffered() throws {
        var decoder = BodyDecoder(.chunked)
        let instruction = try [UInt8]().withUnsafeBytes { p in
            Result { () throws(HTTPParseError) in try decoder.next(available: 0, window: p) }
        }.get()
        XCTAssertEqual(instruction, .needMore)
        XCTAssertFalse(decoder.endsAtClose)
    }
}
