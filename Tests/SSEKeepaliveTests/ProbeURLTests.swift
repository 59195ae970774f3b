import XCTest
@testable import SSEKeepalive

final class ProbeURLTests: XCTestCase {
    func testURLTable() throws {
        let good: [(String, String, UInt16, String, String)] = [
            // text, host, port, target, Host header
            ("http://127.0.0.1:8080/events", "127.0.0.1", 8080, "/events", "127.0.0.1:8080"),
            ("http://example.com/events", "example.com", 80, "/events", "example.com"),
            ("http://example.com", "example.com", 80, "/", "example.com"),
            ("http://example.com:80/", "example.com", 80, "/", "example.com"),
            ("HTTP://Example.com/a", "Example.com", 80, "/a", "Example.com"),
            ("http://example.com?token=abc", "example.com", 80, "/?token=abc", "example.com"),
            ("http://example.com/s?a=1&b=2#frag", "example.com", 80, "/s?a=1&b=2", "example.com"),
            ("http://example.com#frag", "example.com", 80, "/", "example.com"),
            ("http://[::1]:9000/stream", "::1", 9000, "/stream", "[::1]:9000"),
            ("http://[::1]/stream", "::1", 80, "/stream", "[::1]"),
            ("http://localhost:3000/api/notifications/stream", "localhost", 3000, "/api/notifications/stream", "localhost:3000"),
            ("http://my_host.internal:1/x", "my_host.internal", 1, "/x", "my_host.internal:1"),
            ("http://h:65535/a b", "h", 65535, "/a%20b", "h:65535"),
            ("http://h/caf\u{e9}", "h", 80, "/caf%C3%A9", "h"),
        ]
        for (text, host, port, target, hostHeader) in good {
            let url = try ProbeURL.parse(text)
            XCTAssertEqual(url.host, host, text)
            XCTAssertEqual(url.port, port, text)
            XCTAssertEqual(url.target, target, text)
            XCTAssertEqual(url.hostHeader, hostHeader, text)
        }

        let bad: [(String, String)] = [
            ("example.com/events", "has no scheme"),
            ("ws://example.com/events", "unsupported scheme \"ws\": probe speaks http:// and https://"),
            ("http:///events", "no host"),
            ("http://:8080/events", "no host"),
            ("http://h:/x", "invalid port \"\""),
            ("http://h:0/x", "invalid port \"0\""),
            ("http://h:65536/x", "invalid port"),
            ("http://h:8o/x", "invalid port"),
            ("http://user:pw@h/x", "credentials"),
            ("http://[::1/x", "closing \"]\""),
            ("http://[zz]/x", "not an IPv6 address"),
            ("http://[::1]x/x", "unexpected"),
            ("http://ex ample.com/x", "invalid character SP in host"),
        ]
        for (text, expected) in bad {
            XCTAssertThrowsError(try ProbeURL.parse(text), text) { error in
                let message = (error as? ProbeUsageError)?.message ?? ""
                XCTAssertTrue(message.contains(expected), "\(text): \(message)")
            }
        }
    }

    func testHTTPSURLs() throws {
        let table: [(String, String, UInt16, String, String, Bool)] = [
            ("https://example.com/events", "example.com", 443, "https://example.com/events", "example.com", false),
            ("HTTPS://example.com:8443/e?x=1", "example.com", 8443, "https://example.com:8443/e?x=1", "example.com:8443", false),
            ("https://127.0.0.1/e", "127.0.0.1", 443, "https://127.0.0.1/e", "127.0.0.1", true),
            ("https://[::1]:443/e", "::1", 443, "https://[::1]/e", "[::1]", true),
            ("http://example.com:443/e", "example.com", 443, "http://example.com:443/e", "example.com:443", false),
        ]
        for (text, host, port, description, hostHeader, isAddress) in table {
            let url = try ProbeURL.parse(text)
            XCTAssertEqual(url.host, host, text)
            XCTAssertEqual(url.port, port, text)
            XCTAssertEqual(url.description, description, text)
            XCTAssertEqual(url.hostHeader, hostHeader, text)
            XCTAssertEqual(url.hostIsAddress, isAddress, text)
            XCTAssertEqual(url.isTLS, text.lowercased().hasPrefix("https"), text)
        }
    }

    func testConnectTo() throws {
        let rule = try ProbeConnectTo.parse("example.com:443:127.0.0.1:8443")
        XCTAssertEqual(rule, ProbeConnectTo(host: "example.com", port: 443, toHost: "127.0.0.1", toPort: 8443))
        XCTAssertEqual(try ProbeConnectTo.parse("::[::1]:"), ProbeConnectTo(host: nil, port: nil, toHost: "::1", toPort: nil))
        let url = try ProbeURL.parse("https://Example.com/e")
        let other = try ProbeURL.parse("https://other.org/e")
        let table: [([ProbeConnectTo], ProbeURL, String, UInt16)] = [
            ([rule], url, "127.0.0.1", 8443),
            ([rule], other, "other.org", 443),
            ([try ProbeConnectTo.parse("example.com:80:127.0.0.1:1")], url, "Example.com", 443),
            ([try ProbeConnectTo.parse("::10.0.0.1:")], other, "10.0.0.1", 443),
            ([try ProbeConnectTo.parse("other.org::h:1"), rule], url, "127.0.0.1", 8443),
            ([], url, "Example.com", 443),
        ]
        for (rules, url, host, port) in table {
            let target = ProbeConnectTo.target(for: url, rules: rules)
            XCTAssertEqual(target.host, host, "\(url) \(rules)")
            XCTAssertEqual(target.port, port, "\(url) \(rules)")
        }
        for bad in ["example.com:443:127.0.0.1", "a:b:c:d", "h:443:bad host:1", "h:99999:h:1", "", "h:1:[zz]:1"] {
            XCTAssertThrowsError(try ProbeConnectTo.parse(bad), bad) { error in
                XCTAssertTrue("\(error)".contains("HOST:PORT:ADDR:PORT"), "\(error)")
            }
        }
    }

    func testHeaderArguments() throws {
        XCTAssertEqual(try ProbeRequest.parseHeader("Authorization: Bearer x"), .init(name: "Authorization", value: "Bearer x"))
        XCTAssertEqual(try ProbeRequest.parseHeader("X-A:b"), .init(name: "X-A", value: "b"))
        XCTAssertEqual(try ProbeRequest.parseHeader("X-Empty:"), .init(name: "X-Empty", value: ""))
        XCTAssertEqual(try ProbeRequest.parseHeader("X-T: a:b  "), .init(name: "X-T", value: "a:b"))
        for bad in ["NoColon", ": v", "Bad Name: v", "X: a\r\nInjected: 1", "X: \u{0}"] {
            XCTAssertThrowsError(try ProbeRequest.parseHeader(bad), bad)
        }
    }

    func testRequestLooksLikeEventSource() throws {
        let url = try ProbeURL.parse("http://127.0.0.1:8080/events?token=t")
        let head = ProbeRequest.head(url: url, lastEventID: "42")
        XCTAssertEqual(head.method, "GET")
        XCTAssertEqual(head.target, "/events?token=t")
        XCTAssertEqual(head.version, .http11)
        XCTAssertEqual(head.headers["Host"], "127.0.0.1:8080")
        XCTAssertEqual(head.headers["Accept"], "text/event-stream")
        XCTAssertEqual(head.headers["Cache-Control"], "no-cache")
        XCTAssertEqual(head.headers["Last-Event-ID"], "42")
        XCTAssertEqual(head.headers["Accept-Encoding"], "gzip, deflate, br")
        XCTAssertTrue(head.headers["User-Agent"]!.hasPrefix("sse-keepalive-probe/"))

        // The bytes parse as a valid request with the project's own parser.
        let bytes = ProbeRequest.bytes(url: url, headers: [.init(name: "Authorization", value: "Bearer x")])
        guard case .complete(let parsed, let length) = HeadParser.parseRequest(bytes, maxHeaderBytes: 16384) else {
            return XCTFail("request does not parse")
        }
        XCTAssertEqual(length, bytes.count)
        XCTAssertEqual(parsed.headers["Authorization"], "Bearer x")
        XCTAssertNil(parsed.headers["Last-Event-ID"])
        XCTAssertTrue(HeaderPolicy.acceptsEventStream(parsed.headers))
    }

    func testUserHeadersReplaceDefaults() throws {
        let url = try ProbeURL.parse("http://h/e")
        let head = ProbeRequest.head(url: url, headers: [
            .init(name: "accept-encoding", value: "identity"),
            .init(name: "X-Twice", value: "1"), .init(name: "X-Twice", value: "2"),
            .init(name: "Host", value: "public.example"),
        ])
        XCTAssertEqual(head.headers.values("Accept-Encoding"), ["identity"])
        XCTAssertEqual(head.headers.values("Host"), ["public.example"])
        XCTAssertEqual(head.headers.values("X-Twice"), ["1", "2"])
        XCTAssertEqual(head.headers.values("Accept"), ["text/event-stream"])
    }

    func testOptions() throws {
        let o = try ProbeOptions.parse(url: "http://h:1/e", headers: ["A: b"], duration: "15s", lastEventID: "7")
        XCTAssertEqual(o.duration, 15_000_000_000)
        XCTAssertEqual(o.headers, [.init(name: "A", value: "b")])
        XCTAssertEqual(o.lastEventID, "7")
        XCTAssertEqual(try ProbeOptions.parse(url: "http://h/e").duration, 300_000_000_000)
        for (d, ns) in [("500ms", 500_000_000), ("2m", 120_000_000_000), ("1h", 3_600_000_000_000)] as [(String, Int64)] {
            XCTAssertEqual(try ProbeOptions.parse(url: "http://h/e", duration: d).duration, ns, d)
        }
        for d in ["0s", "5", "1.5s", "-1s", "5 s", "", "1d"] {
            XCTAssertThrowsError(try ProbeOptions.parse(url: "http://h/e", duration: d), d) { error in
                XCTAssertTrue("\(error)".contains("--duration"), "\(error)")
            }
        }
        XCTAssertThrowsError(try ProbeOptions.parse(url: "http://h/e", lastEventID: "a\nb"))
        let tls = try ProbeOptions.parse(url: "https://h/e", cacert: "/ca.pem", connectTo: ["h:443:127.0.0.1:1"])
        XCTAssertEqual(tls.cacert, "/ca.pem")
        XCTAssertFalse(tls.insecure)
        XCTAssertEqual(tls.connectTo.count, 1)
        XCTAssertTrue(try ProbeOptions.parse(url: "https://h/e", insecure: true).insecure)
        let misuse: [(() throws -> ProbeOptions, String)] = [
            ({ try ProbeOptions.parse(url: "http://h/e", cacert: "/ca.pem") }, "--cacert applies to https:// URLs only"),
            ({ try ProbeOptions.parse(url: "http://h/e", insecure: true) }, "--insecure applies to https:// URLs only"),
            ({ try ProbeOptions.parse(url: "https://h/e", cacert: "/c", insecure: true) }, "contradict"),
            ({ try ProbeOptions.parse(url: "https://h/e", connectTo: ["nope"]) }, "--connect-to"),
        ]
        for (parse, expected) in misuse {
            XCTAssertThrowsError(try parse()) { error in XCTAssertTrue("\(error)".contains(expected), "\(error)") }
        }
    }
}
