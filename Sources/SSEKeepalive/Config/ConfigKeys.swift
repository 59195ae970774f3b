// THE KEY TABLE: every config key is declared here, once. Reading the file,
// the "did you mean" hints, errors naming file:line:column and the dotted key,
// and the effective config printed by `check` all come from these declarations
// (docs/configuration.md is the user's side of this table).
//
// How to add a key:
//  1. Add the field, with its default, to the model in Config.swift
//     (`Config`, `RouteConfig`, `HeartbeatSettings`, `TokenSettings`, ...).
//  2. Declare it with one line in the right list below, for example
//     `.duration("idle", \.idleTimeout)` in `timeoutKeys`. Kinds: duration,
//     durationOrOff, size, integer, bool, choice, address, addressOrOff, text,
//     section (a mapping), optionalSection; anything else is a
//     `ConfigKey(name, summary:, read:, render:)` written out (see `listen`).
//     - Top level and per route, a route starting from the top-level value:
//       one `InheritedKey` in `inherited` (the field goes in both `Config`
//       and `RouteConfig`; see `heartbeat`).
//     - Inside heartbeat (so also per route): one line in `heartbeatKeys`.
//     - Per route only: one line in `routeKeys`.
//  3. Use the field, document the key in docs/configuration.md (with its
//     default and reload behaviour; ConfigDocsTests fails until it is there),
//     and add a test (ConfigLoaderTests: a value, a bad value).

import Yams

enum ConfigKeys {
    /// The top level, in the order `check` prints it.
    static var topKeys: [ConfigKey<Config>] {
        [listen, .address("upstream", \.upstream, allowUnix: true),
         .durationOrOff("upstream_resolve", \.upstreamResolve), workers]
            + inherited.map(\.top)
            + [
                .section("log", keys: logKeys),
                .section("timeouts", keys: timeoutKeys),
                .section("limits", keys: limitKeys),
                .section("shutdown", keys: [.duration("grace", \.shutdownGrace)]),
                .section("reload", keys: [.bool("watch", \.reloadWatch)]),
                admin,
                routes,
            ]
    }

    /// Keys set at the top level and per route (a route starts from the top-level value).
    static var inherited: [InheritedKey] {
        [
            InheritedKey(\Config.heartbeat, \RouteConfig.heartbeat,
                         .section("heartbeat", \.self, keys: heartbeatKeys, shorthand: "interval")),
            InheritedKey(\Config.retry, \RouteConfig.retry, .jitteredOrOff("retry", \.self)),
            InheritedKey(\Config.maxStreamDuration, \RouteConfig.maxStreamDuration,
                         .jitteredOrOff("max_stream_duration", \.self)),
            InheritedKey(\Config.headers, \RouteConfig.headers, .section("headers", \.self, keys: headerKeys)),
        ]
    }

    static var headerKeys: [ConfigKey<HeaderSettings>] {
        [.bool("allow_underscores", \.allowUnderscores)]
    }

    static var heartbeatKeys: [ConfigKey<HeartbeatSettings>] {
        [
            .durationOrOff("interval", \.interval),
            .text("comment", \.comment, expected: "a comment text", null: "", check: commentProblem),
            .bool("blank_line", \.blankLine),
            .bool("on_open", \.onOpen),
            padding,
        ]
    }

    static var logKeys: [ConfigKey<Config>] {
        [
            .choice("level", \.logLevel, what: "log level"),
            .choice("format", \.logFormat, what: "log format"),
            .bool("access", \.accessLog),
        ]
    }

    static var timeoutKeys: [ConfigKey<Config>] {
        [
            .duration("connect", \.connectTimeout),
            .duration("response", \.responseTimeout),
            .duration("client_header", \.clientHeaderTimeout),
            .duration("keepalive", \.keepaliveTimeout),
        ]
    }

    static var limitKeys: [ConfigKey<Config>] {
        [
            .integer("max_connections", \.maxConnections, range: 1...100_000_000),
            .size("max_header_bytes", \.maxHeaderBytes, minimum: 1024),
            .size("stream_buffer", \.streamBuffer),
        ]
    }

    /// One route, in the order `check` prints it; `path` is required and read first.
    static var routeKeys: [ConfigKey<RouteConfig>] {
        [.text("path", \.path, expected: "a path such as /events", check: routePathProblem), routeUpstream]
            + inherited.map(\.route)
            + [.optionalSection("token", \.token, empty: TokenSettings(), keys: tokenKeys,
                                expected: "a mapping ({} for the defaults)"), routeDiagnostic, share]
    }

    /// `share: true`, `false`/`off`, or a mapping of `shareKeys`; shown by `check` only when on.
    static var share: ConfigKey<RouteConfig> {
        let expected = "true, false, or a mapping with \(shareKeys.map(\.name).joined(separator: ", "))"
        return ConfigKey("share", summary: expected,
                         read: { r, node, path, route throws(ConfigError) in
                             if case .mapping = node {
                                 var settings = ShareSettings()
                                 try r.read(node, path, keys: shareKeys, into: &settings, expected: expected)
                                 route.share = settings
                                 return
                             }
                             guard case .scalar = node, !ConfigReader.isNull(node) else {
                                 throw r.typeError(node, path, expected: expected)
                             }
                             route.share = try r.bool(node, path) ? ShareSettings() : nil
                         },
                         render: { route, c in route.share.map { .mapping(shareKeys.rendered($0, c)) } ?? .omitted })
    }

    static var shareKeys: [ConfigKey<ShareSettings>] {
        [shareKeyHeaders, replay, .bool("ids", \.ids), .duration("linger", \.linger)]
    }

    /// A list of header names (it replaces the default list; `[]`: no header in the key).
    static var shareKeyHeaders: ConfigKey<ShareSettings> {
        let expected = "a list of header names"
        return ConfigKey("key_headers", summary: expected,
                         read: { r, node, path, s throws(ConfigError) in
                             guard case .sequence(let items) = node else { throw r.typeError(node, path, expected: expected) }
                             var names: [String] = []
                             for (i, item) in items.enumerated() {
                                 let name = try r.scalar(item, "\(path)[\(i)]", expected: "a header name")
                                 guard !name.isEmpty, name.utf8.allSatisfy(HTTPBytes.isTchar) else {
                                     throw r.error(item, "\(path)[\(i)]",
                                                   "invalid header name \"\(TextEscape.message(name))\" (an HTTP token such as Authorization)")
                                 }
                                 if names.contains(where: { $0.lowercased() == name.lowercased() }) {
                                     throw r.error(item, "\(path)[\(i)]", "duplicate header name \"\(name)\"")
                                 }
                                 names.append(name)
                             }
                             s.keyHeaders = names
                         },
                         render: { s, _ in .list(s.keyHeaders.map { .scalar(Config.quote($0)) }) })
    }

    /// `off`, or `{events: N, age: D}` (unset keys take their defaults).
    static var replay: ConfigKey<ShareSettings> {
        let keys: [ConfigKey<ReplayBound>] = [
            .integer("events", \.events, range: 1...ReplayBound.maxEvents), .duration("age", \.age),
        ]
        let expected = "off, or a mapping with events, age"
        return ConfigKey("replay", summary: expected,
                         read: { r, node, path, s throws(ConfigError) in
                             if ConfigReader.isOff(node) {
                                 s.replay = nil
                                 return
                             }
                             var bound = ReplayBound()
                             try r.read(node, path, keys: keys, into: &bound, expected: expected)
                             s.replay = bound
                         },
                         render: { s, c in s.replay.map { .mapping(keys.rendered($0, c)) } ?? .scalar("off") })
    }

    /// `diagnostic: true`: the route serves the probe's diagnostic stream; shown by `check` only when on.
    static var routeDiagnostic: ConfigKey<RouteConfig> {
        ConfigKey("diagnostic", summary: "true or false",
                  read: { r, node, path, route throws(ConfigError) in route.diagnostic = try r.bool(node, path) },
                  render: { route, _ in route.diagnostic ? .scalar("true") : .omitted })
    }

    static var tokenKeys: [ConfigKey<TokenSettings>] {
        [
            .text("query", \.query, expected: "a query parameter name") { q in
                !q.isEmpty && q.utf8.allSatisfy(ValueSyntax.isUnreserved) ? nil
                    : "invalid query parameter name \"\(TextEscape.message(q))\" (letters, digits, -, ., _ and ~ only)"
            },
            .text("header", \.header, expected: "a header name") { h in
                guard !h.isEmpty, h.utf8.allSatisfy(HTTPBytes.isTchar) else {
                    return "invalid header name \"\(TextEscape.message(h))\" (an HTTP token such as Authorization)"
                }
                return forbiddenTokenHeaders.contains(h.lowercased()) ? "header \"\(h)\" cannot carry a token" : nil
            },
            .text("scheme", \.scheme, expected: "an authorization scheme", null: "") { s in
                s.utf8.allSatisfy(HTTPBytes.isTchar) ? nil
                    : "invalid scheme \"\(TextEscape.message(s))\" (an HTTP token such as Bearer, or \"\" for the bare value)"
            },
        ]
    }

    /// A route as the top level makes it before the route's own keys are read.
    static func route(path: String, inheriting c: Config) -> RouteConfig {
        var r = RouteConfig(path: path, heartbeat: c.heartbeat)
        for key in inherited { key.inherit(c, &r) }
        return r
    }

    // MARK: Keys with their own shape

    /// `host:port` or a non-empty list of distinct ones.
    static var listen: ConfigKey<Config> {
        ConfigKey("listen", summary: "an address or a list of addresses",
                  read: { r, node, path, c throws(ConfigError) in
                      guard case .sequence(let seq) = node else {
                          c.listen = [try r.address(node, path, allowUnix: false)]
                          return
                      }
                      guard !seq.isEmpty else { throw r.error(node, path, "the list of listen addresses is empty") }
                      var out: [SocketAddressSpec] = []
                      for (i, item) in seq.enumerated() {
                          let a = try r.address(item, "\(path)[\(i)]", allowUnix: false)
                          if out.contains(a) { throw r.error(item, "\(path)[\(i)]", "duplicate listen address \"\(a)\"") }
                          out.append(a)
                      }
                      c.listen = out
                  },
                  render: { c, _ in
                      c.listen.count == 1 ? .scalar(Config.quote(c.listen[0].description))
                          : .list(c.listen.map { .scalar(Config.quote($0.description)) })
                  })
    }

    /// The first comment's size: 0 (not padded) or a size up to 64 KiB.
    static var padding: ConfigKey<HeartbeatSettings> {
        let expected = "0 or a size up to 64KiB"
        return ConfigKey("padding", summary: expected,
                         read: { r, node, path, h throws(ConfigError) in
                             if case .scalar(let s) = node, s.string == "0" {
                                 h.padding = 0
                                 return
                             }
                             let n = try r.size(node, path)
                             guard n <= HeartbeatSettings.maxPadding else {
                                 throw r.error(node, path, "padding \(ValueSyntax.sizeText(n)) is too large (\(expected))")
                             }
                             h.padding = n
                         },
                         render: { h, _ in .scalar(h.padding == 0 ? "0" : ValueSyntax.sizeText(h.padding)) })
    }

    /// `auto` or a number of threads.
    static var workers: ConfigKey<Config> {
        ConfigKey("workers", summary: "auto or a number of threads",
                  read: { r, node, path, c throws(ConfigError) in
                      let text = try r.scalar(node, path, expected: "auto or a number of threads")
                      if text == "auto" {
                          c.workers = .auto
                          return
                      }
                      guard let n = ValueSyntax.decimal(Substring(text)), n >= 1, n <= 1024 else {
                          throw r.error(node, path, "invalid workers \"\(TextEscape.message(text))\" (use auto or an integer from 1 to 1024)")
                      }
                      c.workers = .count(n)
                  },
                  render: { c, _ in
                      switch c.workers {
                      case .auto: .scalar("auto")
                      case .count(let n): .scalar("\(n)")
                      }
                  })
    }

    /// `off` (or nothing), or a mapping with `listen`.
    static var admin: ConfigKey<Config> {
        let keys: [ConfigKey<Config>] = [.addressOrOff("listen", \.adminListen, allowUnix: false)]
        let expected = "a mapping with listen, or off"
        return ConfigKey("admin", summary: expected,
                         read: { r, node, path, c throws(ConfigError) in
                             if ConfigReader.isNull(node) || ConfigReader.isOff(node) {
                                 c.adminListen = nil
                             } else {
                                 try r.read(node, path, keys: keys, into: &c, expected: expected)
                             }
                         },
                         render: { c, _ in c.adminListen == nil ? .scalar("off") : .mapping(keys.rendered(c, c)) })
    }

    /// A route's own upstream; unset means the top-level one (shown as a comment).
    static var routeUpstream: ConfigKey<RouteConfig> {
        ConfigKey("upstream", summary: "an address",
                  read: { r, node, path, route throws(ConfigError) in
                      route.upstream = try r.address(node, path, allowUnix: true)
                  },
                  render: { route, c in
                      route.upstream.map { .scalar(Config.quote($0.description)) } ?? .inherited(Config.quote(c.upstream.description))
                  })
    }

    /// The list of routes: read after every other top-level key, so that
    /// routes inherit the top-level values wherever the file puts them.
    static var routes: ConfigKey<Config> {
        ConfigKey("routes", summary: "a list of routes", late: true,
                  read: { r, node, path, c throws(ConfigError) in
                      if ConfigReader.isNull(node) {
                          c.routes = []
                          return
                      }
                      guard case .sequence(let seq) = node else { throw r.typeError(node, path, expected: "a list of routes") }
                      let keys = routeKeys
                      var out: [RouteConfig] = []
                      var seen: [String: Int] = [:]
                      for (i, item) in seq.enumerated() {
                          let itemPath = "\(path)[\(i)]"
                          let entries = try r.mapping(item, itemPath, allowed: keys.map(\.name), expected: "a route mapping with path")
                          guard let pathEntry = entries.first(where: { $0.name == "path" }) else {
                              throw r.error(item, "\(itemPath).path", "missing required key (each route needs a path such as /events)")
                          }
                          var route = Self.route(path: "", inheriting: c)
                          try r.read([pathEntry], itemPath, keys: keys, into: &route)
                          if let first = seen[route.path] {
                              throw r.error(pathEntry.value, "\(itemPath).path",
                                            "duplicate route path \"\(TextEscape.message(route.path))\" (already used by routes[\(first)])")
                          }
                          seen[route.path] = i
                          try r.read(entries.filter { $0.name != "path" }, itemPath, keys: keys, into: &route)
                          out.append(route)
                      }
                      c.routes = out
                  },
                  render: { c, _ in .list(c.routes.map { .mapping(routeKeys.rendered($0, c)) }) })
    }

    // MARK: Checks on free text

    static func commentProblem(_ text: String) -> String? {
        for u in text.unicodeScalars {
            if u == "\n" || u == "\r" || u.value == 0 {
                return "the comment must be a single line (no CR, LF or NUL)"
            }
            if (u.value < 0x20 && u != "\t") || u.value == 0x7F || (0x80...0x9F).contains(u.value) {
                let hex = String(u.value, radix: 16, uppercase: true)
                return "the comment contains a control character (U+\(String(repeating: "0", count: 4 - hex.count))\(hex))"
            }
        }
        return nil
    }

    static func routePathProblem(_ path: String) -> String? {
        guard path.hasPrefix("/") else {
            return "invalid route path \"\(TextEscape.message(path))\" (must start with \"/\")"
        }
        for u in path.unicodeScalars {
            if u.value <= 0x20 || u.value == 0x7F || u == "?" || u == "#" {
                return "invalid route path \"\(TextEscape.message(path))\" (no spaces, control characters, ? or #)"
            }
            if u.value > 0x7E {
                return "invalid route path \"\(TextEscape.message(path))\" (percent-encode non-ASCII characters, as clients send them)"
            }
        }
        // Requests are routed on their normalised path (docs/routing.md): a route must be spelled that way to match.
        let normal: String
        do {
            normal = try RequestTarget.normalisePath(Array(path.utf8)[...])
        } catch {
            return "invalid route path \"\(TextEscape.message(path))\" (\(error); no request could match it)"
        }
        if normal != path {
            return "route path \"\(TextEscape.message(path))\" is not in normal form: requests are routed on \"\(TextEscape.message(normal))\""
        }
        return nil
    }

    /// Header names a token must not be written into: the hop-by-hop ones
    /// (removed on the way) and those the proxy relies on.
    static let forbiddenTokenHeaders = HeaderPolicy.hopByHop.union(["host", "content-length", "content-type"])
}

/// A key at the top level and per route: one declaration, read into both,
/// the route starting from the top-level value.
struct InheritedKey {
    let top: ConfigKey<Config>
    let route: ConfigKey<RouteConfig>
    let inherit: (Config, inout RouteConfig) -> Void

    init<V>(_ top: WritableKeyPath<Config, V>, _ route: WritableKeyPath<RouteConfig, V>, _ key: ConfigKey<V>) {
        self.top = key.lifted(top)
        self.route = key.lifted(route)
        self.inherit = { c, r in r[keyPath: route] = c[keyPath: top] }
    }
}
