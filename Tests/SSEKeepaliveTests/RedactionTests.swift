import XCTest
@testable import SSEKeepalive

final class RedactionTests: XCTestCase {
    let redactor = Redactor(queryNames: ["api_key"])

    func testDefaultsAlwaysIncluded() {
        let r = Redactor(queryNames: [])
        XCTAssertEqual(r.queryNames, ["token", "access_token"])
        XCTAssertEqual(r.redact(target: "/e?token=a&access_token=b&api_key=c"), "/e?token=[REDACTED]&access_token=[REDACTED]&api_key=c")
    }

    func testTable() {
        let table: [(String, String, UInt)] = [
            ("/e?token=abc", "/e?token=[REDACTED]", #line),
            ("/e?a=1&token=abc&b=2", "/e?a=1&token=[REDACTED]&b=2", #line),
            ("/e?token=a%2Bb%2F%3D", "/e?token=[REDACTED]", #line),
            ("/e?token=caf%C3%A9&x=%C3%A9", "/e?token=[REDACTED]&x=%C3%A9", #line),
            ("/e?access_token=x&api_key=y&key=z", "/e?access_token=[REDACTED]&api_key=[REDACTED]&key=z", #line),
            // duplicates: every occurrence
            ("/e?token=a&token=b", "/e?token=[REDACTED]&token=[REDACTED]", #line),
            // valueless / empty: nothing to hide
            ("/e?token", "/e?token", #line),
            ("/e?token=", "/e?token=", #line),
            ("/e?token&a=1", "/e?token&a=1", #line),
            // similar names are not redacted
            ("/e?xtoken=a&token2=b&tok=c", "/e?xtoken=a&token2=b&tok=c", #line),
            // but case and encoding variants are (more than TokenRewrite removes)
            ("/e?Token=a&TOKEN=b", "/e?Token=[REDACTED]&TOKEN=[REDACTED]", #line),
            ("/e?%74oken=a&%74%6F%6B%65%6E=b", "/e?%74oken=[REDACTED]&%74%6F%6B%65%6E=[REDACTED]", #line),
            // ';' is part of the value
            ("/e?token=a;b=c&d=1", "/e?token=[REDACTED]&d=1", #line),
            ("/e?a=1;token=x", "/e?a=1;token=x", #line),
            // separators and other bytes untouched
            ("/e?&&token=x&&", "/e?&&token=[REDACTED]&&", #line),
            ("/e?", "/e?", #line),
            ("/e", "/e", #line),
            ("*", "*", #line),
            ("/e?q=a+b&token=a+b", "/e?q=a+b&token=[REDACTED]", #line),
            // fragments
            ("/e?token=x#frag", "/e?token=[REDACTED]#frag", #line),
            ("/e#token=x", "/e#token=[REDACTED]", #line),
            ("/e?a=1#b&token=x", "/e?a=1#b&token=[REDACTED]", #line),
            // the path is never touched
            ("/token=abc/x?y=1", "/token=abc/x?y=1", #line),
            ("http://h/e?token=x", "http://h/e?token=[REDACTED]", #line),
        ]
        for (input, expected, line) in table {
            XCTAssertEqual(redactor.redact(target: input), expected, input, line: line)
        }
    }

    func testConfiguredNamesAndConfigInit() {
        var config = Config()
        config.routes = [
            RouteConfig(path: "/a", heartbeat: HeartbeatSettings(), token: TokenSettings()),
            RouteConfig(path: "/b", heartbeat: HeartbeatSettings(), token: TokenSettings(query: "sig", header: "X-Sig", scheme: "")),
            RouteConfig(path: "/c", heartbeat: HeartbeatSettings()),
        ]
        let r = Redactor(config: config)
        XCTAssertEqual(r.queryNames, ["token", "access_token", "sig"])
        XCTAssertEqual(r.redact(target: "/b?sig=abc&n=1"), "/b?sig=[REDACTED]&n=1")
    }

    /// For random tokens in random URLs, neither the token nor any
    /// percent-encoding of it survives redaction, while the rest does.
    func testRandomTokensNeverSurvive() throws {
        var rng = SeededRNG(seed: 0x5EC2E7)
        let tokenAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=:@!$'()*,é".unicodeScalars)
        let names = ["token", "access_token", "api_key"]
        for _ in 0..<3000 {
            var token = ""
            for _ in 0..<rng.int(16...40) { token.unicodeScalars.append(rng.pick(tokenAlphabet)) }
            let name = rng.pick(names)
            let encodings = [token, percentEncode(token, all: false), percentEncode(token, all: true),
                             percentEncode(token, all: true, uppercase: false)]
            let sent = rng.pick(encodings)
            var params = ["since=\(rng.int(0...999))", "channel=ops", "x=%41%2B", "flag", ""]
            params.shuffle(using: &rng)
            params = Array(params.prefix(rng.int(0...params.count)))
            params.insert("\(name)=\(sent)", at: rng.int(0...params.count))
            var target = "/api/stream?" + params.joined(separator: "&")
            if rng.chance(0.1) { target += "#frag" }

            let redacted = redactor.redact(target: target)
            for form in encodings {
                XCTAssertFalse(redacted.contains(form), "\(target) -> \(redacted)")
            }
            // whatever is decoded from the redacted URL holds no token either
            XCTAssertFalse(redacted.removingPercentEncodingForTest.contains(token), redacted)
            XCTAssertTrue(redacted.contains("\(name)=[REDACTED]"), redacted)
            // the rest is intact: removing the parameter from both gives the same
            XCTAssertEqual(redacted.replacingAll( "\(name)=[REDACTED]", with: "\(name)=\(sent)"), target)
        }
    }

    private func percentEncode(_ s: String, all: Bool, uppercase: Bool = true) -> String {
        var out = ""
        for b in s.utf8 {
            let unreserved = (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39)
                || b == UInt8(ascii: "-") || b == UInt8(ascii: ".") || b == UInt8(ascii: "_") || b == UInt8(ascii: "~")
            if unreserved && !all {
                out.unicodeScalars.append(Unicode.Scalar(b))
            } else {
                out += "%" + String(b, radix: 16, uppercase: uppercase).leftPadded(2)
            }
        }
        return out
    }
}

private extension String {
    func leftPadded(_ n: Int) -> String { String(repeating: "0", count: max(0, n - count)) + self }

    var removingPercentEncodingForTest: String {
        PercentDecoding.decode(ArraySlice(utf8)).map { String(decoding: $0, as: UTF8.self) } ?? self
    }

    func replacingAll(_ a: String, with b: String) -> String {
        var out = ""
        var rest = self[...]
        while let r = rest.firstRange(of: a) {
            out += rest[..<r.lowerBound]
            out += b
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}
