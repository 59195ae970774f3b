import Foundation
import Logging
import XCTest
@testable import SSEKeepalive

final class LogFormatAccessLogTests: XCTestCase {
    /// The entry's JSON log line, as the handler writes it.
    func json(_ e: AccessLogEntry) throws -> TestJSON {
        try TestJSON.parse(LineLogHandler.render(level: .info, message: "access", metadata: e.metadata, format: .json,
                                                 timestamp: "t"))
    }

    let entry = AccessLogEntry(client: "127.0.0.1:5555", method: "GET",
                               target: Redactor(queryNames: []).redact(target: "/x?token=s3cr%2Bt"),
                               status: 200, bytesSent: 1234, durationMs: 15, route: "/events", heartbeats: 3, ending: .complete)

    func testText() {
        XCTAssertEqual(entry.textLine,
                       #"access 127.0.0.1:5555 "GET /x?token=[REDACTED]" 200 1234B 15ms route=/events heartbeats=3 end=complete"#)
    }

    func testEndings() {
        let expected: [AccessLogEntry.Ending: String] = [
            .complete: "complete", .clientClosed: "client_closed", .upstreamClosed: "upstream_closed", .error: "error", .timeout: "timeout",
            .shutdown: "shutdown", .maxDuration: "max_duration", .fellBehind: "fell_behind",
        ]
        for ending in AccessLogEntry.Ending.allCases {
            var e = entry
            e.ending = ending
            XCTAssertTrue(e.textLine.hasSuffix(" end=\(expected[ending]!)"))
            XCTAssertEqual(try json(e)["end"], .string(expected[ending]!))
        }
    }

    func testNoStatus() throws {
        var e = entry
        e.status = 0
        e.bytesSent = 0
        e.ending = .clientClosed
        XCTAssertEqual(e.textLine,
                       #"access 127.0.0.1:5555 "GET /x?token=[REDACTED]" 0 0B 15ms route=/events heartbeats=3 end=client_closed"#)
        XCTAssertEqual(try json(e)["status"], .number("0"))
    }

    func testTextEscapesQuotesAndControls() {
        let e = AccessLogEntry(client: "[::1]:1", method: "GET", target: "/a\"b\\c\n\u{7f}", status: 400, bytesSent: 1,
                               durationMs: 0, route: "default", heartbeats: 0, ending: .error)
        XCTAssertEqual(e.textLine,
                       #"access [::1]:1 "GET /a\"b\\c\x0a\x7f" 400 1B 0ms route=default heartbeats=0 end=error"#)
    }

    func testJSON() throws {
        let line = LineLogHandler.render(level: .info, message: "access", metadata: entry.metadata, format: .json, timestamp: "t")
        XCTAssertEqual(line, #"{"ts":"t","level":"info","msg":"access","bytes_sent":1234,"client":"127.0.0.1:5555","duration_ms":15,"end":"complete","heartbeats":3,"method":"GET","route":"/events","status":200,"target":"/x?token=[REDACTED]"}"# + "\n")
        let odd = AccessLogEntry(client: "c", method: "GET", target: "/\"\n", status: 1, bytesSent: 2, durationMs: 3,
                                 route: "/r", heartbeats: 4, ending: .timeout)
        XCTAssertEqual(try json(odd)["target"], .string("/\"\n"))
    }

    func testLoggedThroughTheHandler() throws {
        let text = TempFileSink()
        entry.log(to: text.logger(format: .text), format: .text)
        let textLines = text.lines()
        XCTAssertEqual(textLines.count, 1)
        XCTAssertTrue(textLines[0].hasPrefix("info "))
        XCTAssertTrue(textLines[0].hasSuffix(" " + entry.textLine))

        let json = TempFileSink()
        entry.log(to: json.logger(format: .json), format: .json)
        let jsonLines = json.lines()
        XCTAssertEqual(jsonLines.count, 1)
        let object = try TestJSON.parse(jsonLines[0])
        XCTAssertEqual(object.keys, ["ts", "level", "msg", "bytes_sent", "client", "duration_ms", "end", "heartbeats", "method",
                                     "route", "status", "target"])
        XCTAssertEqual(object["level"], .string("info"))
        XCTAssertEqual(object["msg"], .string("access"))
        XCTAssertEqual(object["status"], .number("200"))
        XCTAssertEqual(object["bytes_sent"], .number("1234"))
        XCTAssertEqual(object["target"], .string("/x?token=[REDACTED]"))
        XCTAssertFalse(jsonLines[0].contains("s3cr"))
        XCTAssertFalse(textLines[0].contains("s3cr"))
    }

    func testLogLevelGatesTheAccessLine() {
        let file = TempFileSink()
        entry.log(to: file.logger(level: .warning, format: .text), format: .text)
        XCTAssertEqual(file.lines(), [])
    }
}
