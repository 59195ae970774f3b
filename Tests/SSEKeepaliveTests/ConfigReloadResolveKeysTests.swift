import XCTest
@testable import SSEKeepalive

/// `reload.watch` and `upstream_resolve`: read, rejected with file:line and key, printed by `check`.
final class ConfigReloadResolveKeysTests: XCTestCase {
    func testDefaultIsNoWatch() throws {
        let c = try ConfigLoader.parse(yaml: "listen: 127.0.0.1:1\n", file: "a.yaml")
        XCTAssertFalse(c.reloadWatch)
        XCTAssertEqual(c.upstreamResolve, .seconds(30))
        XCTAssertTrue(c.rendered().contains("upstream_resolve: 30s\n"), c.rendered())
        XCTAssertTrue(c.rendered().contains("reload:\n  watch: false\n"), c.rendered())
    }

    func testValueIsRead() throws {
        XCTAssertTrue(try ConfigLoader.parse(yaml: "reload: {watch: true}\n", file: "a.yaml").reloadWatch)
        XCTAssertEqual(try ConfigLoader.parse(yaml: "upstream_resolve: 2s\n", file: "a.yaml").upstreamResolve, .seconds(2))
        XCTAssertNil(try ConfigLoader.parse(yaml: "upstream_resolve: off\n", file: "a.yaml").upstreamResolve)
    }

    func testBadValuesNameFileLineAndKey() {
        let cases: [(String, String, Int, String)] = [
            ("listen: 127.0.0.1:1\nreload:\n  watch: sometimes\n", "reload.watch", 3, "sometimes"),
            ("reload:\n  wacth: true\n", "reload.wacth", 2, "watch"),
            ("upstream_resolve: 30\n", "upstream_resolve", 1, "invalid duration \"30\""),
        ]
        for (yaml, key, line, fragment) in cases {
            XCTAssertThrowsError(try ConfigLoader.parse(yaml: yaml, file: "bad.yaml"), yaml) { error in
                guard let error = error as? ConfigError else { return XCTFail("\(error)") }
                XCTAssertEqual(error.file, "bad.yaml")
                XCTAssertEqual(error.key, key, yaml)
                XCTAssertEqual(error.line, line, yaml)
                XCTAssertTrue(error.description.contains(fragment), error.description)
            }
        }
    }

    func testRoundTrip() throws {
        var c = Config()
        c.reloadWatch = true
        c.upstreamResolve = nil
        let back = try ConfigLoader.parse(yaml: c.rendered(), file: "r.yaml")
        XCTAssertTrue(back.reloadWatch)
        XCTAssertNil(back.upstreamResolve)
        XCTAssertTrue(c.rendered().contains("upstream_resolve: off\n"), c.rendered())
    }
}
