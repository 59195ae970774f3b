import XCTest
@testable import SSEKeepalive

/// The wire signatures of issue 13, one table row each: what arrived when,
/// and the verdict, timeout and recommendation that must follow.
final class ProbeVerdictTests: XCTestCase {
    static let s: ProbeTime = 1_000_000_000
    static let ms: ProbeTime = 1_000_000

    static func head(_ extra: [(String, String)] = []) -> ProbeHeadAnalysis {
        ProbeHeadAnalysis(ResponseHead(version: .http11, status: 200, reason: "OK", headers: HTTPHeaders(
            [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"), ("Transfer-Encoding", "chunked")] + extra)))
    }

    /// Reads at `reads` (time, bytes); the head comes with the first read;
    /// `payloadFrom` is the read index carrying the first payload; messages
    /// at `events`/`comments`; the end.
    static func record(reads: [(ProbeTime, Int)], payloadFrom: Int = 0, events: [ProbeTime] = [],
                       comments: [ProbeTime] = [], end: ProbeEnd, endAt: ProbeTime,
                       head: ProbeHeadAnalysis = head(), tls: ProbeTLSInfo? = nil) -> ProbeRecord {
        var r = ProbeRecord(url: try! ProbeURL.parse("http://127.0.0.1:8080/events"), durationLimit: 30 * s)
        r.connectedAt = 1 * ms
        r.tls = tls
        var previous = r.connectedAt!
        for (i, (t, n)) in reads.enumerated() {
            if i == 0 {
                r.firstByteAt = t
                r.headAt = t
                r.head = head
                r.payloadParsed = true
            }
            if i == payloadFrom && r.firstPayloadAt == nil { r.firstPayloadAt = t }
            r.longestReadGap = max(r.longestReadGap, t - previous)
            previous = t
            r.lastByteAt = t
            r.reads += 1
            r.bytesReceived += n
            r.readLog.append(ProbeRead(time: t, bytes: n))
        }
        let messages = events.map { ProbeMessage(kind: .event, time: $0, type: "message", text: "x") }
            + comments.map { ProbeMessage(kind: .comment, time: $0, text: "heartbeat") }
        r.messages = messages.sorted { $0.time < $1.time }
        r.eventCount = events.count
        r.commentCount = comments.count
        r.end = end
        r.endAt = endAt
        return r
    }

    struct Row {
        var name: String
        var record: ProbeRecord
        var problems: [String]
        var idle: ProbeTime? = nil
        var lifetime: ProbeTime? = nil
        var heartbeat: TimeSpan?
        var reasonContains: String? = nil
    }

    func testVerdictTable() {
        let s = Self.s, ms = Self.ms
        let rows: [Row] = [
            // Issue 13's first wrong verdict: nothing for 7 s, then head, bytes and close at once.
            Row(name: "held response", record: Self.record(reads: [(7_003 * ms, 220)], end: .serverClosed, endAt: 7_004 * ms),
                problems: ["held_response"], idle: 7_003 * ms, heartbeat: .seconds(3), reasonContains: "turn its buffering off too"),
            // A quiet stream cut after 7 s of silence, head at once: a plain idle timeout.
            Row(name: "idle timeout", record: Self.record(reads: [(5 * ms, 200)], end: .serverClosed, endAt: 7_005 * ms),
                problems: ["idle_timeout"], idle: 7 * s, heartbeat: .seconds(3)),
            // Head only with the first payload, 4 s in; the stream then stays open.
            Row(name: "head held", record: Self.record(reads: [(4 * s, 300), (5 * s, 40)], events: [4 * s, 5 * s],
                                                       end: .durationReached, endAt: 6 * s),
                problems: ["head_held"], heartbeat: .seconds(15)),
            // The head at once, the first event 4 s later in its own read: the server was quiet, nothing held.
            Row(name: "late first event", record: Self.record(reads: [(5 * ms, 200), (4 * s, 40)], payloadFrom: 1, events: [4 * s],
                                                              end: .durationReached, endAt: 6 * s),
                problems: [], heartbeat: .seconds(15)),
            // Events every 200 ms, closed 10 ms after the last: a lifetime limit.
            Row(name: "lifetime", record: Self.record(reads: (0..<15).map { (ProbeTime($0) * 200 * ms + 5 * ms, 20) },
                                                      events: (0..<15).map { ProbeTime($0) * 200 * ms + 5 * ms },
                                                      end: .serverClosed, endAt: 2_815 * ms),
                problems: ["lifetime_limit"], lifetime: 2_814 * ms, heartbeat: .seconds(15),
                reasonContains: "which no heartbeat prevents"),
            // Issue 13's third wrong verdict: heartbeats every 2 s behind nginx (documented 60 s): stays 2 s.
            Row(name: "observed heartbeats", record: Self.record(
                    reads: [(5 * ms, 200)] + (1...4).map { (ProbeTime($0) * 2 * s, 12) }, comments: (1...4).map { ProbeTime($0) * 2 * s },
                    end: .durationReached, endAt: 9 * s, head: Self.head([("Server", "nginx/1.22.1")])),
                problems: [], heartbeat: .seconds(2), reasonContains: "do not raise it beyond 2s"),
            // Behind Fastly (documented between_bytes_timeout 10 s), a short run: below 10 s.
            Row(name: "documented hop limit", record: Self.record(reads: [(5 * ms, 200)], end: .durationReached, endAt: 3 * s,
                                                                  head: Self.head([("X-Served-By", "cache-fra-1234-FRA")])),
                problems: [], heartbeat: .seconds(5), reasonContains: "Fastly's documented default between_bytes_timeout of 10 s"),
            // No hop known, a 3 s run: never "no idle timeout showed up".
            Row(name: "short run", record: Self.record(reads: [(5 * ms, 200)], end: .durationReached, endAt: 3 * s),
                problems: [], heartbeat: .seconds(15), reasonContains: "too short to see the 30-120 s idle timeouts"),
        ]
        for row in rows {
            let a = ProbeAnalysis(row.record)
            XCTAssertEqual(a.findings.filter { $0.severity == .problem }.map(\.code), row.problems, row.name)
            XCTAssertEqual(a.idleTimeout, row.idle, row.name)
            XCTAssertEqual(a.lifetimeLimit, row.lifetime, row.name)
            XCTAssertEqual(a.recommendation?.heartbeat, row.heartbeat, row.name)
            if let needle = row.reasonContains {
                XCTAssertTrue(a.recommendation?.reason.contains(needle) == true, "\(row.name): \(a.recommendation?.reason ?? "-")")
            }
            XCTAssertFalse(a.recommendation?.reason.contains("no idle timeout showed up") == true, row.name)
            for f in a.findings where f.severity == .problem {
                XCTAssertNotNil(f.evidence, "\(row.name): \(f.code) has its evidence")
            }
            XCTAssertEqual(a.exitStatus, row.problems.isEmpty && row.record.end == .durationReached ? 0 : 1, row.name)
        }
    }

    func testHeldResponseWordsAndEvidence() {
        let a = ProbeAnalysis(Self.record(reads: [(7_003 * Self.ms, 220)], end: .serverClosed, endAt: 7_004 * Self.ms))
        let f = a.findings.first { $0.code == "held_response" }!
        XCTAssertTrue(f.message.hasPrefix("nothing, not even the response head, for 7.0 s; then everything at once with the close: "
                                          + "a buffering hop held the whole response, and an idle timeout of about 7.0 s"), f.message)
        XCTAssertEqual(f.evidence, "connected at 0.001 s, first byte at 7.003 s, closed at 7.004 s; "
                       + "head, 0 payload bytes and the close within 1 ms")
        XCTAssertTrue(a.heldResponse)
        XCTAssertFalse(a.findings.contains { $0.code == "idle_timeout" || $0.code == "stream_ended" })
        // Bytes spread over more than 250 ms after the late head: not "all at once".
        let spread = ProbeAnalysis(Self.record(reads: [(3 * Self.s, 200), (3_400 * Self.ms, 20)], end: .serverClosed,
                                               endAt: 3_400 * Self.ms))
        XCTAssertFalse(spread.heldResponse)
    }

    func testLongLongestTolerantRunSaysNoTimeout() {
        // 200 s without a timeout and a 130 s silence survived: now "no idle timeout showed up" is earned.
        let r = Self.record(reads: [(5 * Self.ms, 200), (130 * Self.s, 20)], payloadFrom: 1, events: [130 * Self.s],
                            end: .durationReached, endAt: 200 * Self.s)
        let a = ProbeAnalysis(r)
        XCTAssertEqual(a.recommendation?.heartbeat, .seconds(15))
        XCTAssertTrue(a.recommendation!.reason.hasPrefix("no idle timeout showed up in 200.0 s"), a.recommendation!.reason)
    }

    func testHTTP1Note() {
        let tls = ProbeTLSInfo(version: "TLSv1.3", cipher: "TLS_AES_256_GCM_SHA384", serverName: "h", alpn: "http/1.1", verified: true)
        let a = ProbeAnalysis(Self.record(reads: [(5 * Self.ms, 200)], events: [5 * Self.ms], end: .durationReached,
                                          endAt: 3 * Self.s, tls: tls))
        XCTAssertEqual(a.findings.map(\.code), ["http1_only"])
        XCTAssertTrue(a.healthy)
        var h2 = tls
        h2.alpn = "h2"
        let b = ProbeAnalysis(Self.record(reads: [(5 * Self.ms, 200)], events: [5 * Self.ms], end: .durationReached,
                                          endAt: 3 * Self.s, tls: h2))
        XCTAssertEqual(b.findings.map(\.code), [])
        XCTAssertTrue(ProbeReport.text(b).contains("ALPN               h2: browsers use HTTP/2"))
    }

    func testHopsFromHeaders() {
        let table: [([(String, String)], [String], ProbeTime?)] = [
            ([("CF-Ray", "8f1c2d3e4f-FRA"), ("Server", "cloudflare")], ["Cloudflare"], 100 * Self.s),
            ([("X-Amz-Cf-Id", "abc=="), ("Via", "1.1 0123.cloudfront.net (CloudFront)")], ["Amazon CloudFront"], 30 * Self.s),
            ([("Server", "awselb/2.0")], ["AWS Application Load Balancer"], 60 * Self.s),
            ([("X-Azure-Ref", "0abc")], ["Azure Front Door"], 30 * Self.s),
            ([("Via", "1.1 google")], ["Google Cloud load balancer"], 30 * Self.s),
            ([("X-Served-By", "cache-fra-1234-FRA"), ("X-Cache", "MISS"), ("Via", "1.1 varnish")], ["Fastly"], 10 * Self.s),
            ([("Via", "1.1 vegur")], ["Heroku router"], 55 * Self.s),
            ([("Server", "envoy")], ["Envoy"], 15 * Self.s),
            ([("X-Varnish", "32770")], ["Varnish"], 60 * Self.s),
            ([("Server", "nginx/1.22.1")], ["nginx"], 60 * Self.s),
            ([("Server", "Caddy")], ["Caddy"], nil),
            ([("Via", "1.1 squid")], ["a proxy"], nil),
            ([("Server", "gunicorn")], [], nil),
            ([("CF-Ray", "x"), ("Server", "nginx")], ["Cloudflare", "nginx"], 100 * Self.s),
        ]
        for (fields, names, firstLimit) in table {
            let hops = ProbeHop.identify(HTTPHeaders(fields))
            XCTAssertEqual(hops.map(\.name), names, "\(fields)")
            XCTAssertEqual(hops.first?.limit, firstLimit, "\(fields)")
        }
        XCTAssertEqual(ProbeHop.identify(HTTPHeaders([("Server", "envoy")]))[0].limitKind, .lifetime)
        XCTAssertEqual(ProbeHop.identify(HTTPHeaders([("CF-Ray", "8f1c")]))[0].description,
                       "Cloudflare (CF-Ray: 8f1c): by default its Proxy Read Timeout cuts a stream after 100 s without a byte")
    }

    func testCertificateWords() {
        let table: [(Int, Bool, String)] = [
            (10, false, "the server's certificate has expired (valid until Jan  1 00:00:00 2020 GMT)"),
            (9, false, "the server's certificate is not valid yet (check the clocks)"),
            (62, false, "wrong host: the server's certificate is not valid for wrong.test (it is for: localhost, probe.test)"),
            (20, false, "unknown issuer: the server's certificate is not signed by a CA in this machine's CA store; "
                + "for a private CA pass its certificate with --cacert FILE"),
            (18, true, "unknown issuer: the server's certificate is not signed by a CA in the CA file given with --cacert (it is self-signed)"),
            (7, false, "the server's certificate was rejected: certificate signature failure"),
        ]
        for (code, cacert, expected) in table {
            XCTAssertEqual(ProbeTLSWords.certificateProblem(code: code, host: "wrong.test", names: "localhost, probe.test",
                                                            notAfter: "Jan  1 00:00:00 2020 GMT", usingCACert: cacert,
                                                            reason: "certificate signature failure"), expected)
        }
    }
}
