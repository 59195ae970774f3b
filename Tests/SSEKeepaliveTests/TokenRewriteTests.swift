import XCTest
@testable import SSEKeepalive

final class TokenRewriteTests: XCTestCase {
    private func request(_ target: String, headers: [(String, String)] = [("Host", "app.example")]) -> RequestHead {
        RequestHead(method: "GET", target: target, version: .http11, headers: HTTPHeaders(headers))
    }

    private func rewrite(_ target: String, settings: TokenSettings = TokenSettings(),
                         headers: [(String, String)] = [("Host", "app.example")]) throws(TokenRewriteError) -> RequestHead {
        try TokenRewrite.apply(to: request(target, headers: headers), settings: settings)
    }

    /// (input target, target sent upstream, Authorization value added; nil: none)
    private let table: [(String, String, String?, UInt)] = [
        // position of the parameter
        ("/events?token=abc", "/events", "Bearer abc", #line),
        ("/events?token=abc&since=42", "/events?since=42", "Bearer abc", #line),
        ("/events?since=42&token=abc", "/events?since=42", "Bearer abc", #line),
        ("/events?a=1&token=abc&b=2", "/events?a=1&b=2", "Bearer abc", #line),
        ("/api/notifications/stream?channel=ops&token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig-_x&lastEventId=17",
         "/api/notifications/stream?channel=ops&lastEventId=17", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig-_x", #line),
        // encoded values
        ("/e?token=a%2Bb", "/e", "Bearer a+b", #line),
        ("/e?token=a%2Fb%2fc", "/e", "Bearer a/b/c", #line),
        ("/e?token=abc%3D%3D", "/e", "Bearer abc==", #line),
        ("/e?token=abc==", "/e", "Bearer abc==", #line),
        ("/e?token=A-z.0_9~+/", "/e", "Bearer A-z.0_9~+/", #line),
        // + is not a space in RFC 3986 queries
        ("/e?token=a+b", "/e", "Bearer a+b", #line),
        ("/e?q=a+b&token=x", "/e?q=a+b", "Bearer x", #line),
        // other parameters' encodings untouched
        ("/e?q=%41%2b+&token=x&r=%7e", "/e?q=%41%2b+&r=%7e", "Bearer x", #line),
        // empty and blank values: no credentials, the parameter still removed
        ("/e?token=", "/e", nil, #line),
        ("/e?token", "/e", nil, #line),
        ("/e?a=1&token&b=2", "/e?a=1&b=2", nil, #line),
        ("/e?token=%20%20", "/e", nil, #line),
        ("/e?token=%20&a=1", "/e?a=1", nil, #line),
        ("/e?token=%09%20", "/e", nil, #line),
        ("/e?a=&token=x", "/e?a=", "Bearer x", #line),
        // similar names are other parameters
        ("/e?xtoken=1&token=x", "/e?xtoken=1", "Bearer x", #line),
        ("/e?token2=1&token=x", "/e?token2=1", "Bearer x", #line),
        ("/e?Token=1&token=x", "/e?Token=1", "Bearer x", #line),
        ("/e?tok=1&token=x", "/e?tok=1", "Bearer x", #line),
        ("/e?token_=1&tokens=2&token=x", "/e?token_=1&tokens=2", "Bearer x", #line),
        ("/e?%74oken=1&token=x", "/e?%74oken=1", "Bearer x", #line),
        ("/e?xtoken=1", "/e?xtoken=1", nil, #line),
        ("/e?token2=1&Token=2&tok=3", "/e?token2=1&Token=2&tok=3", nil, #line),
        // ; is an ordinary byte
        ("/e?a=1;token=x", "/e?a=1;token=x", nil, #line),
        ("/e?a=1;b=2&token=x", "/e?a=1;b=2", "Bearer x", #line),
        // fragments (clients do not send them, but if one does)
        ("/e?token=x#frag", "/e#frag", "Bearer x", #line),
        ("/e?a=1&token=x#frag", "/e?a=1#frag", "Bearer x", #line),
        ("/e?a=1#token=x", "/e?a=1#token=x", nil, #line),
        ("/e#?token=x", "/e#?token=x", nil, #line),
        // repeated other parameters kept in order
        ("/e?tag=b&tag=a&token=x&tag=c&tag=a", "/e?tag=b&tag=a&tag=c&tag=a", "Bearer x", #line),
        // no query, empty query, separator runs
        ("/e", "/e", nil, #line),
        ("/", "/", nil, #line),
        ("*", "*", nil, #line),
        ("/e?", "/e?", nil, #line),
        ("/e?&", "/e?&", nil, #line),
        ("/e?a=1&&b=2&token=x", "/e?a=1&&b=2", "Bearer x", #line),
        ("/e?a=1&&token=x&&b=2", "/e?a=1&&&b=2", "Bearer x", #line),
        ("/e?&token=x", "/e", "Bearer x", #line),
        ("/e?token=x&", "/e", "Bearer x", #line),
        ("/e?&&token=x", "/e?&", "Bearer x", #line),
        // path bytes untouched (percent-encoded path, '=' and '&' in the path)
        ("/a%2Fb/c=d&e?token=x", "/a%2Fb/c=d&e", "Bearer x", #line),
        // absolute-form
        ("http://app.example/e?token=x&a=1", "http://app.example/e?a=1", "Bearer x", #line),
    ]

    func testTable() throws {
        for (input, target, authorization, line) in table {
            let out: RequestHead
            do { out = try rewrite(input) } catch {
                XCTFail("\(input): threw \(error)", line: line)
                continue
            }
            XCTAssertEqual(out.target, target, input, line: line)
            XCTAssertEqual(out.headers.values("Authorization"), authorization.map { [$0] } ?? [], input, line: line)
            XCTAssertEqual(out.headers["Host"], "app.example", input, line: line)
            XCTAssertEqual(out.method, "GET", line: line)
            XCTAssertEqual(out.version, .http11, line: line)
            if authorization == nil && out.target == input {
                XCTAssertEqual(out, request(input), "unchanged when absent: \(input)", line: line)
            }
        }
    }

    func testHeaderIsAppendedLast() throws {
        let out = try rewrite("/e?token=x", headers: [("Host", "h"), ("Accept", "text/event-stream")])
        XCTAssertEqual(out.headers.fields.map(\.name), ["Host", "Accept", "Authorization"])
    }

    func testDuplicateParameter() {
        for target in ["/e?token=a&token=b", "/e?token=a&token=a", "/e?token&token=b", "/e?token=&token=",
                       "/e?token=a&x=1&token", "/e?token=a&&token=b#f"] {
            XCTAssertThrowsError(try rewrite(target), target) { XCTAssertEqual($0 as? TokenRewriteError, .duplicateParameter, target) }
        }
        // also when the request already has the header
        XCTAssertThrowsError(try rewrite("/e?token=a&token=b", headers: [("Authorization", "Bearer h")])) {
            XCTAssertEqual($0 as? TokenRewriteError, .duplicateParameter)
        }
        // only one counts as `token`; the others are different names
        XCTAssertNoThrow(try rewrite("/e?token=a&Token=b&xtoken=c"))
    }

    func testInvalidEncoding() {
        let bad = ["/e?token=%G1", "/e?token=%2", "/e?token=%", "/e?token=abc%", "/e?token=%%41", "/e?token=%zz",
                   "/e?token=a%0D%0AX-Evil:%201", "/e?token=a%0Ab", "/e?token=a%00b", "/e?token=%09x", "/e?token=%7F",
                   "/e?token=%FF", "/e?token=%C3", "/e?token=%C2%85", "/e?a=1&token=%2#frag"]
        for target in bad {
            XCTAssertThrowsError(try rewrite(target), target) { XCTAssertEqual($0 as? TokenRewriteError, .invalidEncoding, target) }
        }
        // bad escapes in other parameters are not the proxy's business
        XCTAssertEqual(try rewrite("/e?a=%G1&token=x").target, "/e?a=%G1")
        // the header winning does not make a bad token acceptable
        XCTAssertThrowsError(try rewrite("/e?token=%G1", headers: [("Authorization", "Bearer h")])) {
            XCTAssertEqual($0 as? TokenRewriteError, .invalidEncoding)
        }
    }

    func testErrorDescriptionsDoNotContainTheToken() {
        for error in [TokenRewriteError.duplicateParameter, .invalidEncoding, .surroundingWhitespace, .notBearerToken] {
            XCTAssertFalse(error.description.isEmpty)
        }
    }

    func testExistingHeaderWins() throws {
        for name in ["Authorization", "authorization", "AUTHORIZATION"] {
            let out = try rewrite("/e?a=1&token=query", headers: [("Host", "h"), (name, "Bearer header")])
            XCTAssertEqual(out.target, "/e?a=1")
            XCTAssertEqual(out.headers.values("Authorization"), ["Bearer header"])
            XCTAssertEqual(out.headers.fields.map(\.name), ["Host", name])
        }
        // an empty existing header still wins
        let out = try rewrite("/e?token=query", headers: [("Authorization", "")])
        XCTAssertEqual(out.headers.values("authorization"), [""])
        XCTAssertEqual(out.target, "/e")
    }

    func testCustomQueryHeaderScheme() throws {
        let settings = TokenSettings(query: "access_token", header: "X-Auth", scheme: "Token")
        var out = try rewrite("/e?token=keep&access_token=a%2Bb&x=1", settings: settings)
        XCTAssertEqual(out.target, "/e?token=keep&x=1")
        XCTAssertEqual(out.headers.values("X-Auth"), ["Token a+b"])
        XCTAssertFalse(out.headers.contains("Authorization"))

        // an existing Authorization does not matter for X-Auth
        out = try rewrite("/e?access_token=z", settings: settings, headers: [("Authorization", "Basic Zm9v")])
        XCTAssertEqual(out.headers.values("X-Auth"), ["Token z"])
        XCTAssertEqual(out.headers.values("Authorization"), ["Basic Zm9v"])

        // but an existing x-auth does
        out = try rewrite("/e?access_token=z", settings: settings, headers: [("x-auth", "Token mine")])
        XCTAssertEqual(out.headers.values("X-Auth"), ["Token mine"])
        XCTAssertEqual(out.target, "/e")

        // the default name is then an ordinary parameter, even twice
        out = try rewrite("/e?token=a&token=b", settings: settings)
        XCTAssertEqual(out, request("/e?token=a&token=b"))
    }

    func testEmptyScheme() throws {
        let settings = TokenSettings(query: "key", header: "X-Api-Key", scheme: "")
        var out = try rewrite("/e?key=s%20e%2Bcret&b=1", settings: settings)
        XCTAssertEqual(out.target, "/e?b=1")
        XCTAssertEqual(out.headers.values("X-Api-Key"), ["s e+cret"])
        out = try rewrite("/e?key", settings: settings)
        XCTAssertEqual(out.headers.values("X-Api-Key"), [])
        XCTAssertEqual(out.target, "/e")
    }

    func testSurroundingWhitespaceIsRefused() {
        for target in ["/e?token=%20abc", "/e?token=abc%20", "/e?token=abc%20%20", "/e?token=%20a%20"] {
            XCTAssertThrowsError(try rewrite(target), target) {
                XCTAssertEqual($0 as? TokenRewriteError, .surroundingWhitespace, target)
            }
            // whatever the scheme
            XCTAssertThrowsError(try rewrite(target, settings: TokenSettings(scheme: "Token")), target)
        }
    }

    /// RFC 6750 section 2.1: with the Bearer scheme (any case) the value must be a b64token.
    func testBearerValueMustBeB64Token() throws {
        let bad = ["/e?token=a%20b", "/e?token=caf%C3%A9", "/e?token=%3D%3D", "/e?token=a=b=c", "/e?token=%25",
                   "/e?token=x;a=1", "/e?token=a,b", "/e?token=a%22b", "/e?token==abc", "/e?token=a:b"]
        for target in bad {
            for scheme in ["Bearer", "bearer", "BEARER"] {
                XCTAssertThrowsError(try rewrite(target, settings: TokenSettings(scheme: scheme)), target) {
                    XCTAssertEqual($0 as? TokenRewriteError, .notBearerToken, target)
                }
            }
            // other schemes take any value without controls or surrounding blanks
            XCTAssertNoThrow(try rewrite(target, settings: TokenSettings(scheme: "Token")), target)
        }
        XCTAssertEqual(try rewrite("/e?token=a%20b", settings: TokenSettings(scheme: "Token")).headers.values("Authorization"),
                       ["Token a b"])
        // an existing header wins, but the parameter is still checked
        XCTAssertThrowsError(try rewrite("/e?token=a%20b", headers: [("Authorization", "Bearer h")])) {
            XCTAssertEqual($0 as? TokenRewriteError, .notBearerToken)
        }
    }

    func testQueryNameWithSpecialBytes() throws {
        let settings = TokenSettings(query: "auth.token", header: "Authorization", scheme: "Bearer")
        let out = try rewrite("/e?authXtoken=1&auth.token=z", settings: settings)
        XCTAssertEqual(out.target, "/e?authXtoken=1")
        XCTAssertEqual(out.headers.values("Authorization"), ["Bearer z"])
    }

    func testNonASCIIBytesElsewhereAreKept() throws {
        let out = try rewrite("/é?q=ü&token=x&r=日本")
        XCTAssertEqual(out.target, "/é?q=ü&r=日本")
    }

    /// Whatever the rest of the query holds, removing the parameter and
    /// putting it back at its place gives the original.
    func testRandomQueriesRoundTrip() throws {
        var rng = SeededRNG(seed: 0x70CE_0001)
        let alphabet = Array("ab=;+%2F&&xtoken".utf8)
        for _ in 0..<2000 {
            var pieces: [String] = []
            for _ in 0..<rng.int(0...5) {
                var p = [UInt8]()
                for _ in 0..<rng.int(0...5) { p.append(alphabet[rng.int(0...alphabet.count - 1)]) }
                let s = String(decoding: p, as: UTF8.self)
                // keep the pieces free of the exact parameter
                if s.split(separator: "&", omittingEmptySubsequences: false).contains(where: { $0 == "token" || $0.hasPrefix("token=") }) { continue }
                pieces.append(s)
            }
            let position = rng.int(0...pieces.count)
            var with = pieces
            with.insert("token=t0k", at: position)
            let target = "/p?" + with.joined(separator: "&")
            let out = try rewrite(target)
            let rest = pieces.joined(separator: "&")
            XCTAssertEqual(out.target, rest.isEmpty ? "/p" : "/p?" + rest, target)
            XCTAssertEqual(out.headers.values("Authorization"), ["Bearer t0k"], target)
        }
    }
}
