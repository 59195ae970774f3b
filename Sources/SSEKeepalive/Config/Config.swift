/// The effective configuration: every key of docs/configuration.md, with defaults
/// applied. Built by `ConfigLoader`; rendered back by `Config.rendered()`.

/// A span of time from the config (`500ms`, `15s`, `2m`, `1h`).
public struct TimeSpan: Equatable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var milliseconds: Int

    public init(milliseconds: Int) { self.milliseconds = milliseconds }
    public static func seconds(_ s: Int) -> TimeSpan { TimeSpan(milliseconds: s * 1000) }
    public static func < (a: TimeSpan, b: TimeSpan) -> Bool { a.milliseconds < b.milliseconds }

    /// Shortest exact spelling: `1h`, `2m`, `15s`, `500ms`.
    public var description: String {
        let ms = milliseconds
        if ms != 0 && ms % 3_600_000 == 0 { return "\(ms / 3_600_000)h" }
        if ms != 0 && ms % 60_000 == 0 { return "\(ms / 60_000)m" }
        if ms % 1000 == 0 { return "\(ms / 1000)s" }
        return "\(ms)ms"
    }
}

/// Where to listen or connect: `host:port`, `[v6]:port`, or `unix:/path`.
public enum SocketAddressSpec: Equatable, Hashable, Sendable, CustomStringConvertible {
    case inet(host: String, port: UInt16)
    case unix(path: String)

    public var description: String {
        switch self {
        case .inet(let host, let port):
            return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path):
            return "unix:\(path)"
        }
    }
}

public enum LogLevelName: String, CaseIterable, Sendable {
    case trace, debug, info, notice, warning, error, critical
}

public enum LogFormat: String, CaseIterable, Sendable {
    case text, json
}

public struct HeartbeatSettings: Equatable, Sendable {
    /// nil means `off`.
    public var interval: TimeSpan?
    public var comment: String
    public var blankLine: Bool
    /// One comment right after an event stream's head when no payload came with it.
    public var onOpen = true
    /// That first comment is padded to this many bytes (0: not padded).
    public var padding = 0

    public init(interval: TimeSpan? = .seconds(15), comment: String = "heartbeat", blankLine: Bool = true) {
        self.interval = interval
        self.comment = comment
        self.blankLine = blankLine
    }

    /// The largest `padding`.
    public static let maxPadding = 64 * 1024
}

/// A span drawn per stream from [base, base + jitter] (`retry`, `max_stream_duration`),
/// so that many streams do not act at the same instant.
public struct JitteredSpan: Equatable, Sendable {
    public var base: TimeSpan
    public var jitter: TimeSpan

    public init(base: TimeSpan, jitter: TimeSpan = TimeSpan(milliseconds: 0)) {
        self.base = base
        self.jitter = jitter
    }

    /// base + `draw`, with `draw(n)` uniform in 0..<n.
    public func drawn(_ draw: (Int) -> Int) -> TimeSpan {
        TimeSpan(milliseconds: base.milliseconds + draw(jitter.milliseconds + 1))
    }
}

public struct TokenSettings: Equatable, Sendable {
    public var query: String
    public var header: String
    /// Empty means the bare value is sent.
    public var scheme: String

    public init(query: String = "token", header: String = "Authorization", scheme: String = "Bearer") {
        self.query = query
        self.header = header
        self.scheme = scheme
    }
}

/// Request header handling (`headers`, top level and per route).
public struct HeaderSettings: Equatable, Sendable {
    /// Forward request field names containing `_`; off by default, because
    /// CGI-style servers read `X_Foo` as the same variable as `X-Foo`.
    public var allowUnderscores: Bool

    public init(allowUnderscores: Bool = false) {
        self.allowUnderscores = allowUnderscores
    }
}

/// `share` on a route: identical requests share one upstream event stream.
public struct ShareSettings: Equatable, Hashable, Sendable {
    /// Request header fields whose values are part of the share key (names as written).
    public var keyHeaders = ["Authorization", "Cookie"]
    /// Recent events kept for joiners with `Last-Event-ID`; nil: none kept.
    public var replay: ReplayBound?
    /// Add an `id:` line to each event while the upstream sends no ids.
    public var ids = false
    /// How long the upstream stream stays open after its last client left.
    public var linger: TimeSpan = .seconds(5)

    public init() {}
}

/// How many recent events a shared stream keeps, and for how long.
public struct ReplayBound: Equatable, Hashable, Sendable {
    public var events: Int
    public var age: TimeSpan

    public init(events: Int = 100, age: TimeSpan = .seconds(300)) {
        self.events = events
        self.age = age
    }

    public static let maxEvents = 100_000
}

public struct RouteConfig: Equatable, Sendable {
    /// Path prefix, matched segment-aware; also the route's name in logs and metrics.
    public var path: String
    /// nil: the top-level upstream.
    public var upstream: SocketAddressSpec?
    /// Fully resolved (top-level values inherited).
    public var heartbeat: HeartbeatSettings
    /// `retry:` hint sent at the open of an event stream; nil: none.
    public var retry: JitteredSpan?
    /// Event streams older than this end at their next event boundary; nil: no limit.
    public var maxStreamDuration: JitteredSpan?
    public var token: TokenSettings?
    /// Fully resolved (top-level values inherited).
    public var headers: HeaderSettings
    /// The sidecar answers this route itself with the diagnostic stream
    /// (`DiagnosticScript`) that `probe` reads; nothing is forwarded.
    public var diagnostic: Bool
    /// nil: every request has its own upstream stream (the default).
    public var share: ShareSettings?
    /// True only for `Router.fallback` (the route for unmatched paths, named
    /// "default"), so that it is told apart from a user route on "/".
    public var isFallback: Bool

    public init(path: String, upstream: SocketAddressSpec? = nil, heartbeat: HeartbeatSettings, token: TokenSettings? = nil,
                headers: HeaderSettings = HeaderSettings(), diagnostic: Bool = false, isFallback: Bool = false) {
        self.path = path
        self.upstream = upstream
        self.heartbeat = heartbeat
        self.token = token
        self.headers = headers
        self.diagnostic = diagnostic
        self.isFallback = isFallback
    }
}

public enum WorkerCount: Equatable, Sendable {
    case auto
    case count(Int)
}

public struct Config: Equatable, Sendable {
    public var listen: [SocketAddressSpec] = [.inet(host: "127.0.0.1", port: 8080)]
    public var upstream: SocketAddressSpec = .inet(host: "127.0.0.1", port: 3000)
    public var workers: WorkerCount = .auto
    public var heartbeat = HeartbeatSettings()
    public var retry: JitteredSpan?
    public var maxStreamDuration: JitteredSpan?
    public var headers = HeaderSettings()

    public var logLevel: LogLevelName = .info
    public var logFormat: LogFormat = .text
    public var accessLog = true

    public var connectTimeout: TimeSpan = .seconds(5)
    public var responseTimeout: TimeSpan = .seconds(60)
    public var clientHeaderTimeout: TimeSpan = .seconds(10)
    public var keepaliveTimeout: TimeSpan = .seconds(75)

    public var maxConnections = 100_000
    public var maxHeaderBytes = 16 * 1024
    public var streamBuffer = 256 * 1024

    public var shutdownGrace: TimeSpan = .seconds(10)
    /// `reload.watch`: reload when the config file changes on disk, as on SIGHUP.
    public var reloadWatch = false
    /// How often upstream host names are looked up again; nil: only at start and reload.
    public var upstreamResolve: TimeSpan? = .seconds(30)
    /// nil: no admin listener.
    public var adminListen: SocketAddressSpec? = .inet(host: "127.0.0.1", port: 9090)

    public var routes: [RouteConfig] = []

    /// The file it was loaded from, or nil for built-in defaults.
    public var sourceFile: String?

    public init() {}
}
