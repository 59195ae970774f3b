/// The scripted event stream a `diagnostic: true` route answers with,
/// instead of forwarding: what `probe` needs to measure a path that a real
/// app cannot show. Pure: a query in, a bounded list of steps out (write
/// these payload bytes now / wait this long); the runtime frames the bytes
/// (chunked, or close-delimited for HTTP/1.0), writes them and arms the
/// timers, and sends no heartbeats on this stream.
///
/// The stream, in order:
/// 1. the head at once, then `head_wait` of nothing: a hop that holds the
///    head until the body starts shows as the head arriving with the first event;
/// 2. `probe-size` events every `gap`, each twice as big as the one before
///    (128 bytes up to `max_size`), each with its scheduled send time and the
///    payload bytes sent so far: the first one that arrives without delay
///    gives the path's buffering threshold;
/// 3. `probe-silence` events, each announcing the silence that follows it
///    (`silence_from`, doubling up to `silence_to`): the first silence the
///    connection does not survive brackets the path's idle timeout;
/// 4. a `probe-end` event, then the end of the response.
public struct DiagnosticScript: Equatable, Sendable {
    public enum Step: Equatable, Sendable {
        /// Payload bytes to write now.
        case write([UInt8])
        /// Nothing for this many milliseconds.
        case wait(milliseconds: Int)
    }

    public struct Parameters: Equatable, Sendable {
        public var headWait = 1500
        public var gap = 250
        public var maxSize = 16 * 1024
        public var silenceFrom = 1000
        public var silenceTo = 32_000

        public init() {}

        /// Milliseconds from the head to the end of the stream.
        public var duration: Int {
            let silences = DiagnosticScript.silences(from: silenceFrom, to: silenceTo)
            return headWait + (DiagnosticScript.sizes(upTo: maxSize).count - 1 + silences.count) * gap + silences.reduce(0, +)
        }
    }

    public struct QueryError: Error, Equatable, Sendable, CustomStringConvertible {
        public var description: String
        init(_ description: String) { self.description = description }
    }

    /// Accepted query parameters: name, lowest, highest (ms or bytes).
    public static let ranges: [(name: String, low: Int, high: Int)] = [
        ("head_wait", 0, 10_000), ("gap", 50, 2_000), ("max_size", 128, 256 * 1024),
        ("silence_from", 100, 120_000), ("silence_to", 0, 300_000),
    ]
    /// No script runs longer than this (ms): the route cannot tie up the proxy.
    public static let maxDuration = 300_000
    public static let smallestEvent = 128

    public let parameters: Parameters
    public let steps: [Step]

    public init(_ parameters: Parameters) {
        self.parameters = parameters
        steps = Self.build(parameters)
    }

    /// From the request's query (nil: defaults). Unknown names, repeated
    /// names, non-numbers, values out of range and scripts longer than
    /// `maxDuration` are errors the route answers with 400.
    public static func parse(query: String?) -> Result<Parameters, QueryError> {
        var p = Parameters()
        var seen: Set<String> = []
        for piece in (query ?? "").split(separator: "&", omittingEmptySubsequences: true) {
            let parts = piece.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts[0])
            guard let range = ranges.first(where: { $0.name == name }) else {
                // Shown as visible ASCII only (this file builds without Text/ in the fuzz build).
                let shown = String(decoding: name.utf8.prefix(40).map { HTTPBytes.isVisibleASCII($0) && $0 != 0x22 ? $0 : 0x3F },
                                   as: UTF8.self)
                return .failure(QueryError("unknown parameter \"\(shown)\" (use \(ranges.map(\.name).joined(separator: ", ")))"))
            }
            guard seen.insert(name).inserted else { return .failure(QueryError("parameter \(name) given twice")) }
            guard parts.count == 2, parts[1].utf8.count <= 7, !parts[1].isEmpty, parts[1].utf8.allSatisfy(HTTPBytes.isDigit),
                  let value = Int(parts[1]) else {
                return .failure(QueryError("\(name) must be a whole number"))
            }
            guard value >= range.low && value <= range.high else {
                return .failure(QueryError("\(name) must be between \(range.low) and \(range.high)"))
            }
            switch name {
            case "head_wait": p.headWait = value
            case "gap": p.gap = value
            case "max_size": p.maxSize = value
            case "silence_from": p.silenceFrom = value
            default: p.silenceTo = value
            }
        }
        guard p.duration <= maxDuration else {
            return .failure(QueryError("the script would run \(p.duration) ms, longer than \(maxDuration) ms"))
        }
        return .success(p)
    }

    /// The query for a script that ends within `durationMs` (one second
    /// left for the connection): the default sizes and the longest doubling
    /// silences that fit; nil when not even the sizes fit.
    public static func query(fitting durationMs: Int) -> String? {
        var p = Parameters()
        p.silenceTo = 0
        guard p.duration + 1000 <= durationMs else { return nil }
        var to = p.silenceFrom
        while true {
            var next = p
            next.silenceTo = to
            guard next.duration + 1000 <= durationMs, next.duration <= maxDuration else { break }
            p = next
            to *= 2
        }
        return "silence_to=\(p.silenceTo)"
    }

    /// 128, 256, ... up to and including `max` (the last one is `max` itself
    /// when it is not a power of two).
    static func sizes(upTo max: Int) -> [Int] {
        var out: [Int] = []
        var size = smallestEvent
        while size < max { out.append(size); size *= 2 }
        out.append(max)
        return out
    }

    /// `from`, doubling, while not beyond `to`; none when `to` is below `from`.
    static func silences(from: Int, to: Int) -> [Int] {
        var out: [Int] = []
        var s = from
        while s <= to { out.append(s); s *= 2 }
        return out
    }

    static func build(_ p: Parameters) -> [Step] {
        var steps: [Step] = []
        var at = 0
        var total = 0
        var seq = 0
        func emit(_ bytes: [UInt8]) {
            total += bytes.count
            steps.append(.write(bytes))
            seq += 1
        }
        func wait(_ ms: Int) {
            guard ms > 0 else { return }
            steps.append(.wait(milliseconds: ms))
            at += ms
        }
        wait(p.headWait)
        for (i, size) in sizes(upTo: p.maxSize).enumerated() {
            if i > 0 { wait(p.gap) }
            emit(sizeEvent(seq: seq, at: at, size: size, totalBefore: total))
        }
        for silence in silences(from: p.silenceFrom, to: p.silenceTo) {
            wait(p.gap)
            emit(event("probe-silence", seq: seq, json: "{\"seq\":\(seq),\"at_ms\":\(at),\"silence_ms\":\(silence)}"))
            wait(silence)
        }
        emit(event("probe-end", seq: seq, json: "{\"seq\":\(seq),\"at_ms\":\(at)}"))
        return steps
    }

    static func event(_ type: String, seq: Int, json: String, padding: Int = 0) -> [UInt8] {
        var text = "event: \(type)\nid: \(seq)\ndata: \(json)\n"
        if padding > 0 { text += "data: " + String(repeating: "x", count: padding) + "\n" }
        return Array((text + "\n").utf8)
    }

    /// A `probe-size` event of exactly `size` bytes (`smallestEvent` or
    /// more): its fields, then a `data:` line of padding. `total` counts
    /// the payload up to and including it.
    static func sizeEvent(seq: Int, at: Int, size: Int, totalBefore: Int) -> [UInt8] {
        let json = "{\"seq\":\(seq),\"at_ms\":\(at),\"bytes\":\(size),\"total\":\(totalBefore + size)}"
        let bare = event("probe-size", seq: seq, json: json).count
        return event("probe-size", seq: seq, json: json, padding: size - bare - 7) // 7: "data: " and its LF
    }
}

/// How many diagnostic streams run at once, and how often new ones may
/// start: a token bucket per worker. Pure; the runtime passes the time.
public struct DiagnosticLimiter: Sendable {
    public var maxConcurrent: Int
    /// Starts allowed per minute (the bucket's size and refill rate).
    public var perMinute: Int
    public private(set) var running = 0
    private var tokens: Double
    private var lastRefill: Int64

    public init(maxConcurrent: Int = 2, perMinute: Int = 10, now: Int64) {
        self.maxConcurrent = maxConcurrent
        self.perMinute = perMinute
        tokens = Double(perMinute)
        lastRefill = now
    }

    public enum Decision: Equatable, Sendable {
        case start
        /// Answer 429 with Retry-After (seconds).
        case refuse(retryAfter: Int)
    }

    /// `now` in milliseconds on a monotonic clock.
    public mutating func request(now: Int64) -> Decision {
        let elapsed = max(0, now - lastRefill)
        tokens = min(Double(perMinute), tokens + Double(elapsed) * Double(perMinute) / 60_000)
        lastRefill = now
        if running >= maxConcurrent { return .refuse(retryAfter: 10) }
        guard tokens >= 1 else {
            let wait = (1 - tokens) * 60 / Double(perMinute)
            return .refuse(retryAfter: max(1, Int(wait.rounded(.up))))
        }
        tokens -= 1
        running += 1
        return .start
    }

    /// A diagnostic stream ended (any way).
    public mutating func finished() {
        running = max(0, running - 1)
    }
}

/// What a `diagnostic: true` route answers, decided before anything is
/// written: the script's stream, or a short error page.
public enum DiagnosticAnswer: Equatable, Sendable {
    /// Write `head`, then perform the script's steps (payload framed as
    /// `chunked` says), no heartbeats, then end the response and close.
    case stream(head: [UInt8], chunked: Bool, script: DiagnosticScript)
    /// A complete response that closes the connection.
    case error(status: Int, page: [UInt8])

    /// `query` without the `?`; `admit` (the limiter) is asked only for a
    /// valid request, and a `.stream` answer holds the slot it gave.
    public static func decide(method: String, version: HTTPVersion, query: String?,
                              admit: () -> DiagnosticLimiter.Decision) -> DiagnosticAnswer {
        guard method == "GET" else {
            return .error(status: 405, page: ErrorPage.response(status: 405, message: "the diagnostic stream answers GET only",
                                                                headers: [("Allow", "GET")]))
        }
        let parameters: DiagnosticScript.Parameters
        switch DiagnosticScript.parse(query: query) {
        case .failure(let error):
            return .error(status: 400, page: ErrorPage.response(status: 400, message: "diagnostic stream: \(error.description)"))
        case .success(let p):
            parameters = p
        }
        if case .refuse(let seconds) = admit() {
            return .error(status: 429, page: ErrorPage.response(
                status: 429, message: "too many diagnostic streams; retry in \(seconds) s", headers: [("Retry-After", "\(seconds)")]))
        }
        let chunked = version == .http11
        // The headers the sidecar gives every event stream, so the path treats it the same.
        var head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache, no-transform\r\n"
            + "X-Accel-Buffering: no\r\n"
        head += chunked ? "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" : "Connection: close\r\n\r\n"
        return .stream(head: Array(head.utf8), chunked: chunked, script: DiagnosticScript(parameters))
    }
}

/// A diagnostic stream in progress: the next step to perform.
public struct DiagnosticRun: Sendable {
    public let script: DiagnosticScript
    public let chunked: Bool
    public var next = 0

    public init(script: DiagnosticScript, chunked: Bool) {
        self.script = script
        self.chunked = chunked
    }
}
