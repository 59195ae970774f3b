import XCTest
@testable import SSEKeepalive

final class ProbeSessionTests: XCTestCase {
    let url = try! ProbeURL.parse("http://127.0.0.1:8080/events")

    func session() -> ProbeSession {
        var s = ProbeSession(url: url, durationLimit: 60_000_000_000)
        s.connected(at: 0)
        return s
    }

    static func chunk(_ s: String) -> String { String(s.utf8.count, radix: 16) + "\r\n" + s + "\r\n" }

    static let streamHead = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
    static let streamBody = chunk("retry: 2000\n\n") + chunk("id: 1\ndata: a\n\n:hb\n") + chunk("\ndata: b\r") + chunk("\n\r\n")

    func testChunkedStreamAtEverySplit() {
        let bytes = Array((Self.streamHead + Self.streamBody).utf8)
        var whole = session()
        whole.receive(bytes, at: 1)
        let expected = whole.record
        XCTAssertEqual(expected.head?.status, 200)
        XCTAssertEqual(expected.head?.isEventStream, true)
        XCTAssertEqual(expected.head?.transferEncoding, "chunked")
        XCTAssertEqual(expected.eventCount, 2)
        XCTAssertEqual(expected.commentCount, 1)
        XCTAssertEqual(expected.retry, 2000)
        XCTAssertEqual(expected.messages.map(\.text), ["a", "hb", "b"])
        XCTAssertNil(expected.end)
        for i in 0...bytes.count {
            var s = session()
            s.receive(Array(bytes[..<i]), at: 1)
            s.receive(Array(bytes[i...]), at: 2)
            let r = s.record
            XCTAssertEqual(r.messages.map(\.text), ["a", "hb", "b"], "split \(i)")
            XCTAssertEqual(r.retry, 2000, "split \(i)")
            XCTAssertEqual(r.payloadBytes, expected.payloadBytes, "split \(i)")
            XCTAssertEqual(r.headAt, i >= Self.streamHead.utf8.count ? 1 : 2, "split \(i)")
            XCTAssertEqual(r.firstByteAt, i > 0 ? 1 : 2, "split \(i)")
            XCTAssertNil(r.end, "split \(i)")
        }
    }

    func testLastChunkEndsTheResponse() {
        var s = session()
        s.receive(Array((Self.streamHead + Self.streamBody + "0\r\n\r\n").utf8), at: 5)
        XCTAssertEqual(s.record.end, .responseComplete)
        XCTAssertEqual(s.record.endAt, 5)
    }

    func testEOFInsideChunkedBodyIsNamed() {
        var s = session()
        s.receive(Array((Self.streamHead + Self.streamBody).utf8), at: 5)
        s.finish(.serverClosed, at: 9)
        XCTAssertEqual(s.record.end, .serverClosed)
        XCTAssertEqual(s.record.endDetail, "inside the chunked body, before its last chunk")
        s.finish(.durationReached, at: 10)
        XCTAssertEqual(s.record.end, .serverClosed, "the first end wins")
    }

    func testContentLengthStreamEndsAfterItsBytes() {
        let body = "data: x\n\n"
        var s = session()
        s.receive(Array("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8), at: 3)
        XCTAssertEqual(s.record.eventCount, 1)
        XCTAssertEqual(s.record.end, .responseComplete)
        XCTAssertEqual(s.record.head?.contentLength, "9")
    }

    func testCloseDelimitedStream() {
        var s = session()
        s.receive(Array("HTTP/1.0 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n\r\ndata: x\n\n".utf8), at: 3)
        s.receive(Array("data: y\n\n".utf8), at: 4)
        s.finish(.serverClosed, at: 8)
        XCTAssertEqual(s.record.eventCount, 2)
        XCTAssertNil(s.record.endDetail)
        XCTAssertEqual(s.record.longestReadGap, 3)
    }

    func testHeadsEventSourceRejectsStopTheProbe() {
        let heads = [
            "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nnope",
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 2\r\n\r\nhi",
            "HTTP/1.1 302 Found\r\nLocation: /login\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        ]
        for head in heads {
            var s = session()
            s.receive(Array(head.utf8), at: 1)
            XCTAssertEqual(s.record.end, .notAStream, head)
            XCTAssertEqual(s.record.endAt, 1)
            XCTAssertNotNil(s.record.head)
        }
    }

    func testInterimResponsesAreSkipped() {
        var s = session()
        s.receive(Array("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: x\n\n".utf8), at: 1)
        XCTAssertEqual(s.record.head?.status, 200)
        XCTAssertEqual(s.record.eventCount, 1)
    }

    func testUndecodablePayloadIsCountedNotParsed() {
        var s = session()
        s.receive(Array("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: br\r\n\r\n".utf8) + [0x1F, 0x8B, 8, 0, 0x0A, 0x0A], at: 1)
        XCTAssertEqual(s.record.head?.isContentEncoded, true)
        XCTAssertFalse(s.record.payloadParsed)
        XCTAssertNil(s.record.decodedCoding)
        XCTAssertEqual(s.record.payloadBytes, 6)
        XCTAssertEqual(s.record.messages, [])
        XCTAssertNil(s.record.end)
    }

    func testCorruptGzipIsReportedNotParsed() {
        var s = session()
        s.receive(Array("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: gzip\r\n\r\ndata: plain\n\n".utf8), at: 1)
        XCTAssertEqual(s.record.decodedCoding, "gzip")
        XCTAssertNotNil(s.record.decodeError)
        XCTAssertEqual(s.record.messages, [])
        XCTAssertNil(s.record.end)
    }

    func testMalformedResponses() {
        var s = session()
        s.receive(Array("HTTP/1.1 200 OK\r\nBad Header\r\n\r\n".utf8), at: 1)
        XCTAssertEqual(s.record.end?.code, "failed")
        var t = session()
        t.receive(Array((Self.streamHead + "zz\r\n").utf8), at: 1)
        XCTAssertEqual(t.record.end?.code, "failed")
        XCTAssertTrue(t.record.end!.description.contains("malformed response body"))
    }

    func testHeadAnalysis() {
        guard case .complete(let head, _) = HeadParser.parseResponse(Array(
            "HTTP/1.1 200 OK\r\nContent-Type: Text/Event-Stream;charset=utf-8\r\nCache-Control: private\r\nCache-Control: no-store\r\nX-Accel-Buffering: yes\r\nContent-Encoding: identity\r\n\r\n".utf8),
            maxHeaderBytes: 4096) else { return XCTFail() }
        let a = ProbeHeadAnalysis(head)
        XCTAssertTrue(a.isEventStream)
        XCTAssertEqual(a.cacheControl, "private, no-store")
        XCTAssertTrue(a.forbidsCaching)
        XCTAssertEqual(a.xAccelBuffering, "yes")
        XCTAssertFalse(a.isContentEncoded)
        XCTAssertEqual(a.framing, .closeDelimited)
        XCTAssertTrue(a.isUsableStream)
    }
}
