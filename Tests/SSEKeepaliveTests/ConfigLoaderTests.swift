import XCTest
import Foundation
import Yams
@testable import SSEKeepalive

/// A complete config: every top-level key at its default, and three routes (as in docs/configuration.md).
let specExampleYAML = """
listen: "127.0.0.1:8080"          # host:port, [v6]:port, or a list of them
upstream: "127.0.0.1:3000"        # host:port or unix:/path/to.sock
workers: auto                     # event-loop threads; auto = number of cores
heartbeat:
  interval: 15s                   # default for all routes; "off" disables
  comment: heartbeat              # text after the colon
  blank_line: true                # boundary form ":heartbeat\\n\\n"; false -> ":heartbeat\\n"
log:
  level: info                     # trace|debug|info|notice|warning|error|critical
  format: text                    # text|json
  access: true                    # one line per request, tokens redacted
timeouts:
  connect: 5s                     # to the upstream
  response: 60s                   # upstream response head
  client_header: 10s              # slowloris guard
  keepalive: 75s                  # idle keep-alive client connection
limits:
  max_connections: 100000
  max_header_bytes: 16KiB
  stream_buffer: 256KiB           # per-stream bytes held for a slow client
shutdown:
  grace: 10s
admin:
  listen: "127.0.0.1:9090"        # GET /metrics (Prometheus text), GET /healthz
routes:                           # first match wins; unmatched paths use the defaults
  - path: /api/notifications/stream   # path prefix, segment-aware
    heartbeat: 10s
    token: {}                     # defaults: query token, header Authorization, scheme Bearer
  - path: /events
    upstream: "127.0.0.1:4000"
    heartbeat: 30s
    token: { query: access_token, header: Authorization, scheme: Bearer }
  - path: /reports
    heartbeat: off

"""

final class ConfigLoaderTests: XCTestCase {
    func parse(_ yaml: String, file: String = "test.yaml") throws -> Config {
        try ConfigLoader.parse(yaml: yaml, file: file)
    }

    /// Parses `yaml` expecting a failure; returns the error.
    func failure(_ yaml: String, file: StaticString = #filePath, line: UInt = #line) -> ConfigError? {
        do {
            let c = try ConfigLoader.parse(yaml: yaml, file: "bad.yaml")
            XCTFail("expected an error, got \(c)", file: file, line: line)
            return nil
        } catch {
            return error
        }
    }

    func assertError(_ yaml: String, key: String, line: Int?, contains fragment: String,
                     file: StaticString = #filePath, sourceLine: UInt = #line) {
        guard let e = failure(yaml, file: file, line: sourceLine) else { return }
        XCTAssertEqual(e.key, key, "\(e)", file: file, line: sourceLine)
        XCTAssertEqual(e.line, line, "\(e)", file: file, line: sourceLine)
        XCTAssertTrue(e.message.contains(fragment), "message \"\(e.message)\" lacks \"\(fragment)\"", file: file, line: sourceLine)
        XCTAssertEqual(e.file, "bad.yaml", file: file, line: sourceLine)
    }

    // MARK: The documented example

    func testSpecExample() throws {
        let c = try parse(specExampleYAML, file: "/etc/sse.yaml")
        XCTAssertEqual(c.sourceFile, "/etc/sse.yaml")
        XCTAssertEqual(c.listen, [.inet(host: "127.0.0.1", port: 8080)])
        XCTAssertEqual(c.upstream, .inet(host: "127.0.0.1", port: 3000))
        XCTAssertEqual(c.workers, .auto)
        XCTAssertEqual(c.heartbeat, HeartbeatSettings(interval: .seconds(15), comment: "heartbeat", blankLine: true))
        XCTAssertEqual(c.logLevel, .info)
        XCTAssertEqual(c.logFormat, .text)
        XCTAssertTrue(c.accessLog)
        XCTAssertEqual(c.connectTimeout, .seconds(5))
        XCTAssertEqual(c.responseTimeout, .seconds(60))
        XCTAssertEqual(c.clientHeaderTimeout, .seconds(10))
        XCTAssertEqual(c.keepaliveTimeout, .seconds(75))
        XCTAssertEqual(c.maxConnections, 100_000)
        XCTAssertEqual(c.maxHeaderBytes, 16 * 1024)
        XCTAssertEqual(c.streamBuffer, 256 * 1024)
        XCTAssertEqual(c.shutdownGrace, .seconds(10))
        XCTAssertEqual(c.adminListen, .inet(host: "127.0.0.1", port: 9090))
        XCTAssertEqual(c.routes.count, 3)

        let r0 = c.routes[0]
        XCTAssertEqual(r0.path, "/api/notifications/stream")
        XCTAssertNil(r0.upstream)
        XCTAssertEqual(r0.heartbeat, HeartbeatSettings(interval: .seconds(10), comment: "heartbeat", blankLine: true))
        XCTAssertEqual(r0.token, TokenSettings(query: "token", header: "Authorization", scheme: "Bearer"))
        XCTAssertFalse(r0.isFallback)

        let r1 = c.routes[1]
        XCTAssertEqual(r1.path, "/events")
        XCTAssertEqual(r1.upstream, .inet(host: "127.0.0.1", port: 4000))
        XCTAssertEqual(r1.heartbeat, HeartbeatSettings(interval: .seconds(30), comment: "heartbeat", blankLine: true))
        XCTAssertEqual(r1.token, TokenSettings(query: "access_token", header: "Authorization", scheme: "Bearer"))

        let r2 = c.routes[2]
        XCTAssertEqual(r2.path, "/reports")
        XCTAssertNil(r2.upstream)
        XCTAssertEqual(r2.heartbeat, HeartbeatSettings(interval: nil, comment: "heartbeat", blankLine: true))
        XCTAssertNil(r2.token)

        // Everything in the example is also the default, except the routes.
        var expected = Config()
        expected.sourceFile = "/etc/sse.yaml"
        expected.routes = c.routes
        XCTAssertEqual(c, expected)
    }

    func testEveryKeyNonDefault() throws {
        let c = try parse("""
        listen: ["0.0.0.0:80", "[::]:80", "localhost:8081"]
        upstream: unix:/run/app.sock
        workers: 4
        heartbeat: {interval: 500ms, comment: " ping", blank_line: false}
        log: {level: debug, format: json, access: false}
        timeouts: {connect: 1s, response: 2m, client_header: 3s, keepalive: 1h}
        limits: {max_connections: 10, max_header_bytes: 1KiB, stream_buffer: 1MiB}
        shutdown: {grace: 250ms}
        admin: {listen: "[::1]:9999"}
        routes: []
        """)
        XCTAssertEqual(c.listen, [.inet(host: "0.0.0.0", port: 80), .inet(host: "::", port: 80), .inet(host: "localhost", port: 8081)])
        XCTAssertEqual(c.upstream, .unix(path: "/run/app.sock"))
        XCTAssertEqual(c.workers, .count(4))
        XCTAssertEqual(c.heartbeat, HeartbeatSettings(interval: TimeSpan(milliseconds: 500), comment: " ping", blankLine: false))
        XCTAssertEqual(c.logLevel, .debug)
        XCTAssertEqual(c.logFormat, .json)
        XCTAssertFalse(c.accessLog)
        XCTAssertEqual(c.connectTimeout, .seconds(1))
        XCTAssertEqual(c.responseTimeout, .seconds(120))
        XCTAssertEqual(c.clientHeaderTimeout, .seconds(3))
        XCTAssertEqual(c.keepaliveTimeout, .seconds(3600))
        XCTAssertEqual(c.maxConnections, 10)
        XCTAssertEqual(c.maxHeaderBytes, 1024)
        XCTAssertEqual(c.streamBuffer, 1 << 20)
        XCTAssertEqual(c.shutdownGrace, TimeSpan(milliseconds: 250))
        XCTAssertEqual(c.adminListen, .inet(host: "::1", port: 9999))
        XCTAssertEqual(c.routes, [])
    }

    func testEmptyDocumentsGiveDefaults() throws {
        for text in ["", "\n", "# only a comment\n", "---\n", "~\n"] {
            var expected = Config()
            expected.sourceFile = "x.yaml"
            XCTAssertEqual(try parse(text, file: "x.yaml"), expected, "for \(text.debugDescription)")
        }
    }

    func testAdminOff() throws {
        XCTAssertNil(try parse("admin: off").adminListen)
        XCTAssertNil(try parse("admin: \"off\"").adminListen)
        XCTAssertNil(try parse("admin: null").adminListen)
        XCTAssertNil(try parse("admin:\n").adminListen)
        XCTAssertNil(try parse("admin: {listen: off}").adminListen)
        XCTAssertEqual(try parse("admin: {}").adminListen, .inet(host: "127.0.0.1", port: 9090))
    }

    func testListenListAndSingle() throws {
        XCTAssertEqual(try parse("listen: \"[::1]:8080\"").listen, [.inet(host: "::1", port: 8080)])
        XCTAssertEqual(try parse("listen:\n  - 127.0.0.1:1\n  - 127.0.0.1:2\n").listen,
                       [.inet(host: "127.0.0.1", port: 1), .inet(host: "127.0.0.1", port: 2)])
    }

    // MARK: Files

    func testMissingDefaultFileGivesDefaultsButExplicitMissingPathFails() throws {
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.appendingPathComponent("sse-config-\(UUID().uuidString)")
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: dir) }
        let old = fm.currentDirectoryPath
        XCTAssertTrue(fm.changeCurrentDirectoryPath(dir.path))
        defer { _ = fm.changeCurrentDirectoryPath(old) }

        XCTAssertEqual(try ConfigLoader.load(path: nil), Config())
        XCTAssertNil(try ConfigLoader.load(path: nil).sourceFile)

        do {
            _ = try ConfigLoader.load(path: "missing.yaml")
            XCTFail("expected an error")
        } catch {
            XCTAssertEqual(error.file, "missing.yaml")
            XCTAssertNil(error.line)
            XCTAssertTrue(error.message.contains("No such file"), error.message)
            XCTAssertEqual(error.description, "missing.yaml: cannot read config file: No such file or directory")
        }

        // The default file is used when present.
        try "workers: 3\n".write(toFile: ConfigLoader.defaultPath, atomically: true, encoding: .utf8)
        let c = try ConfigLoader.load(path: nil)
        XCTAssertEqual(c.workers, .count(3))
        XCTAssertEqual(c.sourceFile, ConfigLoader.defaultPath)

        // An explicit path is read, and errors name it.
        let p = dir.appendingPathComponent("other.yaml").path
        try "workers: 2\nlisten: nope\n".write(toFile: p, atomically: true, encoding: .utf8)
        do {
            _ = try ConfigLoader.load(path: p)
            XCTFail("expected an error")
        } catch {
            XCTAssertEqual(error.file, p)
            XCTAssertEqual(error.line, 2)
            XCTAssertTrue(error.description.hasPrefix("\(p):2:9: listen: invalid address \"nope\""), error.description)
        }
    }

    func testDirectoryIsUnreadable() {
        do {
            _ = try ConfigLoader.load(path: NSTemporaryDirectory())
            XCTFail("expected an error")
        } catch {
            XCTAssertTrue(error.message.contains("cannot read config file"), error.message)
        }
    }

    // MARK: Error messages

    func testErrorDescriptionFormat() {
        let e = ConfigError(file: "/etc/sse.yaml", line: 12, column: 5, key: "routes[1].heartbeat",
                            message: "invalid duration \"10x\" (use 500ms, 15s, 2m, 1h or off)")
        XCTAssertEqual(e.description, "/etc/sse.yaml:12:5: routes[1].heartbeat: invalid duration \"10x\" (use 500ms, 15s, 2m, 1h or off)")
        XCTAssertEqual(ConfigError(file: "f", key: "k", message: "m").description, "f: k: m")
        XCTAssertEqual(ConfigError(file: "f", line: 3, key: "k", message: "m").description, "f:3: k: m")
        XCTAssertEqual(ConfigError(file: "f", line: 3, column: 1, key: "", message: "m").description, "f:3:1: m")
    }

    func testRouteHeartbeatErrorLooksLikeTheSpec() {
        let yaml = "routes:\n  - path: /a\n  - path: /b\n    heartbeat: 10x\n"
        guard let e = failure(yaml) else { return }
        XCTAssertEqual(e.description, "bad.yaml:4:16: routes[1].heartbeat: invalid duration \"10x\" (use 500ms, 15s, 2m, 1h or off)")
    }

    func testUnknownKeyHints() {
        guard let e = failure("heartbeat:\n  intervall: 10s\n") else { return }
        XCTAssertEqual(e.description, "bad.yaml:2:3: heartbeat.intervall: unknown key (did you mean \"interval\"?)")
        assertError("listn: 1.2.3.4:5\n", key: "listn", line: 1, contains: "did you mean \"listen\"?")
        assertError("workers: 2\nupstreams: x\n", key: "upstreams", line: 2, contains: "did you mean \"upstream\"?")
        assertError("frobnicate: 1\n", key: "frobnicate", line: 1, contains: "unknown key (allowed: listen, upstream,")
        assertError("routes:\n  - path: /a\n    tokn: {}\n", key: "routes[0].tokn", line: 3, contains: "did you mean \"token\"?")
        assertError("routes:\n  - path: /a\n    token: {querry: t}\n", key: "routes[0].token.querry", line: 3, contains: "did you mean \"query\"?")
        assertError("timeouts:\n  conect: 1s\n", key: "timeouts.conect", line: 2, contains: "did you mean \"connect\"?")
        assertError("limits:\n  max_conections: 5\n", key: "limits.max_conections", line: 2, contains: "did you mean \"max_connections\"?")
    }

    func testErrorTable() {
        // (yaml, key, line, message fragment)
        let table: [(String, String, Int?, String)] = [
            // unknown nested key without a close match
            ("log:\n  colour: red\n", "log.colour", 2, "unknown key (allowed: level, format, access)"),
            // bad duration
            ("timeouts:\n  connect: 5 s\n", "timeouts.connect", 2, "invalid duration \"5 s\" (use 500ms, 15s, 2m or 1h)"),
            ("timeouts:\n  connect: off\n", "timeouts.connect", 2, "invalid duration \"off\""),
            ("shutdown:\n  grace: 0s\n", "shutdown.grace", 2, "invalid duration \"0s\""),
            ("heartbeat: 10x\n", "heartbeat", 1, "invalid duration \"10x\" (use 500ms, 15s, 2m, 1h or off)"),
            ("heartbeat:\n  interval: 1.5s\n", "heartbeat.interval", 2, "invalid duration \"1.5s\""),
            // bad size
            ("limits:\n  stream_buffer: 1KB\n", "limits.stream_buffer", 2, "invalid size \"1KB\" (use 512, 64KiB, 1MiB or 1GiB)"),
            ("limits:\n  max_header_bytes: 512\n", "limits.max_header_bytes", 2, "too small (at least 1KiB)"),
            ("limits:\n  max_connections: 0\n", "limits.max_connections", 2, "out of range"),
            ("limits:\n  max_connections: lots\n", "limits.max_connections", 2, "invalid integer \"lots\""),
            // bad addresses
            ("listen: localhost\n", "listen", 1, "invalid address \"localhost\" (missing port"),
            ("listen: \"127.0.0.1:0\"\n", "listen", 1, "port 0 is out of range 1-65535"),
            ("listen: \"127.0.0.1:70000\"\n", "listen", 1, "port 70000 is out of range 1-65535"),
            ("listen:\n  - 127.0.0.1:1\n  - \"::1:2\"\n", "listen[1]", 3, "IPv6 addresses go in brackets"),
            ("listen: []\n", "listen", 1, "empty"),
            ("listen: [\"a:1\", \"a:1\"]\n", "listen[1]", 1, "duplicate listen address"),
            ("listen: unix:/tmp/s.sock\n", "listen", 1, "unix sockets are not allowed here"),
            ("upstream: unix:relative.sock\n", "upstream", 1, "must be absolute"),
            ("upstream: \"[zz]:80\"\n", "upstream", 1, "is not an IPv6 address"),
            ("upstream: \"bad_host:80\"\n", "upstream", 1, "is not a host name"),
            ("admin:\n  listen: \":9090\"\n", "admin.listen", 2, "missing host"),
            // routes
            ("routes:\n  - heartbeat: 5s\n", "routes[0].path", 2, "missing required key"),
            ("routes:\n  - path: /a\n  - upstream: 1.2.3.4:5\n", "routes[1].path", 3, "missing required key"),
            ("routes:\n  - path: events\n", "routes[0].path", 2, "must start with \"/\""),
            ("routes:\n  - path: \"/a b\"\n", "routes[0].path", 2, "no spaces"),
            ("routes:\n  - path: /ü\n", "routes[0].path", 2, "percent-encode non-ASCII"),
            ("routes:\n  - path: /%74ok\n", "routes[0].path", 2, "route path \"/%74ok\" is not in normal form: requests are routed on \"/tok\""),
            ("routes:\n  - path: //a/./b\n", "routes[0].path", 2, "requests are routed on \"/a/b\""),
            ("routes:\n  - path: /a/%2Fb\n", "routes[0].path", 2, "in the path; no request could match it"),
            ("routes:\n  - path: /../a\n", "routes[0].path", 2, "no request could match it"),
            ("headers:\n  allow_underscores: maybe\n", "headers.allow_underscores", 2, "invalid boolean \"maybe\""),
            ("headers:\n  allow_underscore: true\n", "headers.allow_underscore", 2, "did you mean"),
            ("routes:\n  - path: /a\n    headers: {allow_underscores: 1x}\n", "routes[0].headers.allow_underscores", 3, "invalid boolean"),
            ("routes:\n  - path: /a\n  - path: /b\n  - path: /a\n", "routes[2].path", 4, "duplicate route path \"/a\" (already used by routes[0])"),
            ("routes:\n  - path: /a\n    token: {query: \"my token\"}\n", "routes[0].token.query", 3, "invalid query parameter name \"my token\""),
            ("routes:\n  - path: /a\n    token: {query: \"\"}\n", "routes[0].token.query", 3, "invalid query parameter name \"\""),
            ("routes:\n  - path: /a\n    token: {query: \"a&b\"}\n", "routes[0].token.query", 3, "invalid query parameter name"),
            ("routes:\n  - path: /a\n    token: {header: \"X Auth\"}\n", "routes[0].token.header", 3, "invalid header name"),
            ("routes:\n  - path: /a\n    token: {header: Content-Length}\n", "routes[0].token.header", 3, "cannot carry a token"),
            ("routes:\n  - path: /a\n    token: {scheme: \"Bea rer\"}\n", "routes[0].token.scheme", 3, "invalid scheme"),
            ("routes:\n  - path: /a\n    token:\n", "routes[0].token", 3, "expected a mapping ({} for the defaults)"),
            ("routes:\n  - path: /a\n    heartbeat: [1s]\n", "routes[0].heartbeat", 3, "expected a duration, off, or a mapping"),
            ("routes:\n  - path: /a\n    heartbeat: no\n", "routes[0].heartbeat", 3, "invalid duration \"no\""),
            ("routes:\n  - /a\n", "routes[0]", 2, "expected a route mapping with path"),
            ("routes: /a\n", "routes", 1, "expected a list of routes"),
            // workers
            ("workers: 0\n", "workers", 1, "invalid workers \"0\" (use auto or an integer"),
            ("workers: many\n", "workers", 1, "invalid workers \"many\""),
            ("workers: -2\n", "workers", 1, "invalid workers \"-2\""),
            ("workers: 1.5\n", "workers", 1, "invalid workers \"1.5\""),
            // log
            ("log:\n  level: verbose\n", "log.level", 2, "invalid log level \"verbose\" (allowed: trace, debug, info, notice, warning, error, critical)"),
            ("log:\n  format: xml\n", "log.format", 2, "invalid log format \"xml\" (allowed: text, json)"),
            ("log:\n  access: maybe\n", "log.access", 2, "invalid boolean \"maybe\""),
            // comment
            ("heartbeat:\n  comment: \"a\\nb\"\n", "heartbeat.comment", 2, "single line"),
            ("heartbeat:\n  comment: \"a\\rb\"\n", "heartbeat.comment", 2, "single line"),
            ("heartbeat:\n  comment: \"a\\0b\"\n", "heartbeat.comment", 2, "single line"),
            ("heartbeat:\n  comment: |\n    two\n    lines\n", "heartbeat.comment", 2, "single line"),
            ("heartbeat:\n  comment: \"bell\\a\"\n", "heartbeat.comment", 2, "control character"),
            ("heartbeat:\n  blank_line: 2\n", "heartbeat.blank_line", 2, "invalid boolean \"2\""),
            // wrong types
            ("upstream:\n  - 127.0.0.1:3000\n", "upstream", 2, "expected an address (host:port or unix:/path), got a list"),
            ("timeouts:\n  connect: [5s]\n", "timeouts.connect", 2, "got a list"),
            ("timeouts: 5s\n", "timeouts", 1, "expected a mapping, got \"5s\""),
            ("log:\n  level: {a: 1}\n", "log.level", 2, "got a mapping"),
            ("upstream:\n", "upstream", 1, "got nothing"),
            ("heartbeat:\n", "heartbeat", 1, "got nothing"),
            ("admin: 127.0.0.1:9090\n", "admin", 1, "expected a mapping with listen, or off"),
            // root and syntax
            ("- a\n- b\n", "", 1, "the config must be a mapping"),
            ("just a string\n", "", 1, "the config must be a mapping"),
            ("workers: 2\nlisten: [a:1\nupstream: x:1\n", "", 3, "YAML syntax error"),
            ("workers: 2\n  bad: indentation\n", "", 2, "YAML syntax error"),
            ("workers: 2\nworkers: 3\n", "workers", 1, "duplicate key \"workers\""),
            ("{a: 1\n", "", 2, "YAML syntax error"),
        ]
        for (yaml, key, line, fragment) in table {
            guard let e = failure(yaml) else { XCTFail("no error for \(yaml.debugDescription)"); continue }
            XCTAssertEqual(e.key, key, "for \(yaml.debugDescription): \(e)")
            XCTAssertEqual(e.line, line, "for \(yaml.debugDescription): \(e)")
            XCTAssertTrue(e.message.contains(fragment), "for \(yaml.debugDescription): \"\(e.message)\" lacks \"\(fragment)\"")
            XCTAssertNotNil(e.column, "for \(yaml.debugDescription)")
            if ProcessInfo.processInfo.environment["SHOW_CONFIG_ERRORS"] != nil { print(e) }
        }
    }

    // MARK: off, quoted and bare

    func testYamsReadsBareOffAsBooleanScalarKeepingItsText() throws {
        // Documents what the loader relies on: Yams resolves bare `off` to
        // tag:yaml.org,2002:bool with the original text, quoted "off" to a string.
        let bare = try XCTUnwrap(Yams.compose(yaml: "a: off")?["a"])
        XCTAssertEqual(bare.tag.description, "tag:yaml.org,2002:bool")
        XCTAssertEqual(bare.bool, false)
        XCTAssertEqual(bare.scalar?.string, "off")
        let quoted = try XCTUnwrap(Yams.compose(yaml: "a: \"off\"")?["a"])
        XCTAssertEqual(quoted.tag.description, "tag:yaml.org,2002:str")
        XCTAssertNil(quoted.bool)
    }

    func testOffSpellings() throws {
        for spelling in ["off", "\"off\"", "'off'", "Off", "OFF", "false", "\"OFF\""] {
            let top = try parse("heartbeat: \(spelling)\nroutes:\n  - path: /a\n  - path: /b\n    heartbeat: 5s\n")
            XCTAssertNil(top.heartbeat.interval, spelling)
            XCTAssertNil(top.routes[0].heartbeat.interval, spelling)
            XCTAssertEqual(top.routes[1].heartbeat.interval, .seconds(5), spelling)

            let nested = try parse("heartbeat:\n  interval: \(spelling)\n")
            XCTAssertNil(nested.heartbeat.interval, spelling)
            XCTAssertEqual(nested.heartbeat.comment, "heartbeat")

            let route = try parse("routes:\n  - path: /a\n    heartbeat: \(spelling)\n")
            XCTAssertNil(route.routes[0].heartbeat.interval, spelling)
            XCTAssertEqual(route.heartbeat.interval, .seconds(15))

            let routeMap = try parse("routes:\n  - path: /a\n    heartbeat: {interval: \(spelling)}\n")
            XCTAssertNil(routeMap.routes[0].heartbeat.interval, spelling)
        }
        // Other YAML 1.1 booleans are not "off".
        for other in ["no", "\"false\"", "true", "on", "\"no\""] {
            XCTAssertNotNil(failure("heartbeat: \(other)\n"), other)
        }
    }

    func testTopLevelIntervalOffTurnsRoutesOffByDefault() throws {
        let c = try parse("routes:\n  - path: /a\n  - path: /b\n    heartbeat: {comment: x}\nheartbeat: {interval: off}\n")
        XCTAssertNil(c.routes[0].heartbeat.interval)
        XCTAssertEqual(c.routes[1].heartbeat, HeartbeatSettings(interval: nil, comment: "x", blankLine: true))
    }

    func testRouteHeartbeatMappingInheritsFromTopLevelDeclaredLater() throws {
        let c = try parse("""
        routes:
          - path: /a
            heartbeat:
              interval: 3s
          - path: /b
            heartbeat:
              comment: own
          - path: /c
            heartbeat: {blank_line: true, comment: ""}
          - path: /d
            heartbeat: 7s
          - path: /e
        heartbeat:
          interval: 20s
          comment: keepalive
          blank_line: false
        """)
        XCTAssertEqual(c.heartbeat, HeartbeatSettings(interval: .seconds(20), comment: "keepalive", blankLine: false))
        XCTAssertEqual(c.routes[0].heartbeat, HeartbeatSettings(interval: .seconds(3), comment: "keepalive", blankLine: false))
        XCTAssertEqual(c.routes[1].heartbeat, HeartbeatSettings(interval: .seconds(20), comment: "own", blankLine: false))
        XCTAssertEqual(c.routes[2].heartbeat, HeartbeatSettings(interval: .seconds(20), comment: "", blankLine: true))
        XCTAssertEqual(c.routes[3].heartbeat, HeartbeatSettings(interval: .seconds(7), comment: "keepalive", blankLine: false))
        XCTAssertEqual(c.routes[4].heartbeat, c.heartbeat)
    }

    func testCommentText() throws {
        XCTAssertEqual(try parse("heartbeat: {comment: \"\"}").heartbeat.comment, "")
        XCTAssertEqual(try parse("heartbeat:\n  comment:\n").heartbeat.comment, "")
        XCTAssertEqual(try parse("heartbeat: {comment: \"ok: still \\\"fine\\\"\"}").heartbeat.comment, "ok: still \"fine\"")
        XCTAssertEqual(try parse("heartbeat: {comment: \"herzschlag ♥\"}").heartbeat.comment, "herzschlag ♥")
        XCTAssertEqual(try parse("heartbeat: {comment: 42}").heartbeat.comment, "42")
    }

    func testTokenSettings() throws {
        let c = try parse("""
        routes:
          - path: /a
            token: {}
          - path: /b
            token: {scheme: ""}
          - path: /c
            token:
              query: a-b.c_d~e
              header: X-Auth-Token
              scheme: Token
          - path: /d
        """)
        XCTAssertEqual(c.routes[0].token, TokenSettings())
        XCTAssertEqual(c.routes[1].token, TokenSettings(query: "token", header: "Authorization", scheme: ""))
        XCTAssertEqual(c.routes[2].token, TokenSettings(query: "a-b.c_d~e", header: "X-Auth-Token", scheme: "Token"))
        XCTAssertNil(c.routes[3].token)
    }

    func testTokenHeaderCannotBeHopByHopOrFraming() {
        for name in ["Connection", "keep-alive", "Proxy-Connection", "Transfer-Encoding", "TE", "Trailer", "Upgrade",
                     "Host", "Content-Length", "content-type"] {
            assertError("routes:\n  - path: /a\n    token: {header: \(name)}\n", key: "routes[0].token.header", line: 3,
                        contains: "cannot carry a token")
        }
        XCTAssertEqual(try? parse("routes:\n  - path: /a\n    token: {header: X-Upgrade}\n").routes[0].token?.header, "X-Upgrade")
    }

    // MARK: Durations and sizes

    func testDurations() {
        let valid: [(String, Int)] = [("500ms", 500), ("1ms", 1), ("15s", 15_000), ("2m", 120_000), ("1h", 3_600_000),
                                      ("90s", 90_000), ("0015s", 15_000), ("1000ms", 1000)]
        for (s, ms) in valid {
            XCTAssertEqual(ConfigLoader.parseDuration(s), TimeSpan(milliseconds: ms), s)
        }
        let invalid = ["", "0s", "0ms", "-1s", "+1s", "1.5s", "15", "10 s", " 10s", "10s ", "s", "ms", "10x", "10sec",
                       "1d", "10S", "1H", "1e3ms", "off", "99999999999999999h", "1_000ms", "１s"]
        for s in invalid {
            XCTAssertNil(ConfigLoader.parseDuration(s), s)
        }
    }

    func testSizes() {
        let valid: [(String, Int)] = [("512", 512), ("1", 1), ("64KiB", 65536), ("1MiB", 1 << 20), ("1GiB", 1 << 30),
                                      ("16KiB", 16384), ("1024KiB", 1 << 20)]
        for (s, n) in valid {
            XCTAssertEqual(ConfigLoader.parseSize(s), n, s)
        }
        let invalid = ["", "0", "0KiB", "-1", "1KB", "1kib", "1K", "1MB", "1.5MiB", "10 KiB", "KiB", "1TiB", "x",
                       "999999999999999999GiB"]
        for s in invalid {
            XCTAssertNil(ConfigLoader.parseSize(s), s)
        }
    }

    func testAddresses() {
        let valid: [(String, Bool, SocketAddressSpec)] = [
            ("127.0.0.1:8080", false, .inet(host: "127.0.0.1", port: 8080)),
            ("localhost:1", false, .inet(host: "localhost", port: 1)),
            ("api.example.com:65535", false, .inet(host: "api.example.com", port: 65535)),
            ("[::1]:80", false, .inet(host: "::1", port: 80)),
            ("[::]:80", false, .inet(host: "::", port: 80)),
            ("[2001:db8::1]:443", false, .inet(host: "2001:db8::1", port: 443)),
            ("unix:/run/app.sock", true, .unix(path: "/run/app.sock")),
        ]
        for (s, unix, expected) in valid {
            XCTAssertEqual(ConfigLoader.parseAddress(s, allowUnix: unix), expected, s)
            XCTAssertEqual(expected.description, s)
        }
        let invalid: [(String, Bool)] = [
            ("", false), ("8080", false), (":8080", false), ("host:", false), ("host:0", false), ("host:65536", false),
            ("host:-1", false), ("host:http", false), ("::1:80", false), ("[::1]80", false), ("[::1]", false),
            ("[nothex]:80", false), ("1.2.3.256:80", false), ("1.2.3:80", false), ("-bad.com:80", false),
            ("a b:80", false), ("unix:/tmp/x", false), ("unix:x", true), ("unix:", true),
            ("unix:/" + String(repeating: "a", count: 200), true), ("host:8080 ", false),
        ]
        for (s, unix) in invalid {
            XCTAssertNil(ConfigLoader.parseAddress(s, allowUnix: unix), s)
        }
    }

    func testEditDistance() {
        XCTAssertEqual(ConfigReader.editDistance("intervall", "interval"), 1)
        XCTAssertEqual(ConfigReader.editDistance("", "abc"), 3)
        XCTAssertEqual(ConfigReader.editDistance("kitten", "sitting"), 3)
    }

    // MARK: Streams through every hop

    func testStreamKeysTopLevelAndPerRoute() throws {
        let c = try ConfigLoader.parse(yaml: """
            heartbeat: {interval: 10s, on_open: false, padding: 2KiB}
            retry: 3s
            max_stream_duration: {base: 1h, jitter: 10m}
            routes:
              - path: /a
              - path: /b
                heartbeat: {on_open: true, padding: 0}
                retry: {base: 2s, jitter: 2s}
                max_stream_duration: off
            """, file: "x.yaml")
        XCTAssertEqual(c.heartbeat.onOpen, false)
        XCTAssertEqual(c.heartbeat.padding, 2048)
        XCTAssertEqual(c.retry, JitteredSpan(base: .seconds(3)))
        XCTAssertEqual(c.maxStreamDuration, JitteredSpan(base: .seconds(3600), jitter: .seconds(600)))
        XCTAssertEqual(c.routes[0].heartbeat.padding, 2048, "inherited")
        XCTAssertEqual(c.routes[0].retry, c.retry)
        XCTAssertEqual(c.routes[0].maxStreamDuration, c.maxStreamDuration)
        XCTAssertEqual(c.routes[1].heartbeat.onOpen, true)
        XCTAssertEqual(c.routes[1].heartbeat.padding, 0)
        XCTAssertEqual(c.routes[1].retry, JitteredSpan(base: .seconds(2), jitter: .seconds(2)))
        XCTAssertNil(c.routes[1].maxStreamDuration)
        XCTAssertEqual(Config().heartbeat.onOpen, true, "on by default")
        XCTAssertNil(Config().retry)
        // check's output reads back to the same config.
        XCTAssertEqual(try ConfigLoader.parse(yaml: c.rendered(), file: "x.yaml").routes, c.routes)
    }

    func testBadStreamKeys() {
        assertError("heartbeat: {on_open: maybe}\n", key: "heartbeat.on_open", line: 1, contains: "true or false")
        assertError("heartbeat:\n  padding: 65KiB\n", key: "heartbeat.padding", line: 2, contains: "too large")
        assertError("retry: 0s\n", key: "retry", line: 1, contains: "invalid duration")
        assertError("retry: -2s\n", key: "retry", line: 1, contains: "invalid duration")
        assertError("retry: {jitter: 2s}\n", key: "retry", line: 1, contains: "a jitter needs a base")
        assertError("max_stream_duration: {base: 1h, jiter: 1m}\n", key: "max_stream_duration.jiter", line: 1,
                    contains: "did you mean")
        assertError("routes:\n  - path: /a\n    max_stream_duration: {base: 1h, jitter: 0s}\n",
                    key: "routes[0].max_stream_duration.jitter", line: 3, contains: "invalid duration")
    }

    /// `headers.allow_underscores`: top level, inherited by routes, overridable per route.
    func testHeadersAllowUnderscoresInheritsAndOverrides() throws {
        var c = try ConfigLoader.parse(yaml: "routes:\n  - path: /a\n", file: "t.yaml")
        XCTAssertFalse(c.headers.allowUnderscores)
        XCTAssertFalse(c.routes[0].headers.allowUnderscores)
        c = try ConfigLoader.parse(yaml: """
        routes:
          - path: /a
          - path: /b
            headers: {allow_underscores: false}
        headers:
          allow_underscores: true
        """, file: "t.yaml")
        XCTAssertTrue(c.headers.allowUnderscores)
        XCTAssertEqual(c.routes.map(\.headers.allowUnderscores), [true, false])
        XCTAssertTrue(Router(config: c).fallback.headers.allowUnderscores)
        XCTAssertTrue(c.rendered().contains("allow_underscores: true"), c.rendered())
        // the plan for a request on a route follows the route's setting
        let request = RequestHead(method: "GET", target: "/a", version: .http11,
                                  headers: HTTPHeaders([("Host", "h"), ("X_A", "1")]))
        XCTAssertEqual(try RequestPlan.make(request, route: c.routes[0]).upstreamHead.headers["X_A"], "1")
        XCTAssertNil(try RequestPlan.make(request, route: c.routes[1]).upstreamHead.headers["X_A"])
    }
}
