import Foundation
import Logging
import XCTest
@testable import SSEKeepalive

/// A LogSink on a fresh temporary file, for reading back what was logged.
final class TempFileSink {
    let path: String
    let fd: Int32
    let sink: LogSink

    init(capacity: Int = LogSink.defaultCapacity) {
        var template = Array((NSTemporaryDirectory() + "/sse-keepalive-log-XXXXXX").utf8CString)
        fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        precondition(fd >= 0)
        path = String(cString: template)
        sink = LogSink(fd: fd, capacity: capacity)
    }

    func logger(level: Logger.Level = .trace, format: LogFormat) -> Logger {
        let sink = self.sink
        return Logger(label: "test") { LineLogHandler(label: $0, level: level, format: format, sink: sink) }
    }

    /// Flushes and returns the lines written so far (without their "\n").
    func lines() -> [String] {
        XCTAssertTrue(sink.flush())
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        XCTAssertTrue(text.isEmpty || text.hasSuffix("\n"), "every line ends with a newline")
        return text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
    }

    deinit {
        sink.stop()
        close(fd)
        unlink(path)
    }
}

final class LogFormatTests: XCTestCase {
    let ts = "2026-11-26T14:00:00.123Z"

    // MARK: text

    func testTextFormatUnchanged() {
        XCTAssertEqual(LineLogHandler.render(level: .info, message: "listening on 127.0.0.1:8080", metadata: [:],
                                             format: .text, timestamp: ts),
                       "info 2026-11-26T14:00:00.123Z listening on 127.0.0.1:8080\n")
        XCTAssertEqual(LineLogHandler.render(level: .warning, message: "m", metadata: ["z": "1", "a": "x y", "m": .stringConvertible(3)],
                                             format: .text, timestamp: ts),
                       "warning 2026-11-26T14:00:00.123Z m a=x y m=3 z=1\n")
    }

    func testTextThroughLogger() throws {
        let file = TempFileSink()
        var logger = file.logger(level: .debug, format: .text)
        logger[metadataKey: "conn"] = "7"
        logger.trace("not shown")
        logger.debug("upstream closed", metadata: ["route": "/events"])
        logger.critical("boom")
        let lines = file.lines()
        XCTAssertEqual(lines.count, 2)
        let first = lines[0].split(separator: " ", maxSplits: 2).map(String.init)
        XCTAssertEqual(first[0], "debug")
        XCTAssertTrue(Self.isTimestamp(first[1]), first[1])
        XCTAssertEqual(first[2], "upstream closed conn=7 route=/events")
        XCTAssertTrue(lines[1].hasPrefix("critical "))
        XCTAssertTrue(lines[1].hasSuffix(" boom conn=7"))
    }

    func testTimestampShape() {
        for _ in 0..<50 { XCTAssertTrue(Self.isTimestamp(LineLogHandler.timestamp())) }
    }

    static func isTimestamp(_ s: String) -> Bool {
        let b = Array(s.utf8)
        guard b.count == 24 else { return false }
        let digitPositions = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22]
        let fixed: [Int: Character] = [4: "-", 7: "-", 10: "T", 13: ":", 16: ":", 19: ".", 23: "Z"]
        return digitPositions.allSatisfy { (0x30...0x39).contains(b[$0]) }
            && fixed.allSatisfy { b[$0.key] == $0.value.asciiValue! }
    }

    // MARK: JSON

    func testJSONKeysInOrder() throws {
        let line = LineLogHandler.render(level: .notice, message: "reloaded", metadata: ["routes": .stringConvertible(3), "file": "a.yaml"],
                                         format: .json, timestamp: ts)
        XCTAssertEqual(line, #"{"ts":"2026-11-26T14:00:00.123Z","level":"notice","msg":"reloaded","file":"a.yaml","routes":3}"# + "\n")
        let json = try TestJSON.parse(String(line.dropLast()))
        XCTAssertEqual(json.keys, ["ts", "level", "msg", "file", "routes"])
    }

    func testJSONValueTypes() throws {
        let metadata: Logger.Metadata = [
            "int": .stringConvertible(42),
            "neg": .stringConvertible(-7),
            "u64": .stringConvertible(UInt64.max),
            "double": .stringConvertible(1.5),
            "tiny": .stringConvertible(1e-7),
            "inf": .stringConvertible(Double.infinity),
            "nan": .stringConvertible(Double.nan),
            "bool": .stringConvertible(true),
            "str": "text",
            "numstr": "42",
            "addr": .stringConvertible(Wrapper(text: "1.2.3.4:5")),
            "arr": ["a", .stringConvertible(1)],
            "dict": ["b": "2", "a": ["x"]],
            "msg": "collides",
            "ts": "collides too",
        ]
        let line = LineLogHandler.render(level: .info, message: "m", metadata: metadata, format: .json, timestamp: ts)
        let json = try TestJSON.parse(String(line.dropLast()))
        XCTAssertEqual(json.keys, ["ts", "level", "msg", "_msg", "_ts", "addr", "arr", "bool", "dict", "double", "inf", "int",
                                   "nan", "neg", "numstr", "str", "tiny", "u64"])
        XCTAssertEqual(json["int"], .number("42"))
        XCTAssertEqual(json["neg"], .number("-7"))
        XCTAssertEqual(json["u64"], .number("18446744073709551615"))
        XCTAssertEqual(json["double"], .number("1.5"))
        XCTAssertEqual(json["inf"], .string("inf"))
        XCTAssertEqual(json["nan"], .string("nan"))
        XCTAssertEqual(json["bool"], .bool(true))
        XCTAssertEqual(json["str"], .string("text"))
        XCTAssertEqual(json["numstr"], .string("42"))
        XCTAssertEqual(json["addr"], .string("1.2.3.4:5"))
        XCTAssertEqual(json["arr"], .array([.string("a"), .number("1")]))
        XCTAssertEqual(json["dict"], .object([("a", .array([.string("x")])), ("b", .string("2"))]))
        XCTAssertEqual(json["msg"], .string("m"))
        XCTAssertEqual(json["_msg"], .string("collides"))
        XCTAssertEqual(json["ts"], .string(ts))
        if case .number(let n) = json["tiny"] { XCTAssertEqual(Double(n), 1e-7) } else { XCTFail("tiny") }
    }

    func testJSONEscaping() throws {
        let table: [(String, String, UInt)] = [
            ("plain", #""plain""#, #line),
            ("say \"hi\"", #""say \"hi\"""#, #line),
            ("back\\slash", #""back\\slash""#, #line),
            ("two\nlines\r\n", #""two\nlines\r\n""#, #line),
            ("tab\there", #""tab\there""#, #line),
            ("\u{0}\u{1}\u{8}\u{c}\u{1b}\u{1f}\u{7f}", #""\u0000\u0001\u0008\u000c\u001b\u001f\u007f""#, #line),
            ("/slash/", #""/slash/""#, #line),
            ("café 日本 🎉 \u{2028}", "\"café 日本 🎉 \u{2028}\"", #line),
            ("", #""""#, #line),
        ]
        for (input, expected, line) in table {
            XCTAssertEqual(JSON.string(input), expected, line: line)
            XCTAssertEqual(try TestJSON.parse(expected), .string(input), line: line)
        }
        // renamed keys never collide
        let collide = LineLogHandler.render(level: .info, message: "m", metadata: ["msg": "1", "_msg": "2"], format: .json, timestamp: ts)
        XCTAssertEqual(try TestJSON.parse(String(collide.dropLast())).keys, ["ts", "level", "msg", "__msg", "_msg"])
        // a whole log line with a hostile message stays one parseable line
        let hostile = "evil\"}\n{\"level\":\"critical\",\"msg\":\"forged"
        let line = LineLogHandler.render(level: .info, message: hostile, metadata: ["k\"ey\n": "v\u{0}"], format: .json, timestamp: ts)
        XCTAssertEqual(line.filter { $0 == "\n" }.count, 1)
        let json = try TestJSON.parse(String(line.dropLast()))
        XCTAssertEqual(json["msg"], .string(hostile))
        XCTAssertEqual(json["k\"ey\n"], .string("v\u{0}"))
    }

    func testJSONRandomStringsRoundTrip() throws {
        var rng = SeededRNG(seed: 0x15_0000)
        let pool: [Unicode.Scalar] = (0..<0x80).map { Unicode.Scalar(UInt8($0)) }
            + ["é", "ß", "日", "🎉", "\u{2028}", "\u{FEFF}", "\u{85}", "\u{10FFFF}"]
        for _ in 0..<2000 {
            var s = ""
            for _ in 0..<rng.int(0...30) { s.unicodeScalars.append(rng.pick(pool)) }
            let line = LineLogHandler.render(level: .error, message: s, metadata: ["v": .string(s)], format: .json, timestamp: ts)
            XCTAssertTrue(line.hasSuffix("\n"))
            XCTAssertFalse(line.dropLast().utf8.contains(where: { $0 < 0x20 }), "no raw control byte")
            let json = try TestJSON.parse(String(line.dropLast()))
            XCTAssertEqual(json["msg"], .string(s))
            XCTAssertEqual(json["v"], .string(s))
        }
    }

    func testJSONThroughLogger() throws {
        let file = TempFileSink()
        var logger = file.logger(level: .info, format: .json)
        logger[metadataKey: "worker"] = .stringConvertible(2)
        logger.info("stream opened", metadata: ["route": "/events", "client": "127.0.0.1:5555"])
        logger.debug("hidden")
        logger.error("upstream unreachable: \"connection refused\"")
        let lines = file.lines()
        XCTAssertEqual(lines.count, 2)
        let first = try TestJSON.parse(lines[0])
        XCTAssertEqual(first.keys, ["ts", "level", "msg", "client", "route", "worker"])
        XCTAssertEqual(first["level"], .string("info"))
        XCTAssertTrue(Self.isTimestamp(first["ts"]?.stringValue ?? ""))
        XCTAssertEqual(first["worker"], .number("2"))
        let second = try TestJSON.parse(lines[1])
        XCTAssertEqual(second["level"], .string("error"))
        XCTAssertEqual(second["msg"], .string("upstream unreachable: \"connection refused\""))
    }
}

private struct Wrapper: CustomStringConvertible, Sendable {
    var text: String
    var description: String { text }
}
