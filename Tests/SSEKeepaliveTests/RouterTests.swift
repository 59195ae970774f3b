import XCTest
@testable import SSEKeepalive

final class RouterTests: XCTestCase {
    func makeRouter(_ yaml: String) throws -> Router {
        Router(config: try ConfigLoader.parse(yaml: yaml, file: "r.yaml"))
    }

    func testSegmentAwarePrefix() {
        let table: [(String, String, Bool)] = [
            ("/events", "/events", true),
            ("/events", "/events/", true),
            ("/events", "/events/a", true),
            ("/events", "/events/a/b", true),
            ("/events", "/eventsx", false),
            ("/events", "/event", false),
            ("/events", "/", false),
            ("/events", "", false),
            ("/events", "/Events", false),
            ("/events", "/other/events", false),
            ("/events/", "/events/", true),
            ("/events/", "/events/a", true),
            ("/events/", "/events", false),
            ("/events/", "/eventsx", false),
            ("/", "/", true),
            ("/", "/anything", true),
            ("/", "/a/b/c", true),
            ("/a/b", "/a/b/c", true),
            ("/a/b", "/a/bc", false),
            ("/a/b", "/a", false),
        ]
        for (prefix, path, expected) in table {
            XCTAssertEqual(Router.matches(prefix: prefix, path: Substring(path)), expected, "\(prefix) vs \(path)")
        }
    }

    func testFirstMatchWinsAndFallback() throws {
        let r = try makeRouter("""
        upstream: 127.0.0.1:3000
        heartbeat: {interval: 20s, comment: hb}
        routes:
          - path: /api/stream
            heartbeat: 5s
            token: {}
          - path: /api
            upstream: 127.0.0.1:4000
          - path: /api/other
            heartbeat: off
          - path: /docs/
        """)
        XCTAssertEqual(r.route(for: "/api/stream").path, "/api/stream")
        XCTAssertEqual(r.route(for: "/api/stream/x").path, "/api/stream")
        XCTAssertEqual(r.route(for: "/api/streams").path, "/api")
        XCTAssertEqual(r.route(for: "/api").path, "/api")
        // /api comes before /api/other, so /api/other is shadowed.
        XCTAssertEqual(r.route(for: "/api/other").path, "/api")
        XCTAssertEqual(r.route(for: "/docs/x").path, "/docs/")
        XCTAssertEqual(r.route(for: "/docs/").path, "/docs/")

        for unmatched in ["/docs", "/", "/apix", "/x/api", ""] {
            let f = r.route(for: Substring(unmatched))
            XCTAssertEqual(f, r.fallback, unmatched)
            XCTAssertEqual(f.name, "default")
        }
        XCTAssertEqual(r.fallback.path, "/")
        XCTAssertTrue(r.fallback.isFallback)
        XCTAssertNil(r.fallback.token)
        XCTAssertNil(r.fallback.upstream)
        XCTAssertEqual(r.fallback.heartbeat, HeartbeatSettings(interval: .seconds(20), comment: "hb", blankLine: true))

        let stream = r.route(for: "/api/stream")
        XCTAssertEqual(stream.name, "/api/stream")
        XCTAssertEqual(stream.token, TokenSettings())
        XCTAssertEqual(stream.heartbeat, HeartbeatSettings(interval: .seconds(5), comment: "hb", blankLine: true))
        XCTAssertEqual(r.upstream(for: stream), .inet(host: "127.0.0.1", port: 3000))
        XCTAssertEqual(r.upstream(for: r.route(for: "/api/x")), .inet(host: "127.0.0.1", port: 4000))
        XCTAssertEqual(r.upstream(for: r.fallback), .inet(host: "127.0.0.1", port: 3000))
    }

    func testSubstringOfLargerString() throws {
        let r = try makeRouter("routes:\n  - path: /events\n")
        let target = "/events/1?token=abc"
        let path = target[..<target.firstIndex(of: "?")!]
        XCTAssertEqual(r.route(for: path).path, "/events")
        let tail = target.dropFirst(7)  // "/1?token=abc"
        XCTAssertEqual(r.route(for: tail).name, "default")
    }

    func testUserRootRouteIsNotTheFallback() throws {
        let r = try makeRouter("routes:\n  - path: /a\n  - path: /\n    heartbeat: 1s\n")
        let root = r.route(for: "/zzz")
        XCTAssertEqual(root.path, "/")
        XCTAssertEqual(root.name, "/")
        XCTAssertFalse(root.isFallback)
        XCTAssertEqual(root.heartbeat.interval, .seconds(1))
        XCTAssertEqual(r.route(for: "/a/b").path, "/a")
    }

    func testNoRoutes() {
        let r = Router(config: Config())
        XCTAssertEqual(r.route(for: "/anything").name, "default")
        XCTAssertEqual(r.fallback.heartbeat, HeartbeatSettings())
        XCTAssertEqual(r.upstream(for: r.fallback), Config().upstream)
    }

    /// Issue 17: every spelling of a path takes the route of its normalised form.
    func testRoutesOnTheNormalisedPath() throws {
        let router = try makeRouter("""
        routes:
          - path: /tok
            token: {}
          - path: /other
        """)
        let cases: [(String, String)] = [
            ("/tok/echo", "/tok"), ("/%74ok/echo", "/tok"), ("//tok/echo", "/tok"), ("/./tok/echo", "/tok"),
            ("/x/../tok/echo", "/tok"), ("http://a/tok/echo", "/tok"), ("/x/%2e%2e/tok", "/tok"),
            ("/tok/../x", "default"), ("/tok/%2E%2E/other/a", "/other"), ("/other/../tok", "/tok"),
            // refused targets: the fallback (the plan answers 400)
            ("/tok%2Fecho", "default"), ("/../tok", "default"), ("/tok/%00", "default"),
        ]
        for (path, name) in cases {
            XCTAssertEqual(router.route(for: path[...]).name, name, path)
        }
    }
}
