import XCTest
@testable import SSEKeepalive

/// gzip/deflate decoding of event streams, fed in arbitrary pieces.
final class ProbeInflateTests: XCTestCase {
    // "data: one\n\n" then "data: two\n\n", each sync-flushed (as a streaming compressor
    // sends them; the first flush ends at byte 27), made with Python's zlib (wbits 31).
    static let gzip: [UInt8] = [0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x4a, 0x49, 0x2c, 0x49, 0xb4, 0x52,
                                0xc8, 0xcf, 0x4b, 0xe5, 0xe2, 0x02, 0x00, 0x00, 0x00, 0xff, 0xff, 0x4a, 0x01, 0x33, 0x4b, 0xca,
                                0xf3, 0xb9, 0xb8, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff]
    static let plain = Array("data: one\n\ndata: two\n\n".utf8)

    func testCodingNames() {
        let table: [(String, ProbeInflater.Coding?)] = [
            ("gzip", .gzip), ("x-gzip", .gzip), (" GZIP ", .gzip), ("deflate", .deflate), ("identity, gzip", .gzip),
            ("br", nil), ("gzip, br", nil), ("zstd", nil), ("", nil),
        ]
        for (value, coding) in table { XCTAssertEqual(ProbeInflater.coding(value), coding, value) }
    }

    func testGzipInAnyPieces() {
        for split in [1, 2, 7, 20, Self.gzip.count] {
            let inflater = ProbeInflater(.gzip)
            var out: [UInt8] = []
            var i = 0
            while i < Self.gzip.count {
                inflater.feed(Array(Self.gzip[i..<min(i + split, Self.gzip.count)])) { out += $0 }
                i += split
            }
            XCTAssertNil(inflater.error)
            XCTAssertEqual(out, Self.plain, "pieces of \(split)")
        }
    }

    func testSessionCountsEventsOfAGzipStream() {
        var session = ProbeSession(url: try! ProbeURL.parse("http://h/e"), durationLimit: 10_000_000_000)
        session.connected(at: 0)
        let head = Array("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: gzip\r\n\r\n".utf8)
        session.receive(head + Self.gzip.prefix(27), at: 1_000)
        session.receive(Array(Self.gzip.dropFirst(27)), at: 2_000)
        let r = session.record
        XCTAssertEqual(r.decodedCoding, "gzip")
        XCTAssertTrue(r.payloadParsed)
        XCTAssertEqual(r.eventCount, 2)
        XCTAssertEqual(r.messages.map(\.text), ["one", "two"])
        XCTAssertEqual(r.messages.map(\.time), [1_000, 2_000])
        XCTAssertEqual(r.decodedBytes, Self.plain.count)
        XCTAssertEqual(r.readLog, [ProbeRead(time: 1_000, bytes: head.count + 27), ProbeRead(time: 2_000, bytes: Self.gzip.count - 27)])
    }

    func testGarbageIsAnErrorNotACrash() {
        let inflater = ProbeInflater(.gzip)
        var out: [UInt8] = []
        inflater.feed(Array("data: not gzip\n\n".utf8)) { out += $0 }
        XCTAssertNotNil(inflater.error)
        XCTAssertTrue(inflater.error!.hasPrefix("invalid gzip data"), inflater.error!)
        inflater.feed([1, 2, 3]) { out += $0 }
        XCTAssertEqual(out, [])
    }
}
