import XCTest
@testable import SSEKeepalive

final class MetricsExpositionTests: XCTestCase {
    static let families = [
        "sse_keepalive_streams_open", "sse_keepalive_heartbeats_total", "sse_keepalive_heartbeats_deferred_total",
        "sse_keepalive_streams_ended_total", "sse_keepalive_bytes_forwarded_total",
        "sse_keepalive_requests_total", "sse_keepalive_upstream_errors_total", "sse_keepalive_client_disconnects_total",
        "sse_keepalive_request_headers_dropped_total",
        "sse_keepalive_shared_upstreams", "sse_keepalive_shared_clients", "sse_keepalive_replayed_events_total",
        "sse_keepalive_shared_clients_dropped_total", "sse_keepalive_connections_open", "sse_keepalive_connections_accepted_total",
        "sse_keepalive_worker_connections_accepted_total", "sse_keepalive_workers", "sse_keepalive_draining",
    ]

    var small: MetricsSnapshot {
        var m = MetricsSnapshot()
        m.streamsOpen = ["/events": 2, "default": 0]
        m.heartbeats = ["/events": 5]
        m.heartbeatsDeferred = ["/events": 1]
        m.streamsEnded = [RouteEnding(route: "/events", reason: "shutdown"): 2, RouteEnding(route: "/events", reason: "max_duration"): 1]
        m.bytesUpstreamToClient = 1234
        m.bytesClientToUpstream = 56
        m.requests = [RouteCode(route: "/events", code: 502): 1, RouteCode(route: "default", code: 404): 1,
                      RouteCode(route: "/events", code: 200): 3]
        m.upstreamErrors = [RouteUpstreamError(route: "/events", kind: .connect): 1]
        m.clientDisconnects = [.reset: 2]
        m.requestHeadersDropped(route: "/events", count: 2)
        m.requestHeadersDropped(route: "/events", count: 1)
        m.connectionsOpen = 3
        m.connectionsAccepted = 7
        m.acceptedByWorker = [0: 4, 1: 3]
        return m
    }

    func testGoldenText() {
        let expected = """
            # HELP sse_keepalive_streams_open Event streams currently open, by route.
            # TYPE sse_keepalive_streams_open gauge
            sse_keepalive_streams_open{route="/events"} 2
            sse_keepalive_streams_open{route="default"} 0
            # HELP sse_keepalive_heartbeats_total Heartbeat comments written to clients, by route.
            # TYPE sse_keepalive_heartbeats_total counter
            sse_keepalive_heartbeats_total{route="/events"} 5
            # HELP sse_keepalive_heartbeats_deferred_total Heartbeats that were due while the stream stood mid-line or after a CR (sent at the next safe point), by route.
            # TYPE sse_keepalive_heartbeats_deferred_total counter
            sse_keepalive_heartbeats_deferred_total{route="/events"} 1
            # HELP sse_keepalive_streams_ended_total Event streams the proxy ended at an event boundary, by route and reason (shutdown, max_duration).
            # TYPE sse_keepalive_streams_ended_total counter
            sse_keepalive_streams_ended_total{route="/events",reason="max_duration"} 1
            sse_keepalive_streams_ended_total{route="/events",reason="shutdown"} 2
            # HELP sse_keepalive_bytes_forwarded_total Bytes written by the proxy (payload and framing), by direction.
            # TYPE sse_keepalive_bytes_forwarded_total counter
            sse_keepalive_bytes_forwarded_total{direction="client_to_upstream"} 56
            sse_keepalive_bytes_forwarded_total{direction="upstream_to_client"} 1234
            # HELP sse_keepalive_requests_total Finished requests, by route and response status code.
            # TYPE sse_keepalive_requests_total counter
            sse_keepalive_requests_total{route="/events",code="200"} 3
            sse_keepalive_requests_total{route="/events",code="502"} 1
            sse_keepalive_requests_total{route="default",code="404"} 1
            # HELP sse_keepalive_upstream_errors_total Upstream failures, by route and kind (connect, timeout, reset, malformed).
            # TYPE sse_keepalive_upstream_errors_total counter
            sse_keepalive_upstream_errors_total{route="/events",kind="connect"} 1
            # HELP sse_keepalive_client_disconnects_total Clients gone mid-exchange, by kind (reset, eof, timeout).
            # TYPE sse_keepalive_client_disconnects_total counter
            sse_keepalive_client_disconnects_total{kind="eof"} 0
            sse_keepalive_client_disconnects_total{kind="reset"} 2
            sse_keepalive_client_disconnects_total{kind="timeout"} 0
            # HELP sse_keepalive_request_headers_dropped_total Request header fields not forwarded because their name contains an underscore, by route.
            # TYPE sse_keepalive_request_headers_dropped_total counter
            sse_keepalive_request_headers_dropped_total{route="/events"} 3
            # HELP sse_keepalive_shared_upstreams Upstream event streams shared by clients, by route.
            # TYPE sse_keepalive_shared_upstreams gauge
            # HELP sse_keepalive_shared_clients Clients on shared event streams, by route.
            # TYPE sse_keepalive_shared_clients gauge
            # HELP sse_keepalive_replayed_events_total Events sent to joining clients from a shared stream's replay buffer, by route.
            # TYPE sse_keepalive_replayed_events_total counter
            # HELP sse_keepalive_shared_clients_dropped_total Shared-stream clients dropped for falling limits.stream_buffer behind, by route.
            # TYPE sse_keepalive_shared_clients_dropped_total counter
            # HELP sse_keepalive_connections_open Client connections currently open.
            # TYPE sse_keepalive_connections_open gauge
            sse_keepalive_connections_open 3
            # HELP sse_keepalive_connections_accepted_total Client connections accepted.
            # TYPE sse_keepalive_connections_accepted_total counter
            sse_keepalive_connections_accepted_total 7
            # HELP sse_keepalive_worker_connections_accepted_total Client connections accepted, by worker.
            # TYPE sse_keepalive_worker_connections_accepted_total counter
            sse_keepalive_worker_connections_accepted_total{worker="0"} 4
            sse_keepalive_worker_connections_accepted_total{worker="1"} 3
            # HELP sse_keepalive_workers Event-loop worker threads.
            # TYPE sse_keepalive_workers gauge
            sse_keepalive_workers 2
            # HELP sse_keepalive_draining 1 while shutting down (no longer accepting), else 0.
            # TYPE sse_keepalive_draining gauge
            sse_keepalive_draining 0

            """
        XCTAssertEqual(small.prometheusText(workers: 2, draining: false), expected)
    }

    func testEveryFamilyOnceInFixedOrderWithHelpAndType() throws {
        for m in [MetricsSnapshot(), small] {
            let parsed = try ParsedExposition(m.prometheusText(workers: 1, draining: false))
            XCTAssertEqual(parsed.families.map(\.name), Self.families)
            for f in parsed.families {
                XCTAssertFalse(f.help.isEmpty, f.name)
                XCTAssertEqual(f.type, f.name.hasSuffix("_total") ? "counter" : "gauge", f.name)
            }
        }
    }

    func testEmptySnapshotStillHasFixedSeries() throws {
        let parsed = try ParsedExposition(MetricsSnapshot().prometheusText(workers: 4, draining: true))
        XCTAssertEqual(parsed["sse_keepalive_streams_open"]?.samples, [])
        XCTAssertEqual(parsed["sse_keepalive_heartbeats_total"]?.samples, [])
        XCTAssertEqual(parsed["sse_keepalive_requests_total"]?.samples, [])
        XCTAssertEqual(parsed["sse_keepalive_upstream_errors_total"]?.samples, [])
        XCTAssertEqual(parsed.value("sse_keepalive_bytes_forwarded_total", ["direction": "upstream_to_client"]), 0)
        XCTAssertEqual(parsed.value("sse_keepalive_bytes_forwarded_total", ["direction": "client_to_upstream"]), 0)
        for kind in ClientDisconnectKind.allCases {
            XCTAssertEqual(parsed.value("sse_keepalive_client_disconnects_total", ["kind": kind.rawValue]), 0, kind.rawValue)
        }
        XCTAssertEqual(parsed["sse_keepalive_client_disconnects_total"]?.samples.count, ClientDisconnectKind.allCases.count)
        XCTAssertEqual(parsed.value("sse_keepalive_connections_open"), 0)
        XCTAssertEqual(parsed.value("sse_keepalive_connections_accepted_total"), 0)
        XCTAssertEqual(parsed.value("sse_keepalive_workers"), 4)
        XCTAssertEqual(parsed.value("sse_keepalive_draining"), 1)
    }

    func testValuesRoundTrip() throws {
        let parsed = try ParsedExposition(small.prometheusText(workers: 2, draining: false))
        XCTAssertEqual(parsed.value("sse_keepalive_streams_open", ["route": "/events"]), 2)
        XCTAssertEqual(parsed.value("sse_keepalive_streams_open", ["route": "default"]), 0)
        XCTAssertEqual(parsed.value("sse_keepalive_heartbeats_total", ["route": "/events"]), 5)
        XCTAssertEqual(parsed.value("sse_keepalive_requests_total", ["route": "/events", "code": "200"]), 3)
        XCTAssertEqual(parsed.value("sse_keepalive_requests_total", ["route": "default", "code": "404"]), 1)
        XCTAssertEqual(parsed.value("sse_keepalive_upstream_errors_total", ["route": "/events", "kind": "connect"]), 1)
        XCTAssertEqual(parsed.value("sse_keepalive_client_disconnects_total", ["kind": "reset"]), 2)
        XCTAssertEqual(parsed.value("sse_keepalive_bytes_forwarded_total", ["direction": "upstream_to_client"]), 1234)
        XCTAssertEqual(parsed.value("sse_keepalive_bytes_forwarded_total", ["direction": "client_to_upstream"]), 56)
        XCTAssertEqual(parsed.value("sse_keepalive_connections_open"), 3)
        XCTAssertEqual(parsed.value("sse_keepalive_connections_accepted_total"), 7)
        XCTAssertEqual(parsed.value("sse_keepalive_workers"), 2)
        XCTAssertEqual(parsed.value("sse_keepalive_draining"), 0)
    }

    func testSharedStreamFamiliesShowEveryRouteThatShares() throws {
        var m = MetricsSnapshot()
        ExchangeMetric.sharedUpstreams(route: "/feed", delta: 1).apply(to: &m)
        ExchangeMetric.sharedClients(route: "/feed", delta: 3).apply(to: &m)
        ExchangeMetric.eventsReplayed(route: "/feed", count: 5).apply(to: &m)
        var other = MetricsSnapshot()
        ExchangeMetric.sharedClients(route: "/feed", delta: 2).apply(to: &other)
        ExchangeMetric.sharedClientDropped(route: "/feed").apply(to: &other)
        m.add(other)
        let parsed = try ParsedExposition(m.prometheusText(workers: 2, draining: false))
        XCTAssertEqual(parsed.value("sse_keepalive_shared_upstreams", ["route": "/feed"]), 1)
        XCTAssertEqual(parsed.value("sse_keepalive_shared_clients", ["route": "/feed"]), 5)
        XCTAssertEqual(parsed.value("sse_keepalive_replayed_events_total", ["route": "/feed"]), 5)
        XCTAssertEqual(parsed.value("sse_keepalive_shared_clients_dropped_total", ["route": "/feed"]), 1)
    }

    func testLabelEscapingRoundTrips() throws {
        let routes = ["/a\"quoted\"", "/back\\slash", "/new\nline", "/all\\\"\n\\n", "/ümlaut/🚀", "", "/plain"]
        var m = MetricsSnapshot()
        for (i, r) in routes.enumerated() {
            m.streamsOpen[r] = i
            m.heartbeats[r] = i + 10
            m.requests[RouteCode(route: r, code: 200 + i)] = i + 20
            m.upstreamErrors[RouteUpstreamError(route: r, kind: .timeout)] = i + 30
        }
        let text = m.prometheusText(workers: 1, draining: false)
        // One physical line per sample: no raw newline inside a label value.
        XCTAssertEqual(text.split(separator: "\n").count, 2 * Self.families.count + 4 * routes.count + 2 + 3 + 4)
        XCTAssertTrue(text.contains(#"{route="/all\\\"\n\\n"}"#))
        let parsed = try ParsedExposition(text)
        for (i, r) in routes.enumerated() {
            XCTAssertEqual(parsed.value("sse_keepalive_streams_open", ["route": r]), i, r.debugDescription)
            XCTAssertEqual(parsed.value("sse_keepalive_heartbeats_total", ["route": r]), i + 10, r.debugDescription)
            XCTAssertEqual(parsed.value("sse_keepalive_requests_total", ["route": r, "code": String(200 + i)]), i + 20)
            XCTAssertEqual(parsed.value("sse_keepalive_upstream_errors_total", ["route": r, "kind": "timeout"]), i + 30)
        }
    }

    func testSamplesSortedByLabelValues() throws {
        var m = MetricsSnapshot()
        let routes = ["/z", "/a/b", "default", "/a", "/m"]
        for r in routes {
            m.streamOpened(route: r)
            m.heartbeatWritten(route: r)
            for code in [504, 200, 101, 404] { m.requestFinished(route: r, code: code) }
            for kind in UpstreamErrorKind.allCases.reversed() { m.upstreamError(route: r, kind: kind) }
        }
        let parsed = try ParsedExposition(m.prometheusText(workers: 1, draining: false))
        let sortedRoutes = routes.sorted()
        XCTAssertEqual(parsed["sse_keepalive_streams_open"]?.samples.map { $0.labels[0].1 }, sortedRoutes)
        XCTAssertEqual(parsed["sse_keepalive_heartbeats_total"]?.samples.map { $0.labels[0].1 }, sortedRoutes)
        let reqs = parsed["sse_keepalive_requests_total"]!.samples.map { [$0.labels[0].1, $0.labels[1].1] }
        XCTAssertEqual(reqs, sortedRoutes.flatMap { r in ["101", "200", "404", "504"].map { [r, $0] } })
        XCTAssertEqual(parsed["sse_keepalive_requests_total"]!.samples.first!.labels.map(\.0), ["route", "code"])
        let errs = parsed["sse_keepalive_upstream_errors_total"]!.samples.map { [$0.labels[0].1, $0.labels[1].1] }
        XCTAssertEqual(errs, sortedRoutes.flatMap { r in ["connect", "malformed", "reset", "timeout"].map { [r, $0] } })
        XCTAssertEqual(parsed["sse_keepalive_upstream_errors_total"]!.samples.first!.labels.map(\.0), ["route", "kind"])
    }

    func testTextIndependentOfInsertionOrder() {
        var a = MetricsSnapshot(), b = MetricsSnapshot()
        let routes = (0..<50).map { "/r\($0)" }
        for r in routes { a.streamOpened(route: r); a.requestFinished(route: r, code: 200); a.upstreamError(route: r, kind: .reset) }
        for r in routes.reversed() { b.upstreamError(route: r, kind: .reset); b.requestFinished(route: r, code: 200); b.streamOpened(route: r) }
        XCTAssertEqual(a, b)
        XCTAssertEqual(a.prometheusText(workers: 3, draining: true), b.prometheusText(workers: 3, draining: true))
    }

    func testStreamGaugeBackToZeroIsStillExported() throws {
        var m = MetricsSnapshot()
        m.streamOpened(route: "/events")
        m.streamClosed(route: "/events")
        let parsed = try ParsedExposition(m.prometheusText(workers: 1, draining: false))
        XCTAssertEqual(parsed.value("sse_keepalive_streams_open", ["route": "/events"]), 0)
    }

    func testHelpEscaping() {
        XCTAssertEqual(TextEscape.prometheusHelp("a\\b\nc\"d"), "a\\\\b\\nc\"d")
        XCTAssertEqual(TextEscape.prometheusLabel("a\\b\nc\"d"), "a\\\\b\\nc\\\"d")
        XCTAssertEqual(TextEscape.prometheusLabel("/plain"), "/plain")
    }

    func testParserRejectsMalformedExposition() {
        let bad = [
            "x 1\n",                                                     // sample before HELP/TYPE
            "# HELP x h\n# TYPE x gauge\nx 1",                           // no final newline
            "# HELP x h\n# TYPE x gauge\nx{a=\"1} 1\n",                  // unterminated label
            "# HELP x h\n# TYPE x gauge\nx{a=\"\\q\"} 1\n",              // bad escape
            "# HELP x h\n# TYPE x gauge\ny 1\n",                         // sample outside its family
            "# HELP x h\n# TYPE x gauge\nx 1\n# HELP x h\n# TYPE x gauge\n", // family twice
            "# HELP x h\n# TYPE x gauge\nx 1.5\n",                       // not an integer
            "# TYPE x gauge\n# HELP x h\nx 1\n",                         // TYPE before HELP
        ]
        for text in bad {
            XCTAssertThrowsError(try ParsedExposition(text), text.debugDescription)
        }
    }
}


/// A strict reader for the Prometheus text format 0.0.4 subset the proxy
/// writes: `# HELP`, `# TYPE`, and `name{label="value",...} integer` lines.
/// It fails on anything else, so a malformed exposition cannot slip through.
struct ParsedExposition {
    struct Family: Equatable {
        var name: String
        var help: String
        var type: String
        var samples: [Sample] = []
    }

    struct Sample: Equatable {
        var name: String
        var labels: [(String, String)]
        var value: Int

        static func == (a: Sample, b: Sample) -> Bool {
            a.name == b.name && a.value == b.value && a.labels.elementsEqual(b.labels, by: { $0 == $1 })
        }
    }

    struct ParseError: Error, CustomStringConvertible {
        var line: Int
        var message: String
        var description: String { "line \(line): \(message)" }
    }

    /// Families in order of appearance.
    var families: [Family] = []

    subscript(_ name: String) -> Family? { families.first { $0.name == name } }

    /// The value of the one sample of `name` with exactly `labels`.
    func value(_ name: String, _ labels: [String: String] = [:]) -> Int? {
        let hits = families.flatMap(\.samples).filter { s in
            s.name == name && s.labels.count == labels.count && s.labels.allSatisfy { labels[$0.0] == $0.1 }
        }
        return hits.count == 1 ? hits[0].value : nil
    }

    init(_ text: String) throws {
        guard text.hasSuffix("\n") else { throw ParseError(line: 0, message: "text does not end with a newline") }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines.removeLast() // after the final newline
        var current: Family? = nil
        var pendingHelp: (name: String, help: String)? = nil
        var seen = Set<String>()

        func fail(_ n: Int, _ m: String) -> ParseError { ParseError(line: n + 1, message: m) }

        for (n, line) in lines.enumerated() {
            if line.hasPrefix("# HELP ") {
                guard pendingHelp == nil else { throw fail(n, "two HELP lines in a row") }
                let rest = line.dropFirst(7)
                guard let sp = rest.firstIndex(of: " ") else { throw fail(n, "HELP without text") }
                let name = String(rest[..<sp])
                guard Self.isMetricName(name) else { throw fail(n, "bad metric name \(name)") }
                guard !seen.contains(name) else { throw fail(n, "family \(name) appears twice") }
                if let c = current { families.append(c); current = nil }
                pendingHelp = (name, try Self.unescape(rest[rest.index(after: sp)...], quotes: false, line: n + 1))
            } else if line.hasPrefix("# TYPE ") {
                let parts = line.dropFirst(7).split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw fail(n, "bad TYPE line") }
                let name = String(parts[0]), type = String(parts[1])
                guard let help = pendingHelp, help.name == name else { throw fail(n, "TYPE for \(name) not right after its HELP") }
                guard ["counter", "gauge"].contains(type) else { throw fail(n, "unexpected type \(type)") }
                pendingHelp = nil
                seen.insert(name)
                current = Family(name: name, help: help.help, type: type)
            } else if line.hasPrefix("#") || line.isEmpty {
                throw fail(n, "unexpected line \(line.debugDescription)")
            } else {
                guard pendingHelp == nil else { throw fail(n, "sample between HELP and TYPE") }
                guard var family = current else { throw fail(n, "sample before any HELP/TYPE") }
                let sample = try Self.parseSample(line, line: n + 1)
                guard sample.name == family.name else {
                    throw fail(n, "sample \(sample.name) inside family \(family.name)")
                }
                let names = sample.labels.map(\.0)
                guard Set(names).count == names.count else { throw fail(n, "duplicate label name") }
                if family.samples.contains(where: { $0.labels.elementsEqual(sample.labels, by: { $0 == $1 }) }) {
                    throw fail(n, "duplicate sample")
                }
                family.samples.append(sample)
                current = family
            }
        }
        guard pendingHelp == nil else { throw ParseError(line: lines.count, message: "HELP without TYPE at end") }
        if let c = current { families.append(c) }
    }

    static func isMetricName(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first, first.properties.isAlphabetic || first == "_" || first == ":" else { return false }
        return s.unicodeScalars.allSatisfy { ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) || $0 == "_" || $0 == ":" }
    }

    static func isLabelName(_ s: Substring) -> Bool {
        guard let first = s.unicodeScalars.first, first.isASCII, first.properties.isAlphabetic || first == "_" else { return false }
        return s.unicodeScalars.allSatisfy { ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) || $0 == "_" }
    }

    /// `\\`, `\n` (and `\"` in label values) are the only escapes.
    static func unescape(_ s: Substring, quotes: Bool, line: Int) throws -> String {
        var out = ""
        var it = s.unicodeScalars.makeIterator()
        while let c = it.next() {
            if c == "\\" {
                switch it.next() {
                case "\\": out += "\\"
                case "n": out += "\n"
                case "\"" where quotes: out += "\""
                default: throw ParseError(line: line, message: "bad escape")
                }
            } else if c == "\"" && quotes {
                throw ParseError(line: line, message: "unescaped quote")
            } else {
                out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// `name{a="x",b="y"} 12` or `name 12`.
    static func parseSample(_ line: String, line n: Int) throws -> Sample {
        let scalars = Array(line.unicodeScalars)
        var i = 0
        while i < scalars.count, scalars[i] != "{", scalars[i] != " " { i += 1 }
        let name = String(String.UnicodeScalarView(scalars[0..<i]))
        guard isMetricName(name) else { throw ParseError(line: n, message: "bad sample name \(name)") }
        var labels: [(String, String)] = []
        if i < scalars.count, scalars[i] == "{" {
            i += 1
            while true {
                let nameStart = i
                while i < scalars.count, scalars[i] != "=" { i += 1 }
                let label = Substring(String(String.UnicodeScalarView(scalars[nameStart..<i])))
                guard isLabelName(label), i + 1 < scalars.count, scalars[i + 1] == "\"" else {
                    throw ParseError(line: n, message: "bad label \(label)")
                }
                i += 2
                let valueStart = i
                while i < scalars.count, scalars[i] != "\"" {
                    if scalars[i] == "\\" { i += 1 }
                    i += 1
                }
                guard i < scalars.count else { throw ParseError(line: n, message: "unterminated label value") }
                let raw = Substring(String(String.UnicodeScalarView(scalars[valueStart..<i])))
                labels.append((String(label), try unescape(raw, quotes: true, line: n)))
                i += 1
                guard i < scalars.count else { throw ParseError(line: n, message: "unterminated label set") }
                if scalars[i] == "," { i += 1; continue }
                if scalars[i] == "}" { i += 1; break }
                throw ParseError(line: n, message: "expected , or } after label value")
            }
        }
        guard i < scalars.count, scalars[i] == " " else { throw ParseError(line: n, message: "missing space before value") }
        let valueText = String(String.UnicodeScalarView(scalars[(i + 1)...]))
        guard let value = Int(valueText) else { throw ParseError(line: n, message: "value \(valueText) is not an integer") }
        return Sample(name: name, labels: labels, value: value)
    }
}
