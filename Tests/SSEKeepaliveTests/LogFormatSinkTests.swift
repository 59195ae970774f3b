import Foundation
import XCTest
@testable import SSEKeepalive

final class LogFormatSinkTests: XCTestCase {
    /// Several producers at once: every line arrives whole, once, and in
    /// order per producer.
    func testConcurrentWritersKeepPerThreadOrder() {
        let file = TempFileSink()
        let sink = file.sink
        let producers = 8, perProducer = 3000
        DispatchQueue.concurrentPerform(iterations: producers) { p in
            for i in 0..<perProducer { sink.write("p\(p) \(i) some padding to make lines longer\n") }
        }
        let lines = file.lines()
        XCTAssertEqual(lines.count, producers * perProducer)
        XCTAssertEqual(file.sink.droppedLines, 0)
        var next = [Int](repeating: 0, count: producers)
        for line in lines {
            let parts = line.split(separator: " ")
            guard parts.count == 8, parts[0].hasPrefix("p"), let p = Int(parts[0].dropFirst()), let i = Int(parts[1]) else {
                XCTFail("mangled line: \(line)")
                continue
            }
            XCTAssertEqual(i, next[p], "producer \(p) out of order")
            next[p] = i + 1
        }
        XCTAssertEqual(next, [Int](repeating: perProducer, count: producers))
    }

    func testFlushWithoutLinesAndAfterStop() {
        let file = TempFileSink()
        XCTAssertTrue(file.sink.flush())
        file.sink.write("one\n")
        XCTAssertEqual(file.lines(), ["one"])
        file.sink.stop()
        file.sink.write("after stop\n")
        XCTAssertEqual(file.lines(), ["one"])
    }

    func testOversizedLineAcceptedWhenQueueEmpty() {
        let file = TempFileSink(capacity: 16)
        let big = String(repeating: "x", count: 1000)
        file.sink.write(big + "\n")
        XCTAssertEqual(file.lines(), [big])
    }

    /// A reader that stops reading: the writer blocks on the pipe, the
    /// producers do not; the overflow is dropped, counted, and announced once
    /// the reader is back.
    func testBlockedFdDropsAndAnnounces() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        let (readEnd, writeEnd) = (fds[0], fds[1])
        Self.fill(pipe: writeEnd)
        let sink = LogSink(fd: writeEnd, capacity: 1024)

        let total = 5000
        let start = DispatchTime.now()
        for i in 0..<total { sink.write("line \(i) padding padding padding padding\n") }
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
        XCTAssertLessThan(elapsed, 2, "writing must not block on a full pipe")
        XCTAssertGreaterThan(sink.droppedLines, 0)
        XCTAssertFalse(sink.flush(timeoutMilliseconds: 100), "flush times out while the fd is blocked")

        // The reader comes back.
        let reader = PipeReader(fd: readEnd)
        XCTAssertTrue(sink.flush(timeoutMilliseconds: 5000))
        sink.write("final\n")
        sink.stop()
        close(writeEnd)
        let received = reader.wait()
        close(readEnd)

        let lines = String(decoding: received, as: UTF8.self).split(separator: "\n").map(String.init)
        var announced = 0
        var next = 0
        var seen = 0
        for (index, line) in lines.enumerated() {
            if line == "prefill" { continue }
            if line.hasPrefix("warning "), let r = line.firstRange(of: "dropped ") {
                let n = line[r.upperBound...].split(separator: " ")[0]
                announced += Int(n) ?? -1000000
                XCTAssertTrue(line.hasSuffix(" log lines"), line)
                continue
            }
            if line == "final" {
                XCTAssertEqual(index, lines.count - 1, "final is last")
                continue
            }
            let i = Int(line.split(separator: " ")[1])!
            XCTAssertGreaterThanOrEqual(i, next, "in order")
            next = i + 1
            seen += 1
        }
        XCTAssertEqual(lines.last, "final")
        XCTAssertGreaterThan(announced, 0)
        XCTAssertEqual(announced, sink.droppedLines)
        XCTAssertEqual(seen + announced, total, "every line either arrives or is counted")
    }

    /// Fills a pipe up to its capacity with "prefill" lines, so that the
    /// sink's writer blocks on its first write.
    static func fill(pipe fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        let line = Array("prefill\n".utf8)
        while write(fd, line, line.count) == line.count {}
        _ = fcntl(fd, F_SETFL, flags)
    }

    func testDropNoticeUsesTheSinkFormat() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        Self.fill(pipe: fds[1])
        let sink = LogSink(fd: fds[1], capacity: 256)
        sink.format = .json
        for i in 0..<4000 { sink.write("{\"n\":\(i)}\n") }
        XCTAssertGreaterThan(sink.droppedLines, 0)
        let reader = PipeReader(fd: fds[0])
        sink.stop()
        close(fds[1])
        let received = reader.wait()
        close(fds[0])
        let lines = String(decoding: received, as: UTF8.self).split(separator: "\n").map(String.init).filter { $0 != "prefill" }
        let notices = try lines.map { try TestJSON.parse($0) }.filter { $0["msg"]?.stringValue?.hasPrefix("dropped ") == true }
        XCTAssertFalse(notices.isEmpty)
        for notice in notices {
            XCTAssertEqual(notice.keys, ["ts", "level", "msg"])
            XCTAssertEqual(notice["level"], .string("warning"))
        }
    }
}

/// Reads a file descriptor to EOF on another thread.
final class PipeReader: @unchecked Sendable {
    private var bytes: [UInt8] = []
    private let done = DispatchSemaphore(value: 0)

    init(fd: Int32) {
        DispatchQueue.global().async {
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = read(fd, &buffer, buffer.count)
                if n <= 0 { break }
                self.bytes += buffer[0..<n]
            }
            self.done.signal()
        }
    }

    /// Everything read, once the fd reached EOF.
    func wait() -> [UInt8] {
        done.wait()
        return bytes
    }
}
