/// Inter-arrival gaps of events and comments.
public struct ProbeGaps: Equatable, Sendable {
    public var count: Int
    public var min: ProbeTime
    public var median: ProbeTime
    public var max: ProbeTime

    public init(count: Int, min: ProbeTime, median: ProbeTime, max: ProbeTime) {
        self.count = count
        self.min = min
        self.median = median
        self.max = max
    }

    /// nil with fewer than two arrivals. The median of an even count is the
    /// mean of the two middle gaps.
    public init?(times: [ProbeTime]) {
        guard times.count >= 2 else { return nil }
        let gaps = zip(times, times.dropFirst()).map { $1 - $0 }.sorted()
        let mid = gaps.count / 2
        count = gaps.count
        min = gaps.first!
        max = gaps.last!
        median = gaps.count % 2 == 1 ? gaps[mid] : (gaps[mid - 1] + gaps[mid]) / 2
    }
}

public struct ProbeFinding: Equatable, Sendable {
    public enum Severity: String, Sendable {
        /// Makes the probe unhealthy (exit 1).
        case problem
        /// Worth knowing; does not change the exit status.
        case note
    }

    /// Stable name for --json.
    public var code: String
    public var severity: Severity
    public var message: String

    public init(_ code: String, _ severity: Severity, _ message: String) {
        self.code = code
        self.severity = severity
        self.message = message
    }
}

/// The heartbeat to configure and the config that does it.
public struct ProbeRecommendation: Equatable, Sendable {
    public var heartbeat: TimeSpan
    public var reason: String
    /// sse-keepalive.yaml lines.
    public var config: String

    public static let defaultHeartbeat = TimeSpan.seconds(15)

    /// Below an idle timeout with margin: half of it, at most 15 s, rounded
    /// down to whole seconds, at least 1 s.
    public static func heartbeat(below idleTimeout: ProbeTime) -> TimeSpan {
        let halfSeconds = Int(idleTimeout / 2 / 1_000_000_000)
        return .seconds(Swift.max(1, Swift.min(defaultHeartbeat.milliseconds / 1000, halfSeconds)))
    }

    /// The top-level setting, and the per-route form when the stream has a path.
    public static func config(heartbeat: TimeSpan, path: String?) -> String {
        var out = "heartbeat:\n  interval: \(heartbeat)\n"
        if let path, path != "/", isRoutePath(path) {
            out += "# or for this stream only:\nroutes:\n  - path: \(path)\n    heartbeat: \(heartbeat)\n"
        }
        return out
    }

    /// A path the config accepts as a plain YAML scalar: "/" and unreserved
    /// characters, no "//", no trailing "/".
    static func isRoutePath(_ path: String) -> Bool {
        path.hasPrefix("/") && !path.hasSuffix("/") && !path.contains("//")
            && path.utf8.allSatisfy { ConfigLoader.isAlnum($0) || "/-._~".utf8.contains($0) }
    }
}

/// What the record means: findings, idle timeout, buffering, recommendation,
/// and whether the stream was healthy.
public struct ProbeAnalysis: Sendable {
    public var record: ProbeRecord
    public var gaps: ProbeGaps?
    /// Quiet time between the last byte (or the connect) and the end.
    public var silenceBeforeEnd: ProbeTime?
    /// Set when the stream ended after a quiet gap that looks like a timeout.
    public var idleTimeout: ProbeTime?
    public var buffering: ProbeBuffering
    public var findings: [ProbeFinding] = []
    public var recommendation: ProbeRecommendation?

    /// The quietest an end can follow and still count as an idle timeout.
    public static let minIdleTimeout: ProbeTime = 1_000_000_000
    /// An earlier silence this much longer than the final one rules out an idle timeout.
    public static let idleTolerance: ProbeTime = 500_000_000

    public var healthy: Bool {
        record.end == .durationReached && record.head?.isUsableStream == true
            && !findings.contains { $0.severity == .problem }
    }

    public var exitStatus: Int32 { healthy ? 0 : 1 }

    public init(_ record: ProbeRecord) {
        self.record = record
        gaps = ProbeGaps(times: record.messages.map(\.time))
        buffering = ProbeBuffering(events: record.messages)
        if let endAt = record.endAt {
            silenceBeforeEnd = endAt - (record.lastByteAt ?? record.connectedAt ?? 0)
        }
        diagnose()
        recommend()
    }

    private mutating func add(_ code: String, _ severity: ProbeFinding.Severity, _ message: String) {
        findings.append(ProbeFinding(code, severity, message))
    }

    private mutating func diagnose() {
        let r = record
        switch r.end {
        case .connectFailed(let why)?:
            add("connect_failed", .problem, "could not connect to \(r.url): \(why)")
            return
        case .failed(let why)?:
            add("failed", .problem, why)
        default:
            break
        }
        if let head = r.head { diagnoseHead(head) }

        if let end = r.end, end.isServerSide, let endAt = r.endAt, let silence = silenceBeforeEnd {
            let lifetime = ProbeFormat.seconds(endAt - (r.connectedAt ?? 0))
            let verb = end == .reset ? "reset" : "closed"
            if silence >= Self.minIdleTimeout && silence + Self.idleTolerance >= r.longestReadGap {
                idleTimeout = silence
                let n = ProbeFormat.roughSeconds(silence)
                add("idle_timeout", .problem, "\(verb) after \(n) s of silence: an idle timeout of about \(n) s on the path")
            } else if silence >= Self.minIdleTimeout {
                add("stream_ended", .problem,
                    "\(verb) after \(lifetime) s, \(ProbeFormat.roughSeconds(silence)) s after the last byte; not an idle timeout "
                    + "(the path had tolerated \(ProbeFormat.roughSeconds(r.longestReadGap)) s of silence): "
                    + "a stream lifetime limit, a restart or the server itself ended it")
            } else {
                add("stream_ended", .problem,
                    "\(verb) after \(lifetime) s, \(ProbeFormat.millis(silence)) after the last byte (not an idle timeout): "
                    + "a stream lifetime limit, a restart or the server itself ended it")
            }
        }
        if r.end == .interrupted, let endAt = r.endAt {
            add("interrupted", .note, "interrupted after \(ProbeFormat.seconds(endAt)) s, before --duration ran out")
        }

        if buffering.detected {
            var detail = ""
            if buffering.method == "timestamps", let clock = buffering.clock, let late = buffering.lateness {
                detail = "\(late.late) of \(late.samples) events were held \(ProbeFormat.roughSeconds(ProbeLateness.lateThreshold)) s "
                    + "or more, up to \(ProbeFormat.roughSeconds(late.maxDelay)) s, judged by their send times in \(clock.description)"
            } else {
                let biggest = buffering.bursts.map(\.count).max() ?? 0
                detail = "\(buffering.bursts.count) bursts of up to \(biggest) events within "
                    + "\(ProbeFormat.millis(ProbeBurst.tight)) after quiet gaps"
            }
            add("buffering", .problem, "events arrive in bursts: something on the path buffers the stream (\(detail)); "
                + "turn buffering off for event streams (nginx: proxy_buffering off, or X-Accel-Buffering: no from the backend)")
        } else if buffering.bursts.count == 1, let b = buffering.bursts.first {
            add("burst", .note, "one burst of \(b.count) events after \(ProbeFormat.roughSeconds(b.gapBefore)) s of quiet: "
                + "the server's own batching or a buffer on the path; probe longer to tell")
        }
        if r.head?.isUsableStream == true && r.end == .durationReached && r.messages.isEmpty && r.payloadParsed {
            add("no_events", .note, "no event or comment arrived in \(ProbeFormat.seconds(r.endAt ?? 0)) s")
        }
    }

    private mutating func diagnoseHead(_ head: ProbeHeadAnalysis) {
        switch head.status {
        case 200:
            break
        case 204:
            add("status", .problem, "status 204: the server tells EventSource to stop reconnecting")
        case 300...399:
            let target = head.location.map { " to \($0)" } ?? ""
            add("status", .problem, "status \(head.status) \(head.reason): a redirect\(target); EventSource follows it, probe does not: probe the target URL")
        default:
            add("status", .problem, "status \(head.status) \(head.reason): EventSource fails the connection on anything but 200")
        }
        if head.status == 200 && !head.isEventStream {
            let type = head.contentType.map { "Content-Type is \"\($0)\"" } ?? "no Content-Type"
            add("not_event_stream", .problem, "\(type), not text/event-stream: EventSource fails the connection")
        }
        if let why = head.framingError {
            add("framing", .problem, "invalid response framing: \(why)")
        }
        if let length = head.contentLength, head.isEventStream {
            add("content_length", .problem, "Content-Length: \(length) on an event stream: the response ends after that many "
                + "bytes, and a proxy may hold it until it is complete")
        }
        if head.isContentEncoded {
            add("content_encoding", .problem, "Content-Encoding: \(head.contentEncoding ?? "") on the stream: a compressor holds "
                + "output until its block fills, so events arrive late; do not compress text/event-stream "
                + "(nginx: leave it out of gzip_types; sse-keepalive drops Accept-Encoding on event-stream requests); "
                + "the probe did not decode the payload, so events were not counted")
        }
        if head.isUsableStream && !head.forbidsCaching {
            let what = head.cacheControl.map { "Cache-Control: \($0)" } ?? "no Cache-Control"
            add("cache_control", .note, "\(what): a CDN or cache may hold the stream; send Cache-Control: no-cache")
        }
        if let xab = head.xAccelBuffering, xab.trimmingOWS().asciiCaseInsensitiveEquals("yes") {
            add("x_accel_buffering", .note, "X-Accel-Buffering: yes asks an nginx in front to buffer the stream")
        }
    }

    private mutating func recommend() {
        guard let head = record.head, head.isUsableStream else { return }
        let path = String(record.target.prefix { $0 != "?" })
        if let idleTimeout {
            let hb = ProbeRecommendation.heartbeat(below: idleTimeout)
            var reason = "below the idle timeout of about \(ProbeFormat.roughSeconds(idleTimeout)) s, with margin"
            if idleTimeout < 2 * Self.minIdleTimeout {
                reason += "; an idle timeout this short leaves little margin: raise it on the path if you can"
            }
            recommendation = ProbeRecommendation(heartbeat: hb, reason: reason,
                                                 config: ProbeRecommendation.config(heartbeat: hb, path: path))
            return
        }
        let hb = ProbeRecommendation.defaultHeartbeat
        var reason = "no idle timeout showed up"
        if record.end == .durationReached, let endAt = record.endAt {
            let longest = Swift.max(record.longestReadGap, silenceBeforeEnd ?? 0)
            reason += " in \(ProbeFormat.seconds(endAt)) s (longest silence \(ProbeFormat.roughSeconds(longest)) s)"
        }
        reason += "; the default \(hb) stays below the 30-60 s idle timeouts common on load balancers and proxies"
        if record.commentCount >= 2, let gaps = ProbeGaps(times: record.messages.filter { $0.kind == .comment }.map(\.time)) {
            reason += "; comments (heartbeats) already arrive about every \(ProbeFormat.roughSeconds(gaps.median)) s"
        }
        recommendation = ProbeRecommendation(heartbeat: hb, reason: reason, config: ProbeRecommendation.config(heartbeat: hb, path: path))
    }
}

/// Number formatting without Foundation.
public enum ProbeFormat {
    /// Seconds with `decimals` decimals (rounded half up), e.g. "2.004".
    public static func seconds(_ ns: ProbeTime, decimals: Int = 3) -> String {
        var scale: Int64 = 1
        for _ in 0..<decimals { scale *= 10 }
        let unit = 1_000_000_000 / scale
        let negative = ns < 0
        let rounded = (abs(ns) + unit / 2) / unit
        let whole = rounded / scale
        var text = "\(negative ? "-" : "")\(whole)"
        if decimals > 0 {
            let frac = String(rounded % scale)
            text += "." + String(repeating: "0", count: decimals - frac.count) + frac
        }
        return text
    }

    /// One decimal below 10 s, whole seconds above: "2.0", "14.7", "31".
    public static func roughSeconds(_ ns: ProbeTime) -> String {
        ns < 9_950_000_000 ? seconds(ns, decimals: 1) : seconds(ns, decimals: 0)
    }

    /// "250 ms".
    public static func millis(_ ns: ProbeTime) -> String {
        "\((ns + 500_000) / 1_000_000) ms"
    }
}
