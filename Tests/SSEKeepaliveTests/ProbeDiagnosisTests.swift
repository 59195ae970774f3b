import XCTest
@testable import SSEKeepalive

final class ProbeDiagnosisTests: XCTestCase {
    static let s: ProbeTime = 1_000_000_000
    static let ms: ProbeTime = 1_000_000

    static func head(_ status: Int = 200, _ fields: [(String, String)] = [
        ("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"), ("Transfer-Encoding", "chunked"),
    ]) -> ProbeHeadAnalysis {
        ProbeHeadAnalysis(ResponseHead(version: .http11, status: status, reason: status == 200 ? "OK" : "Nope",
                                       headers: HTTPHeaders(fields)))
    }

    /// A stream: head at 10 ms, messages at `times`, ended by `end` at `endAt`.
    static func record(head: ProbeHeadAnalysis? = head(), times: [ProbeTime] = [], comments: Set<Int> = [],
                       end: ProbeEnd, endAt: ProbeTime, duration: ProbeTime = 30 * s,
                       path: String = "/events") -> ProbeRecord {
        var r = ProbeRecord(url: try! ProbeURL.parse("http://127.0.0.1:8080\(path)"), durationLimit: duration)
        r.connectedAt = 1 * ms
        if let head {
            r.firstByteAt = 10 * ms
            r.headAt = 10 * ms
            r.head = head
            r.payloadParsed = !head.isContentEncoded
            r.lastByteAt = 10 * ms
            r.reads = 1
        }
        var previous = r.lastByteAt ?? 0
        for (i, t) in times.enumerated() {
            let isComment = comments.contains(i)
            r.messages.append(ProbeMessage(kind: isComment ? .comment : .event, time: t, type: isComment ? "" : "message",
                                           text: isComment ? "heartbeat" : "x"))
            if isComment { r.commentCount += 1 } else { r.eventCount += 1 }
            r.longestReadGap = max(r.longestReadGap, t - previous)
            previous = t
            r.lastByteAt = t
            r.reads += 1
        }
        r.end = end
        r.endAt = endAt
        return r
    }

    func codes(_ a: ProbeAnalysis) -> [String] { a.findings.map(\.code) }

    func testIdleTimeoutIsNamedWithItsLength() {
        // Events every 500 ms for 2 s, then silence; closed 10 s after the last byte.
        let r = Self.record(times: [500, 1000, 1500, 2000].map { $0 * Self.ms }, end: .serverClosed, endAt: 12 * Self.s)
        let a = ProbeAnalysis(r)
        XCTAssertEqual(a.idleTimeout, 10 * Self.s)
        XCTAssertEqual(codes(a), ["idle_timeout"])
        XCTAssertEqual(a.findings[0].message, "closed after 10 s of silence: an idle timeout of about 10 s on the path")
        XCTAssertFalse(a.healthy)
        XCTAssertEqual(a.exitStatus, 1)
        XCTAssertEqual(a.recommendation?.heartbeat, .seconds(5))
        XCTAssertEqual(a.recommendation?.config,
                       "heartbeat:\n  interval: 5s\n# or for this stream only:\nroutes:\n  - path: /events\n    heartbeat: 5s\n")
        // Short ones keep a decimal; resets say so.
        let quick = ProbeAnalysis(Self.record(end: .reset, endAt: 2_010 * Self.ms))
        XCTAssertEqual(quick.findings.first { $0.code == "idle_timeout" }?.message,
                       "reset after 2.0 s of silence: an idle timeout of about 2.0 s on the path")
        XCTAssertEqual(quick.recommendation?.heartbeat, .seconds(1))
        XCTAssertFalse(quick.recommendation!.reason.contains("little margin"), "1 s is half of 2 s")
        let quicker = ProbeAnalysis(Self.record(end: .reset, endAt: 1_510 * Self.ms))
        XCTAssertEqual(quicker.recommendation?.heartbeat, .seconds(1))
        XCTAssertTrue(quicker.recommendation!.reason.contains("little margin"))
    }

    func testEndsThatAreNotIdleTimeouts() {
        // The path tolerated 8 s of silence earlier; the close came 2 s after the last byte.
        let r = Self.record(times: [8 * Self.s, 8 * Self.s + 500 * Self.ms], end: .serverClosed, endAt: 10_500 * Self.ms)
        let a = ProbeAnalysis(r)
        XCTAssertNil(a.idleTimeout)
        XCTAssertEqual(codes(a), ["stream_ended"])
        XCTAssertTrue(a.findings[0].message.contains("not an idle timeout"), a.findings[0].message)
        // Closed right after a byte.
        let b = ProbeAnalysis(Self.record(times: [1 * Self.s], end: .responseComplete, endAt: 1 * Self.s + 2 * Self.ms))
        XCTAssertNil(b.idleTimeout)
        XCTAssertEqual(codes(b), ["stream_ended"])
        XCTAssertTrue(b.findings[0].message.contains("2 ms after the last byte"), b.findings[0].message)
        XCTAssertEqual(b.recommendation?.heartbeat, .seconds(15))
    }

    func testHealthyStream() {
        let times = (1...10).map { ProbeTime($0) * Self.s }
        let a = ProbeAnalysis(Self.record(times: times, comments: [1, 3, 5, 7, 9], end: .durationReached, endAt: 10_400 * Self.ms))
        XCTAssertEqual(a.findings, [])
        XCTAssertTrue(a.healthy)
        XCTAssertEqual(a.exitStatus, 0)
        XCTAssertEqual(a.gaps, ProbeGaps(count: 9, min: Self.s, median: Self.s, max: Self.s))
        // Heartbeats every 2 s already, and no silence longer than 1 s seen: not raised beyond 2 s.
        XCTAssertEqual(a.recommendation?.heartbeat, .seconds(2))
        XCTAssertTrue(a.recommendation!.reason.contains("comments (heartbeats) already arrive about every 2.0 s"), a.recommendation!.reason)
        // Notes do not make it unhealthy.
        let noCache = ProbeAnalysis(Self.record(head: Self.head(200, [("Content-Type", "text/event-stream")]), times: times,
                                                end: .durationReached, endAt: 11 * Self.s))
        XCTAssertEqual(codes(noCache), ["cache_control"])
        XCTAssertTrue(noCache.healthy)
        let quiet = ProbeAnalysis(Self.record(end: .durationReached, endAt: 5 * Self.s))
        XCTAssertEqual(codes(quiet), ["no_events"])
        XCTAssertTrue(quiet.healthy)
    }

    func testHeadFindings() {
        let cases: [([(String, String)], Int, [String])] = [
            ([("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"), ("Content-Encoding", "gzip")], 200, ["content_encoding"]),
            ([("Content-Type", "text/event-stream"), ("Cache-Control", "no-store"), ("Content-Length", "100")], 200, ["content_length"]),
            ([("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"), ("X-Accel-Buffering", "yes")], 200, ["x_accel_buffering"]),
            ([("Content-Type", "text/html"), ("Content-Length", "2")], 200, ["not_event_stream"]),
            ([("Content-Length", "2")], 404, ["status"]),
            ([("Location", "/other"), ("Content-Length", "0")], 302, ["status"]),
            ([("Content-Type", "text/event-stream"), ("Transfer-Encoding", "gzip, chunked")], 200, ["framing"]),
        ]
        for (fields, status, expected) in cases {
            let head = Self.head(status, fields)
            let end: ProbeEnd = head.isUsableStream ? .durationReached : .notAStream
            let a = ProbeAnalysis(Self.record(head: head, times: head.isUsableStream ? [Self.s] : [], end: end, endAt: 2 * Self.s))
            XCTAssertEqual(codes(a), expected, "\(status) \(fields)")
            XCTAssertFalse(a.healthy && !["x_accel_buffering", "content_encoding"].contains(expected[0]), "\(fields)")
            XCTAssertEqual(a.recommendation == nil, !head.isUsableStream)
        }
        let redirect = ProbeAnalysis(Self.record(head: Self.head(302, [("Location", "/other")]), end: .notAStream, endAt: Self.s))
        XCTAssertTrue(redirect.findings[0].message.contains("to /other"))
    }

    func testConnectFailure() {
        let a = ProbeAnalysis(Self.record(head: nil, end: .connectFailed("127.0.0.1:1: Connection refused"), endAt: Self.ms))
        XCTAssertEqual(codes(a), ["connect_failed"])
        XCTAssertNil(a.recommendation)
        XCTAssertEqual(a.exitStatus, 1)
    }

    func testBufferingFinding() {
        let times = [0, 1000, 1000, 1000, 2000, 2001, 2002].map { $0 * Self.ms + 100 * Self.ms }
        let a = ProbeAnalysis(Self.record(times: times, end: .durationReached, endAt: 3 * Self.s))
        XCTAssertEqual(codes(a), ["buffering"])
        XCTAssertTrue(a.findings[0].message.hasPrefix("events arrive in bursts: something on the path buffers the stream"))
        XCTAssertFalse(a.healthy)
    }

    func testRecommendationTable() {
        let table: [(ProbeTime, Int)] = [
            (900 * Self.ms, 1), (1500 * Self.ms, 1), (2 * Self.s, 1), (3900 * Self.ms, 1), (4 * Self.s, 2),
            (10 * Self.s, 5), (29_900 * Self.ms, 14), (30 * Self.s, 15), (60 * Self.s, 15), (300 * Self.s, 15),
        ]
        for (timeout, seconds) in table {
            XCTAssertEqual(ProbeRecommendation.heartbeat(below: timeout), .seconds(seconds), "\(timeout)")
        }
        XCTAssertEqual(ProbeRecommendation.config(heartbeat: .seconds(7), path: "/"), "heartbeat:\n  interval: 7s\n")
        XCTAssertEqual(ProbeRecommendation.config(heartbeat: .seconds(7), path: "/a b"), "heartbeat:\n  interval: 7s\n")
        XCTAssertTrue(ProbeRecommendation.config(heartbeat: .seconds(7), path: "/api/v1/stream").contains("  - path: /api/v1/stream\n"))
    }

    func testFormat() {
        XCTAssertEqual(ProbeFormat.seconds(0), "0.000")
        XCTAssertEqual(ProbeFormat.seconds(1_234_567_890), "1.235")
        XCTAssertEqual(ProbeFormat.seconds(999_999_999), "1.000")
        XCTAssertEqual(ProbeFormat.seconds(12_345_000_000, decimals: 1), "12.3")
        XCTAssertEqual(ProbeFormat.seconds(-1_500_000_000, decimals: 1), "-1.5")
        XCTAssertEqual(ProbeFormat.roughSeconds(2_040_000_000), "2.0")
        XCTAssertEqual(ProbeFormat.roughSeconds(9_940_000_000), "9.9")
        XCTAssertEqual(ProbeFormat.roughSeconds(9_960_000_000), "10")
        XCTAssertEqual(ProbeFormat.roughSeconds(60_400_000_000), "60")
        XCTAssertEqual(ProbeFormat.millis(2_400_000), "2 ms")
    }

    static let jsonKeys = ["url", "duration_limit_s", "healthy", "exit_status", "response", "timeline", "end",
                           "tls", "intermediaries", "idle_timeout_s", "lifetime_limit_s", "held_response", "head_held_s",
                           "observed_heartbeat_s", "buffering", "diagnostic", "findings", "recommendation", "messages", "messages_truncated"]

    func testJSONParsesWithStableKeys() throws {
        let records = [
            Self.record(times: [500, 1000].map { $0 * Self.ms }, comments: [1], end: .serverClosed, endAt: 4 * Self.s),
            Self.record(times: (1...5).map { ProbeTime($0) * Self.s }, end: .durationReached, endAt: 6 * Self.s),
            Self.record(head: nil, end: .connectFailed("refused \"quoted\"\n"), endAt: Self.ms),
            Self.record(head: Self.head(404, [("Content-Length", "0")]), end: .notAStream, endAt: Self.ms),
        ]
        for r in records {
            let a = ProbeAnalysis(r)
            let text = ProbeReport.json(a)
            XCTAssertFalse(text.contains("\n"), "one line")
            let json = try TestJSON.parse(text)
            guard case .object(let members) = json else { return XCTFail("not an object") }
            XCTAssertEqual(members.map(\.0), Self.jsonKeys)
            let dict = Dictionary(uniqueKeysWithValues: members)
            XCTAssertEqual(dict["healthy"], .bool(a.healthy))
            XCTAssertEqual(dict["exit_status"], .number("\(a.exitStatus)"))
            guard case .object(let end)? = dict["end"] else { return XCTFail("end") }
            XCTAssertEqual(end.first { $0.0 == "reason" }?.1, .string(r.end!.code))
            guard case .array(let findings)? = dict["findings"] else { return XCTFail("findings") }
            XCTAssertEqual(findings.count, a.findings.count)
        }
        let idle = try TestJSON.parse(ProbeReport.json(ProbeAnalysis(records[0])))
        guard case .object(let members) = idle else { return XCTFail() }
        XCTAssertEqual(members.first { $0.0 == "idle_timeout_s" }?.1, .number("3.000"))
        guard case .object(let timeline)? = members.first(where: { $0.0 == "timeline" })?.1 else { return XCTFail() }
        XCTAssertEqual(timeline.map(\.0), ["connect_s", "first_byte_s", "head_s", "first_payload_s", "first_event_s", "events",
                                           "comments", "payload_parsed", "decoded", "decoded_bytes", "bytes", "payload_bytes", "reads", "gaps",
                                           "longest_silence_s"])
        XCTAssertEqual(timeline.first { $0.0 == "events" }?.1, .number("1"))
    }

    func testTextReportAndProgress() {
        let r = Self.record(times: [500, 1000].map { $0 * Self.ms }, comments: [1], end: .serverClosed, endAt: 4 * Self.s)
        let text = ProbeReport.text(ProbeAnalysis(r))
        for needle in ["sse-keepalive probe http://127.0.0.1:8080/events", "\nResponse\n", "\nTimeline", "\nDiagnosis\n",
                       "! closed after 3.0 s of silence: an idle timeout of about 3.0 s on the path",
                       "\nRecommendation\n", "    heartbeat:\n      interval: 1s\n", "not healthy (exit 1)"] {
            XCTAssertTrue(text.contains(needle), "missing \(needle.debugDescription) in\n\(text)")
        }
        XCTAssertEqual(ProbeReport.progressLine(elapsed: 2_345 * Self.ms, record: r),
                       "probe 2.3 s  events 1  comments 1  last gap 0.5 s  quiet 1.3 s")
        var connecting = ProbeRecord(url: try! ProbeURL.parse("http://h/"), durationLimit: Self.s)
        XCTAssertEqual(ProbeReport.progressLine(elapsed: 0, record: connecting), "probe 0.0 s  connecting")
        connecting.connectedAt = 0
        XCTAssertEqual(ProbeReport.progressLine(elapsed: 0, record: connecting), "probe 0.0 s  waiting for the response head")
    }
}
