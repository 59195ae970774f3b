import XCTest
@testable import SSEKeepalive

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// The error case without the log reason, for exact-case assertions.
enum ErrorKind: Equatable {
    case headersTooLarge, unsupportedVersion, malformed
    init(_ e: HTTPParseError) {
        switch e {
        case .headersTooLarge: self = .headersTooLarge
        case .unsupportedVersion: self = .unsupportedVersion
        case .malformed: self = .malformed
        }
    }
}

extension HeadParseResult {
    var errorKind: ErrorKind? {
        if case .failed(let e) = self { return ErrorKind(e) }
        return nil
    }
    var isIncomplete: Bool {
        if case .incomplete = self { return true }
        return false
    }
    var completed: (Head, Int)? {
        if case .complete(let head, let length) = self { return (head, length) }
        return nil
    }
}

/// Result of driving a ChunkedDecoder over a sequence of feeds the way the
/// runtime does: framing -> payload count -> consumePayload -> framing ...
struct ChunkedRun {
    var payload: [UInt8] = []
    /// Offset in the concatenated input right after the message, when done.
    var doneAt: Int? = nil
    /// Bytes of the concatenated input after the message end, untouched.
    var rest: [UInt8] = []
}

func driveChunked(_ feeds: [[UInt8]], decoder: inout ChunkedDecoder,
                  file: StaticString = #filePath, line: UInt = #line) throws(HTTPParseError) -> ChunkedRun {
    var run = ChunkedRun()
    var total = 0
    for feed in feeds {
        var offset = 0
        if run.doneAt != nil { run.rest += feed; continue }
        while offset < feed.count {
            if decoder.payloadRemaining > 0 {
                let n = min(decoder.payloadRemaining, feed.count - offset)
                run.payload += feed[offset..<offset + n]
                decoder.consumePayload(n)
                offset += n
                continue
            }
            let (used, step) = try feed[offset...].withUnsafeBytes { p in
                Result { () throws(HTTPParseError) in try decoder.consumeFraming(p) }
            }.get()
            XCTAssertLessThanOrEqual(used, feed.count - offset, file: file, line: line)
            offset += used
            switch step {
            case .needMore:
                XCTAssertEqual(offset, feed.count, "needMore must consume everything", file: file, line: line)
            case .payload(let n):
                XCTAssertEqual(n, decoder.payloadRemaining, file: file, line: line)
                XCTAssertGreaterThan(n, 0, file: file, line: line)
            case .done:
                XCTAssertTrue(decoder.isDone, file: file, line: line)
                run.doneAt = total + offset
                run.rest += feed[offset...]
                offset = feed.count
            }
        }
        total += feed.count
    }
    return run
}
