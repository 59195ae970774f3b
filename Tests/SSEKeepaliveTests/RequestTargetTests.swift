import XCTest
@testable import SSEKeepalive

final class RequestTargetTests: XCTestCase {
    private func target(_ raw: String, method: String = "GET", host: String? = "a") throws(RequestTargetError) -> RequestTarget {
        try RequestTarget(raw, method: method, host: host)
    }

    /// (request-target, normalised path, origin-form sent upstream)
    private let accepted: [(String, String, String, UInt)] = [
        ("/", "/", "/", #line),
        ("/tok/echo?token=S", "/tok/echo", "/tok/echo?token=S", #line),
        // the spellings of issue 17: every one of them is /tok/echo
        ("/%74ok/echo?token=S", "/tok/echo", "/tok/echo?token=S", #line),
        ("/%74%6F%6B/echo", "/tok/echo", "/tok/echo", #line),
        ("//tok/echo?token=S", "/tok/echo", "/tok/echo?token=S", #line),
        ("///tok//echo", "/tok/echo", "/tok/echo", #line),
        ("/./tok/echo?token=S", "/tok/echo", "/tok/echo?token=S", #line),
        ("/x/../tok/echo?token=S", "/tok/echo", "/tok/echo?token=S", #line),
        ("/x/%2E%2E/tok/echo", "/tok/echo", "/tok/echo", #line),
        ("/x/.%2e/tok/echo", "/tok/echo", "/tok/echo", #line),
        ("/%2E/tok/echo", "/tok/echo", "/tok/echo", #line),
        ("http://a/tok/echo?token=S", "/tok/echo", "/tok/echo?token=S", #line),
        ("HTTP://A/tok/echo", "/tok/echo", "/tok/echo", #line),
        ("http://a:80/tok/echo", "/tok/echo", "/tok/echo", #line),
        // and the other way round: /tok/../x is /x
        ("/tok/../x?token=S", "/x", "/x?token=S", #line),
        ("/tok/%2e%2e/x", "/x", "/x", #line),
        ("/tok/./../x", "/x", "/x", #line),
        // dot segments at the end keep a final slash (RFC 3986 5.2.4)
        ("/a/b/..", "/a/", "/a/", #line),
        ("/a/b/.", "/a/b/", "/a/b/", #line),
        ("/a/..", "/", "/", #line),
        ("/.", "/", "/", #line),
        ("/a/", "/a/", "/a/", #line),
        ("/a//", "/a/", "/a/", #line),
        ("//", "/", "/", #line),
        // segments that only look like dots
        ("/.../a", "/.../a", "/.../a", #line),
        ("/..a/.b/a.", "/..a/.b/a.", "/..a/.b/a.", #line),
        ("/a/..;x", "/a/..;x", "/a/..;x", #line),
        // escapes of reserved or other characters stay, upper-cased
        ("/a%3fb", "/a%3Fb", "/a%3Fb", #line),
        ("/a%20b", "/a%20b", "/a%20b", #line),
        ("/caf%c3%a9", "/caf%C3%A9", "/caf%C3%A9", #line),
        ("/%25", "/%25", "/%25", #line),
        ("/%252E%252E/x", "/%252E%252E/x", "/%252E%252E/x", #line),
        ("/a%7eb%41", "/a~bA", "/a~bA", #line),
        // query and fragment byte for byte
        ("/a/./b?x=/../%2F&y=%2e#/./f", "/a/b", "/a/b?x=/../%2F&y=%2e#/./f", #line),
        ("/a?", "/a", "/a?", #line),
        ("/a?b?c", "/a", "/a?b?c", #line),
        ("/a#f?x", "/a", "/a#f?x", #line),
        // llhttp's URI vectors (test/request/uri.md)
        ("/with_\"lovely\"_quotes?foo=\\\"bar\\\"", "/with_\"lovely\"_quotes", "/with_\"lovely\"_quotes?foo=\\\"bar\\\"", #line),
        ("/test.cgi?foo=bar?baz", "/test.cgi", "/test.cgi?foo=bar?baz", #line),
        ("/test.cgi?query=|", "/test.cgi", "/test.cgi?query=|", #line),
        ("/forums/1/topics/2375?page=1#posts-17408", "/forums/1/topics/2375", "/forums/1/topics/2375?page=1#posts-17408", #line),
        ("/foo", "/foo", "/foo", #line),
    ]

    func testAcceptedTargets() throws {
        for (raw, path, origin, line) in accepted {
            do {
                let t = try target(raw, host: raw.lowercased().hasPrefix("http://") ? "a" : "whatever")
                XCTAssertEqual(t.path, path, raw, line: line)
                XCTAssertEqual(t.originForm, origin, raw, line: line)
                // the normalised path is a fixed point
                XCTAssertEqual(try RequestTarget.normalisePath(Array(t.path.utf8)[...]), t.path, raw, line: line)
                XCTAssertEqual(RequestTarget.routingPath(raw), path, raw, line: line)
                XCTAssertEqual(RequestTarget.routingPath(path), path, raw, line: line)
                XCTAssertEqual(RequestTarget.isNormalPath(path), !path.contains("%") && path != "*", raw, line: line)
            } catch {
                XCTFail("\(raw): refused with \(error)", line: line)
            }
        }
    }

    func testRefusedTargets() {
        let refused: [(String, RequestTargetError, UInt)] = [
            ("/a%2Fb", .encodedSeparator, #line),
            ("/a%2fb", .encodedSeparator, #line),
            ("/a%5Cb", .encodedSeparator, #line),
            ("/a%5cb", .encodedSeparator, #line),
            ("/a\\b", .backslash, #line),
            ("/a%00b", .controlCharacter, #line),
            ("/a%0Ab", .controlCharacter, #line),
            ("/a%0d%0aX:%201", .controlCharacter, #line),
            ("/a%09", .controlCharacter, #line),
            ("/a%7F", .controlCharacter, #line),
            ("/a\tb", .controlCharacter, #line),
            ("/a b", .controlCharacter, #line),
            ("/caf\u{E9}", .nonASCII, #line),
            ("/%FF", .notUTF8, #line),
            ("/%C3", .notUTF8, #line),
            ("/%C3/x", .notUTF8, #line),
            ("/%C3a", .notUTF8, #line),
            ("/%C0%AF", .notUTF8, #line), // overlong '/'
            ("/%ED%A0%80", .notUTF8, #line), // surrogate
            ("/%", .badEscape, #line),
            ("/%4", .badEscape, #line),
            ("/%G1", .badEscape, #line),
            ("/..", .aboveRoot, #line),
            ("/../tok", .aboveRoot, #line),
            ("/a/../../tok", .aboveRoot, #line),
            ("/%2e%2e/tok", .aboveRoot, #line),
            ("//..//tok", .aboveRoot, #line),
            ("tok/echo", .notAbsolutePath, #line),
            ("a:443", .unsupportedScheme, #line),
            ("home_0.netscape.com:443", .unsupportedScheme, #line),
            ("*", .asteriskForm, #line),
            ("ftp://a/x", .unsupportedScheme, #line),
            ("http:/a/x", .notAbsolutePath, #line),
            ("http:///x", .badAuthority, #line),
            ("http://u@a/x", .badAuthority, #line),
            ("http://a%12:b!&*$@hypnotoad.org:1234/toto", .badAuthority, #line), // llhttp: host:port and basic auth
            ("http://b/tok/echo", .hostMismatch, #line),
            ("http://a:8080/tok", .hostMismatch, #line),
            ("http://a/%2F", .encodedSeparator, #line),
            ("http://a/../x", .aboveRoot, #line),
            ("?x", .notAbsolutePath, #line),
        ]
        for (raw, expected, line) in refused {
            XCTAssertThrowsError(try target(raw), raw, line: line) {
                XCTAssertEqual($0 as? RequestTargetError, expected, raw, line: line)
            }
            // routing does not check Host nor the method; everything else it refuses too
            if expected != .hostMismatch && expected != .asteriskForm {
                XCTAssertNil(RequestTarget.routingPath(raw), raw, line: line)
            }
        }
    }

    func testAbsoluteForm() throws {
        var t = try target("http://hypnotoad.org?hail=all", host: "hypnotoad.org")
        XCTAssertEqual(t.originForm, "/?hail=all")
        XCTAssertEqual(t.authority, "hypnotoad.org")
        t = try target("http://hypnotoad.org:1234?hail=all", host: "HYPNOTOAD.org:1234")
        XCTAssertEqual(t.originForm, "/?hail=all")
        t = try target("http://hypnotoad.org:1234", host: "hypnotoad.org:1234")
        XCTAssertEqual(t.originForm, "/")
        t = try target("https://a:443/x", host: "a")
        XCTAssertEqual(t.originForm, "/x")
        t = try target("http://[::1]:8080/x", host: "[::1]:8080")
        XCTAssertEqual(t.authority, "[::1]:8080")
        // no Host field (HTTP/1.0): the authority stands
        t = try target("http://b/x", host: nil)
        XCTAssertEqual(t.authority, "b")
        XCTAssertThrowsError(try target("https://a/x", host: "a:80"))
    }

    func testIsNormalPath() {
        for path in ["/", "/a", "/a/", "/a/b", "/.a/..b/...", "/a.", "/a..", "/~_-", "/a;b"] {
            XCTAssertTrue(RequestTarget.isNormalPath(path), path)
        }
        for path in ["", "a", "//", "/a//b", "/.", "/..", "/a/.", "/a/..", "/./a", "/../a", "/a/./b", "/%41",
                     "/a?b", "/a#b", "/a b", "/a\\b", "/caf\u{E9}", "*"] {
            XCTAssertFalse(RequestTarget.isNormalPath(path), path)
        }
    }

    /// normalisePath returns a normal path as it is (its shortcut) and still rewrites the rest.
    func testNormalPathsComeBackUnchanged() throws {
        for path in ["/", "/a", "/a/", "/a/b", "/.a/..b/...", "/a.", "/a..", "/~_-", "/a;b", "/first"] {
            XCTAssertEqual(try RequestTarget.normalisePath(Array(path.utf8)[...]), path)
        }
        XCTAssertEqual(try RequestTarget.normalisePath(Array("/a//b/./c/%7E".utf8)[...]), "/a/b/c/~")
        XCTAssertThrowsError(try RequestTarget.normalisePath(Array("/a\\b".utf8)[...]))
    }

    func testAsteriskFormOnlyForOptions() throws {
        let t = try target("*", method: "OPTIONS")
        XCTAssertEqual(t.path, "*")
        XCTAssertEqual(t.originForm, "*")
        XCTAssertThrowsError(try target("*", method: "GET"))
    }

    /// Random paths over a small alphabet: the output is a fixed point and
    /// never holds an empty, `.` or `..` segment.
    func testRandomPathsNormaliseToFixedPoints() {
        var rng = SeededRNG(seed: 0x9A7E_0017)
        let pieces = ["/", "/", ".", "..", "a", "%2e", "%2E", "%41", "%2f", "%20", "%c3%a9", "%", ";", "~", "%7E", "b"]
        var accepted = 0
        for _ in 0..<20000 {
            var raw = "/"
            for _ in 0..<rng.int(0...8) { raw += pieces[rng.int(0...pieces.count - 1)] }
            guard let path = try? RequestTarget.normalisePath(Array(raw.utf8)[...]) else { continue }
            accepted += 1
            XCTAssertEqual(try? RequestTarget.normalisePath(Array(path.utf8)[...]), path, raw)
            XCTAssertTrue(path.hasPrefix("/"), raw)
            for bad in ["//", "/./", "/../"] { XCTAssertFalse(path.contains(bad), "\(raw) -> \(path)") }
            XCTAssertFalse(path.hasSuffix("/.") || path.hasSuffix("/.."), "\(raw) -> \(path)")
        }
        XCTAssertGreaterThan(accepted, 5000)
    }
}
