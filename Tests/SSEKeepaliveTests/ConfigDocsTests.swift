import XCTest
import Foundation
import Yams
@testable import SSEKeepalive

/// docs/configuration.md names every key of the key table: a key added to
/// ConfigKeys.swift without its documentation fails here.
final class ConfigDocsTests: XCTestCase {
    func testEveryKeyIsDocumented() throws {
        let docsURL = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/configuration.md")
        let docs = try String(contentsOf: docsURL, encoding: .utf8)

        // `check`'s output has every key; a route with every optional key set shows the route keys.
        var config = Config()
        config.routes = [RouteConfig(path: "/a", upstream: .inet(host: "127.0.0.1", port: 1),
                                     heartbeat: config.heartbeat, token: TokenSettings())]
        let root = try XCTUnwrap(Yams.compose(yaml: config.rendered()))
        var keys: [String] = []
        func walk(_ node: Node, _ prefix: String) {
            guard case .mapping(let m) = node else { return }
            for (k, v) in m {
                guard let name = k.scalar?.string else { continue }
                let path = prefix.isEmpty ? name : "\(prefix).\(name)"
                keys.append(path)
                if name == "routes", case .sequence(let routes) = v {
                    // Route keys are documented without the `routes` prefix.
                    for r in routes { walk(r, "") }
                } else {
                    walk(v, path)
                }
            }
        }
        walk(root, "")
        XCTAssertGreaterThan(keys.count, 25, "\(keys)")
        for key in keys {
            XCTAssertTrue(docs.contains("`\(key)`"), "docs/configuration.md does not mention `\(key)`")
        }
    }
}
