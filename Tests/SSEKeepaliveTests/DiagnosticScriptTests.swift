import XCTest
@testable import SSEKeepalive

/// The diagnostic route's script (query -> bounded steps), its rate limiter,
/// and what `probe` reads from it when the script goes through modelled paths.
final class DiagnosticScriptTests: XCTestCase {
    func script(_ query: String? = nil) -> DiagnosticScript {
        guard case .success(let p) = DiagnosticScript.parse(query: query) else { XCTFail("\(query ?? "-")"); return DiagnosticScript(.init()) }
        return DiagnosticScript(p)
    }

    /// All payload bytes of the script.
    func payload(_ s: DiagnosticScript) -> [UInt8] {
        s.steps.flatMap { if case .write(let b) = $0 { return b } else { return [] } }
    }

    func testQueryTable() {
        let good: [(String?, DiagnosticScript.Parameters)] = [
            (nil, .init()),
            ("", .init()),
            ("gap=100&max_size=4096", { var p = DiagnosticScript.Parameters(); p.gap = 100; p.maxSize = 4096; return p }()),
            ("silence_from=500&silence_to=2000&head_wait=0",
             { var p = DiagnosticScript.Parameters(); p.silenceFrom = 500; p.silenceTo = 2000; p.headWait = 0; return p }()),
        ]
        for (query, expected) in good {
            guard case .success(let p) = DiagnosticScript.parse(query: query) else { XCTFail("\(query ?? "nil")"); continue }
            XCTAssertEqual(p, expected, query ?? "nil")
        }
        let bad: [(String, String)] = [
            ("size=1", "unknown parameter \"size\""),
            ("gap=10", "gap must be between 50 and 2000"),
            ("gap=abc", "gap must be a whole number"),
            ("gap=", "gap must be a whole number"),
            ("gap", "gap must be a whole number"),
            ("gap=-5", "gap must be a whole number"),
            ("gap=99999999999999999999", "gap must be a whole number"),
            ("gap=100&gap=200", "given twice"),
            ("max_size=64", "max_size must be between 128 and 262144"),
            ("silence_from=100000&silence_to=300000", "longer than 300000 ms"),
        ]
        for (query, expected) in bad {
            guard case .failure(let error) = DiagnosticScript.parse(query: query) else { XCTFail(query); continue }
            XCTAssertTrue(error.description.contains(expected), "\(query): \(error)")
        }
    }

    func testDefaultScriptShape() {
        let s = script()
        // 1.5 s of nothing after the head, then the first event.
        XCTAssertEqual(s.steps.first, .wait(milliseconds: 1500))
        let writes = s.steps.compactMap { if case .write(let b) = $0 { return b } else { return nil } }
        let waits = s.steps.compactMap { if case .wait(let ms) = $0 { return ms } else { return nil } }
        XCTAssertEqual(waits.reduce(0, +), s.parameters.duration)
        XCTAssertLessThanOrEqual(s.parameters.duration, DiagnosticScript.maxDuration)
        // Sizes double from 128 to 16 KiB, each event exactly that many bytes.
        let sizes = DiagnosticScript.sizes(upTo: 16 * 1024)
        XCTAssertEqual(sizes, [128, 256, 512, 1024, 2048, 4096, 8192, 16384])
        XCTAssertEqual(writes.prefix(sizes.count).map(\.count), sizes)
        // Silences 1, 2, 4, 8, 16, 32 s, each announced, then the end.
        XCTAssertEqual(DiagnosticScript.silences(from: 1000, to: 32_000), [1000, 2000, 4000, 8000, 16_000, 32_000])
        XCTAssertEqual(writes.count, sizes.count + 6 + 1)
        XCTAssertTrue(waits.contains(32_000))
        // The payload parses as events (no heartbeat in it), with the fields probe reads.
        var parser = ProbeEventParser()
        let events = parser.feed(payload(s), at: 0).compactMap { if case .event(let m) = $0 { return m } else { return nil } }
        XCTAssertEqual(events.map(\.type), Array(repeating: "probe-size", count: 8) + Array(repeating: "probe-silence", count: 6) + ["probe-end"])
        XCTAssertEqual(events.map(\.id), (0..<15).map { String($0) })
        XCTAssertEqual(ProbeDiagnosticReading.field("total", events[1].text), 384)
        XCTAssertEqual(ProbeDiagnosticReading.field("at_ms", events[1].text), 1750)
        XCTAssertEqual(ProbeDiagnosticReading.field("silence_ms", events[8].text), 1000)
    }

    func testOddMaxSizeIsTheLastEvent() {
        let writes = script("max_size=1000&silence_to=0").steps.compactMap { if case .write(let b) = $0 { return b.count } else { return nil } }
        XCTAssertEqual(Array(writes.prefix(4)), [128, 256, 512, 1000])
        XCTAssertEqual(writes.count, 5) // no silences, then the end
    }

    func testQueryFittingADuration() throws {
        // Sizes alone: 1.5 s + 7 gaps of 250 ms = 3.25 s, plus a second to spare.
        XCTAssertEqual(ProbeOptions.minimumDiagnosticDuration, 4250)
        XCTAssertNil(DiagnosticScript.query(fitting: 4249))
        XCTAssertEqual(DiagnosticScript.query(fitting: 4250), "silence_to=0")
        XCTAssertEqual(DiagnosticScript.query(fitting: 20_250), "silence_to=8000")  // 3.25 + 4 * 0.25 + 15 = 19.25 s, + 1
        XCTAssertEqual(DiagnosticScript.query(fitting: 20_249), "silence_to=4000")
        XCTAssertEqual(DiagnosticScript.query(fitting: 3_600_000), "silence_to=128000") // capped by maxDuration
        for d in [4250, 20_000, 60_000, 300_000, 3_600_000] {
            guard case .success(let p) = DiagnosticScript.parse(query: DiagnosticScript.query(fitting: d)) else { return XCTFail("\(d)") }
            XCTAssertLessThanOrEqual(p.duration + 1000, d)
        }
        let o = try ProbeOptions.parse(url: "https://h/.well-known/sse-keepalive/probe?gap=100", duration: "30s", throughSidecar: true)
        XCTAssertEqual(o.url.target, "/.well-known/sse-keepalive/probe?gap=100&silence_to=8000")
        XCTAssertEqual(try ProbeOptions.parse(url: "http://h/p?silence_to=1000", duration: "1m", throughSidecar: true).url.target,
                       "/p?silence_to=1000")
        XCTAssertThrowsError(try ProbeOptions.parse(url: "http://h/p", duration: "2s", throughSidecar: true)) { error in
            XCTAssertTrue("\(error)".contains("--through-sidecar needs a --duration of at least 4250ms"), "\(error)")
        }
    }

    func testLimiter() {
        var limiter = DiagnosticLimiter(maxConcurrent: 2, perMinute: 3, now: 0)
        XCTAssertEqual(limiter.request(now: 0), .start)
        XCTAssertEqual(limiter.request(now: 0), .start)
        XCTAssertEqual(limiter.request(now: 0), .refuse(retryAfter: 10), "two running")
        limiter.finished()
        XCTAssertEqual(limiter.request(now: 1), .start)
        limiter.finished()
        limiter.finished()
        XCTAssertEqual(limiter.running, 0)
        // The bucket (3 a minute) is empty: one token every 20 s.
        XCTAssertEqual(limiter.request(now: 1000), .refuse(retryAfter: 19))
        XCTAssertEqual(limiter.request(now: 21_000), .start)
        limiter.finished()
        limiter.finished()
        XCTAssertEqual(limiter.running, 0, "never negative")
    }

    func testAnswerTable() {
        var limiter = DiagnosticLimiter(maxConcurrent: 1, perMinute: 10, now: 0)
        func decide(_ method: String, _ version: HTTPVersion, _ query: String?) -> DiagnosticAnswer {
            DiagnosticAnswer.decide(method: method, version: version, query: query) { limiter.request(now: 0) }
        }
        func text(_ a: DiagnosticAnswer) -> String {
            switch a {
            case .error(_, let bytes): return String(decoding: bytes, as: UTF8.self)
            case .stream(let head, _, _): return String(decoding: head, as: UTF8.self)
            }
        }
        let post = decide("POST", .http11, nil)
        XCTAssertTrue(text(post).hasPrefix("HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\n"), text(post))
        let bad = decide("GET", .http11, "gap=1")
        guard case .error(400, _) = bad else { return XCTFail(text(bad)) }
        XCTAssertTrue(text(bad).hasSuffix("400 Bad Request: diagnostic stream: gap must be between 50 and 2000\n"), text(bad))
        XCTAssertEqual(limiter.running, 0, "errors take no slot")
        let ok = decide("GET", .http11, "silence_to=0")
        guard case .stream(let head, let chunked, let script) = ok else { return XCTFail(text(ok)) }
        XCTAssertTrue(chunked)
        XCTAssertEqual(script.parameters.silenceTo, 0)
        XCTAssertEqual(String(decoding: head, as: UTF8.self),
                       "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache, no-transform\r\n"
                       + "X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        let busy = decide("GET", .http10, nil)
        guard case .error(429, _) = busy else { return XCTFail(text(busy)) }
        XCTAssertTrue(text(busy).hasPrefix("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 10\r\n"), text(busy))
        limiter.finished()
        guard case .stream(let head10, let chunked10, _) = decide("GET", .http10, nil) else { return XCTFail() }
        XCTAssertFalse(chunked10)
        XCTAssertTrue(String(decoding: head10, as: UTF8.self).hasSuffix("X-Accel-Buffering: no\r\nConnection: close\r\n\r\n"))
    }

    // MARK: the script through modelled paths, read by probe

    static let head = Array("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)

    /// Plays `script` into a ProbeSession: `hold` bytes are held by a buffer
    /// before anything passes (0: none); an idle timeout closes the stream
    /// after `idleTimeout` ms without a byte (0: none).
    func play(_ script: DiagnosticScript, hold: Int = 0, idleTimeout: Int = 0) -> ProbeRecord {
        let ms: ProbeTime = 1_000_000
        var session = ProbeSession(url: try! ProbeURL.parse("http://h/.well-known/sse-keepalive/probe"), durationLimit: 400_000 * ms)
        session.connected(at: 0)
        session.receive(Self.head, at: 2 * ms)
        var now = 0
        var lastByte = 0
        var held: [UInt8] = []
        for step in script.steps {
            switch step {
            case .wait(let wait):
                if idleTimeout > 0 && now + wait - lastByte >= idleTimeout {
                    session.finish(.serverClosed, at: ProbeTime(lastByte + 2 + idleTimeout) * ms)
                    return session.record
                }
                now += wait
            case .write(let bytes):
                var framed = Array(String(bytes.count, radix: 16).utf8) + [13, 10] + bytes + [13, 10]
                if hold > 0 {
                    held += framed
                    guard held.count >= hold else { continue }
                    framed = held
                    held = []
                }
                session.receive(framed, at: ProbeTime(now + 2) * ms)
                lastByte = now
            }
        }
        session.receive(Array("0\r\n\r\n".utf8), at: ProbeTime(now + 2) * ms)
        return session.record
    }

    func testTransparentPathRunsToTheEnd() {
        let s = script("silence_to=4000")
        let a = ProbeAnalysis(play(s))
        let d = a.diagnostic!
        XCTAssertNil(d.bufferingThreshold)
        XCTAssertNil(d.thresholdAbove)
        XCTAssertEqual(d.silences, [1000, 2000, 4000])
        XCTAssertEqual(d.survivedSilences, 3)
        XCTAssertTrue(d.reachedEnd)
        XCTAssertNil(d.fatalSilence)
        XCTAssertEqual(a.findings.first { $0.code == "buffer_threshold" }?.severity, .note)
        XCTAssertTrue(a.healthy, "\(a.findings)")
        XCTAssertEqual(a.record.end, .responseComplete)
    }

    func testBufferIsMeasured() {
        // A 4 KiB buffer: the 128..2048-byte events (3968 bytes with framing) wait for the 4096-byte one.
        let a = ProbeAnalysis(play(script("silence_to=0"), hold: 4096))
        let d = a.diagnostic!
        XCTAssertEqual(d.bufferingThreshold, 128 + 256 + 512 + 1024 + 2048 + 4096)
        let f = a.findings.first { $0.code == "buffer_threshold" }!
        XCTAssertEqual(f.severity, .problem)
        XCTAssertTrue(f.message.hasPrefix("the path held the diagnostic stream until about 8064 bytes had been sent"), f.message)
        XCTAssertFalse(a.healthy)
    }

    func testIdleTimeoutIsBracketedBySilences() {
        // Cut after 5 s without a byte: survives 1, 2 and 4 s, dies in the 8 s silence.
        let a = ProbeAnalysis(play(script(), idleTimeout: 5000))
        let d = a.diagnostic!
        XCTAssertEqual(d.survivedSilences, 3)
        XCTAssertEqual(d.longestSurvivedSilence, 4000)
        XCTAssertEqual(d.fatalSilence, 8000)
        XCTAssertFalse(d.reachedEnd)
        XCTAssertEqual(a.idleTimeout, 5_000_000_000)
        XCTAssertEqual(a.findings.first { $0.code == "silences" }?.message,
                       "the path carried silences up to 4.0 s; the stream was cut during the 8.0 s silence")
        XCTAssertEqual(a.recommendation?.heartbeat, .seconds(2))
    }

    func testOrdinaryStreamsAreNotDiagnostic() {
        var session = ProbeSession(url: try! ProbeURL.parse("http://h/e"), durationLimit: 1_000_000_000)
        session.receive(Self.head + Array("9\r\ndata: x\n\n\r\n".utf8), at: 1)
        XCTAssertNil(ProbeDiagnosticReading(session.record))
    }
}
