import XCTest
@testable import SSEKeepalive

final class ProbeEventParserTests: XCTestCase {
    /// Streams with every line ending, comments, BOM, retry, ids and edge fields.
    static let streams: [String] = [
        "data: hello\n\n",
        "data: hello\r\n\r\n",
        "data: hello\r\rdata: again\r\r",
        "retry: 3000\n:comment\nid: 7\nevent: tick\ndata: a\ndata: b\n\n",
        "\u{FEFF}data: bom\n\n",
        "\u{FEFF}\u{FEFF}data: two boms\n\n",
        ": heartbeat\r\n\r\n:x\r\ndata\r\ndata:\r\n\r\nid\r\n\r\n",
        "data: x\r\n\ndata: y\n\r\n",
        "event: only-type\n\ndata: z\n\n",
        "id: 1\ndata: no end yet\n",
        "retry: 1a\nretry: 250\ndata:  two spaces\n\n",
        "data: caf\u{e9} \u{1F600}\r\n\r\n:\u{e9}\n",
        "id: a\u{0}b\ndata: nul id ignored\n\n",
        ":\n\n\n\ndata:1\n\n",
    ]

    struct Flat: Equatable {
        var events: [SSEEvent]
        var comments: [String]
        var retry: Int?
    }

    static func parse(_ chunks: [[UInt8]]) -> (Flat, [ProbeEventParser.Item]) {
        var parser = ProbeEventParser()
        var items: [ProbeEventParser.Item] = []
        for (i, chunk) in chunks.enumerated() { items += parser.feed(chunk, at: ProbeTime(i)) }
        var flat = Flat(events: [], comments: [], retry: nil)
        var lastID = ""
        for item in items {
            switch item {
            case .event(let m):
                if let id = m.id { lastID = id }
                flat.events.append(SSEEvent(type: m.type, data: m.text, lastEventId: lastID))
            case .comment(let m): flat.comments.append(m.text)
            case .retry(let ms, _): flat.retry = ms
            }
        }
        return (flat, items)
    }

    /// Comments as the reference sees them: lines starting with ":".
    static func referenceComments(_ bytes: [UInt8]) -> [String] {
        sseLines(bytes).filter { $0.hasPrefix(":") }.map { String($0.dropFirst()) }
    }

    func testMatchesTheWHATWGReferenceAtEverySplit() {
        for text in Self.streams {
            let bytes = Array(text.utf8)
            let ref = WHATWGEventParser.parseAll(bytes)
            let expected = Flat(events: ref.events, comments: Self.referenceComments(bytes), retry: ref.reconnectionTime)
            XCTAssertEqual(Self.parse([bytes]).0, expected, text.debugDescription)
            // One split at every byte, and byte by byte.
            for i in 0...bytes.count {
                XCTAssertEqual(Self.parse([Array(bytes[..<i]), Array(bytes[i...])]).0, expected, "\(text.debugDescription) split at \(i)")
            }
            XCTAssertEqual(Self.parse(bytes.map { [$0] }).0, expected, "\(text.debugDescription) byte by byte")
        }
    }

    func testEveryTwoSplitsOfMixedLineEnds() {
        let bytes = Array("data: a\r\n\r\n:hb\r\rdata: b\n\ndata: c\r\n\n".utf8)
        let expected = Self.parse([bytes]).0
        XCTAssertEqual(expected.events.map(\.data), ["a", "b", "c"])
        XCTAssertEqual(expected.comments, ["hb"])
        for i in 0...bytes.count {
            for j in i...bytes.count {
                let chunks = [Array(bytes[..<i]), Array(bytes[i..<j]), Array(bytes[j...])]
                XCTAssertEqual(Self.parse(chunks).0, expected, "splits \(i), \(j)")
            }
        }
    }

    /// An event is timed by the read that brought its dispatching line end:
    /// for CRLF, the CR (the LF that may follow in the next read changes nothing).
    func testEventTimeIsTheReadWithTheDispatchingLineEnd() {
        for ending in ["\n", "\r", "\r\n"] {
            let bytes = Array("data: x\(ending)\(ending)".utf8)
            let dispatchIndex = bytes.count - ending.utf8.count  // first byte of the blank line's ending
            for i in 0...bytes.count {
                let (_, items) = Self.parse([Array(bytes[..<i]), Array(bytes[i...])])
                guard case .event(let m)? = items.first else { return XCTFail("no event for split \(i)") }
                XCTAssertEqual(m.time, dispatchIndex < i ? 0 : 1, "\(ending.debugDescription) split \(i)")
            }
        }
    }

    func testEventFields() {
        let (_, items) = Self.parse([Array("id: 9\nevent: price\ndata: {\"ts\": 1712345678901}\n\n:keep\n\nretry: 1500\n".utf8)])
        XCTAssertEqual(items.count, 3)
        guard case .event(let e) = items[0], case .comment(let c) = items[1], case .retry(let ms, _) = items[2] else {
            return XCTFail("\(items)")
        }
        XCTAssertEqual(e.type, "price")
        XCTAssertEqual(e.id, "9")
        XCTAssertEqual(e.text, "{\"ts\": 1712345678901}")
        XCTAssertEqual(e.numbers.map(\.value), [9, 1712345678901])
        XCTAssertEqual(e.numbers.map(\.source), [.id, .data])
        XCTAssertEqual(c.text, "keep")
        XCTAssertEqual(ms, 1500)
    }

    func testTheIDOfABlockIsNotInherited() {
        let (_, items) = Self.parse([Array("id: 1\ndata: a\n\ndata: b\n\n".utf8)])
        guard items.count == 2, case .event(let first) = items[0], case .event(let second) = items[1] else {
            return XCTFail("\(items)")
        }
        XCTAssertEqual(first.id, "1")
        XCTAssertNil(second.id, "the second event has no id field of its own")
        XCTAssertEqual(second.numbers, [], "so no number from an inherited id")
    }

    func testLongLinesAreBoundedButCounted() {
        let big = String(repeating: "x", count: 100_000)
        var parser = ProbeEventParser()
        var items: [ProbeEventParser.Item] = []
        let bytes = Array("data: \(big)\ndata: y\n\n:\(big)\n".utf8)
        for start in stride(from: 0, to: bytes.count, by: 7000) {
            items += parser.feed(Array(bytes[start..<min(start + 7000, bytes.count)]), at: 0)
        }
        guard items.count == 2, case .event(let e) = items[0], case .comment(let c) = items[1] else { return XCTFail("\(items.count)") }
        XCTAssertEqual(e.size, 100_000 + 2)
        XCTAssertEqual(e.text.utf8.count, ProbeMessage.previewLimit)
        XCTAssertEqual(c.size, 100_000)
        XCTAssertEqual(c.text.utf8.count, ProbeMessage.previewLimit)
    }
}
