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
            ("https://example.com/events", ProbeURL.httpsMessage),
            ("HTTPS://example.com/events", ProbeURL.httpsMessage),
            ("example.com/events", "has no scheme"),
            ("ws://example.com/events", "unsupported scheme \"ws\""),
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
        // The https message is the one the contract names, word for word.
        XCTAssertEqual(ProbeURL.httpsMessage,
                       "https is not supported by probe; point it at the plain-HTTP side or use a local port-forward")
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
        XCTAssertThrowsError(try ProbeOptions.parse(url: "https://h/e")) { error in
            XCTAssertEqual("\(error)", ProbeURL.httpsMessage)
        }
    }
}
