import XCTest
@testable import SSEKeepalive

final class ConfigRenderTests: XCTestCase {
    /// rendered() parses back to the same Config (sourceFile aside).
    func assertRoundTrip(_ config: Config, file: StaticString = #filePath, line: UInt = #line) throws {
        let text = config.rendered()
        let back: Config
        do {
            back = try ConfigLoader.parse(yaml: text, file: "rendered.yaml")
        } catch {
            XCTFail("rendered config does not parse: \(error)\n\(text)", file: file, line: line)
            return
        }
        var expected = config
        expected.sourceFile = "rendered.yaml"
        XCTAssertEqual(back, expected, "\n\(text)", file: file, line: line)
        // Rendering is stable.
        var again = back
        again.sourceFile = config.sourceFile
        XCTAssertEqual(again.rendered(), text, file: file, line: line)
    }

    func testDefaultsRoundTrip() throws {
        try assertRoundTrip(Config())
        let text = Config().rendered()
        XCTAssertTrue(text.hasPrefix("# sse-keepalive effective configuration (built-in defaults)\n"), text)
        XCTAssertTrue(text.contains("listen: \"127.0.0.1:8080\"\n"))
        XCTAssertTrue(text.contains("upstream: \"127.0.0.1:3000\"\n"))
        XCTAssertTrue(text.contains("heartbeat:\n  interval: 15s\n  comment: \"heartbeat\"\n  blank_line: true\n"))
        XCTAssertTrue(text.contains("  max_header_bytes: 16KiB\n  stream_buffer: 256KiB\n"))
        XCTAssertTrue(text.contains("admin:\n  listen: \"127.0.0.1:9090\"\n"))
        XCTAssertTrue(text.contains("routes: []\n"))
    }

    func testSpecExampleRoundTrip() throws {
        let c = try ConfigLoader.parse(yaml: specExampleYAML, file: "/etc/sse.yaml")
        try assertRoundTrip(c)
        let text = c.rendered()
        XCTAssertTrue(text.hasPrefix("# sse-keepalive effective configuration (from /etc/sse.yaml)\n"), text)
        XCTAssertTrue(text.contains("""
          - path: "/events"
            upstream: "127.0.0.1:4000"
            heartbeat:
              interval: 30s
              comment: "heartbeat"
              blank_line: true
              on_open: true
              padding: 0
            retry: off
            max_stream_duration: off
            headers:
              allow_underscores: false
            token:
              query: "access_token"
              header: "Authorization"
              scheme: "Bearer"

        """), text)
        XCTAssertTrue(text.contains("""
          - path: "/reports"
            # upstream: "127.0.0.1:3000" (inherited)
            heartbeat:
              interval: off
              comment: "heartbeat"
              blank_line: true
              on_open: true
              padding: 0
            retry: off
            max_stream_duration: off

        """), text)
    }

    func testUnusualValuesRoundTrip() throws {
        var c = Config()
        c.listen = [.inet(host: "::", port: 80), .inet(host: "0.0.0.0", port: 8080)]
        c.upstream = .unix(path: "/run/app dir/\"x\".sock")
        c.workers = .count(8)
        c.heartbeat = HeartbeatSettings(interval: nil, comment: "", blankLine: false)
        c.logLevel = .critical
        c.logFormat = .json
        c.accessLog = false
        c.connectTimeout = TimeSpan(milliseconds: 1500)
        c.responseTimeout = .seconds(3600 * 25)
        c.clientHeaderTimeout = .seconds(90)
        c.keepaliveTimeout = TimeSpan(milliseconds: 1)
        c.maxConnections = 1
        c.maxHeaderBytes = 1025
        c.streamBuffer = 3 << 30
        c.shutdownGrace = .seconds(120)
        c.adminListen = nil
        c.routes = [
            RouteConfig(path: "/", heartbeat: HeartbeatSettings(interval: .seconds(1), comment: "yes", blankLine: true),
                        token: TokenSettings(query: "t", header: "X-Token", scheme: "")),
            RouteConfig(path: "/%C3%BC/%23x", upstream: .inet(host: "::1", port: 1),
                        heartbeat: HeartbeatSettings(interval: nil, comment: "it's \"quoted\" \\ ♥\tand tabbed", blankLine: false)),
            RouteConfig(path: "/off", heartbeat: HeartbeatSettings(interval: .seconds(60), comment: "off", blankLine: true)),
            RouteConfig(path: "/null", heartbeat: HeartbeatSettings(interval: .seconds(60), comment: "null", blankLine: true)),
        ]
        try assertRoundTrip(c)
        let text = c.rendered()
        XCTAssertTrue(text.contains("admin: off\n"), text)
        XCTAssertTrue(text.contains("  stream_buffer: 3GiB\n"), text)
        XCTAssertTrue(text.contains("  max_header_bytes: 1025\n"), text)
        XCTAssertTrue(text.contains("  connect: 1500ms\n"), text)
        XCTAssertTrue(text.contains("  response: 25h\n"), text)
        XCTAssertTrue(text.contains("  client_header: 90s\n"), text)
        XCTAssertTrue(text.contains("listen:\n  - \"[::]:80\"\n  - \"0.0.0.0:8080\"\n"), text)
    }

    func testSizeRendering() {
        XCTAssertEqual(Config.renderSize(512), "512")
        XCTAssertEqual(Config.renderSize(1024), "1KiB")
        XCTAssertEqual(Config.renderSize(1536), "1536")
        XCTAssertEqual(Config.renderSize(64 << 10), "64KiB")
        XCTAssertEqual(Config.renderSize(1 << 20), "1MiB")
        XCTAssertEqual(Config.renderSize(1 << 30), "1GiB")
        XCTAssertEqual(Config.renderSize(3 << 19), "1536KiB")
    }

    func testQuoting() {
        XCTAssertEqual(Config.quote("plain"), "\"plain\"")
        XCTAssertEqual(Config.quote("a\"b\\c"), "\"a\\\"b\\\\c\"")
        XCTAssertEqual(Config.quote("\u{1}"), "\"\\u0001\"")
        XCTAssertEqual(Config.quote("ä"), "\"ä\"")
    }
}
