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
    /// The measurements the verdict rests on, in plain words.
    public var evidence: String?

    public init(_ code: String, _ severity: Severity, _ message: String, evidence: String? = nil) {
        self.code = code
        self.severity = severity
        self.message = message
        self.evidence = evidence
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

    /// An observed interval as a config value: to the nearest 100 ms, at least 100 ms.
    public static func interval(observed: ProbeTime) -> TimeSpan {
        TimeSpan(milliseconds: Swift.max(100, Int((observed + 50_000_000) / 100_000_000) * 100))
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
            && path.utf8.allSatisfy { ValueSyntax.isAlnum($0) || "/-._~".utf8.contains($0) }
    }
}

/// What the record means: findings (each a rule over the wire signature,
/// with its evidence), idle timeout, buffering, recommendation, and whether
/// the stream was healthy.
public struct ProbeAnalysis: Sendable {
    public var record: ProbeRecord
    public var gaps: ProbeGaps?
    /// Quiet time between the last byte (or the connect) and the end.
    public var silenceBeforeEnd: ProbeTime?
    /// Set when the stream ended after a quiet gap that looks like a timeout
    /// (for a held response: the time from connecting to the close).
    public var idleTimeout: ProbeTime?
    /// Set when the stream was cut while bytes kept flowing.
    public var lifetimeLimit: ProbeTime?
    /// A hop held the whole response until it closed it.
    public var heldResponse = false
    /// A hop held the head until the first payload: how long after connecting it came.
    public var headHeldFor: ProbeTime?
    /// Comments (heartbeats) already arriving: their median interval.
    public var observedHeartbeat: ProbeTime?
    public var buffering: ProbeBuffering
    /// Set when the stream was the sidecar's diagnostic stream.
    public var diagnostic: ProbeDiagnosticReading?
    public var hops: [ProbeHop]
    public var findings: [ProbeFinding] = []
    public var recommendation: ProbeRecommendation?

    /// The quietest an end can follow and still count as an idle timeout.
    public static let minIdleTimeout: ProbeTime = 1_000_000_000
    /// An earlier silence this much longer than the final one rules out an idle timeout.
    public static let idleTolerance: ProbeTime = 500_000_000
    /// Nothing for this long after connecting counts as held (head or response).
    public static let heldAfter: ProbeTime = 1_000_000_000
    /// Head, payload and close within this span count as "all at once".
    public static let allAtOnce: ProbeTime = 250_000_000
    /// Idle timeouts common on load balancers and CDNs (30-120 s): a run
    /// whose longest silence is shorter cannot rule them out.
    public static let commonIdleTimeouts = (low: 30, high: 120)

    public var healthy: Bool {
        (record.end == .durationReached || (diagnostic?.reachedEnd == true && record.end == .responseComplete))
            && record.head?.isUsableStream == true
            && !findings.contains { $0.severity == .problem }
    }

    public var exitStatus: Int32 { healthy ? 0 : 1 }

    /// The longest silence the stream survived.
    public var longestToleratedSilence: ProbeTime {
        var longest = record.longestReadGap
        if record.end == .durationReached || record.end == .interrupted, let s = silenceBeforeEnd { longest = max(longest, s) }
        return longest
    }

    public init(_ record: ProbeRecord) {
        self.record = record
        gaps = ProbeGaps(times: record.messages.map(\.time))
        buffering = ProbeBuffering(events: record.messages, reads: record.readLog)
        hops = record.head?.hops ?? []
        diagnostic = ProbeDiagnosticReading(record)
        if let endAt = record.endAt {
            silenceBeforeEnd = endAt - (record.lastByteAt ?? record.connectedAt ?? 0)
        }
        if record.commentCount >= 2, let g = ProbeGaps(times: record.messages.filter { $0.kind == .comment }.map(\.time)) {
            observedHeartbeat = g.median
        }
        diagnose()
        recommend()
    }

    private mutating func add(_ code: String, _ severity: ProbeFinding.Severity, _ message: String, evidence: String? = nil) {
        findings.append(ProbeFinding(code, severity, message, evidence: evidence))
    }

    static func s(_ t: ProbeTime) -> String { ProbeFormat.seconds(t) }
    static func rough(_ t: ProbeTime) -> String { ProbeFormat.roughSeconds(t) }

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
        diagnoseTiming()
        diagnoseBuffering()
        if let diagnostic { diagnoseScript(diagnostic) }
        if r.end == .interrupted, let endAt = r.endAt {
            add("interrupted", .note, "interrupted after \(ProbeFormat.seconds(endAt)) s, before --duration ran out")
        }
        if r.head?.isUsableStream == true && r.end == .durationReached && r.messages.isEmpty && r.payloadParsed {
            add("no_events", .note, "no event or comment arrived in \(ProbeFormat.seconds(r.endAt ?? 0)) s")
        }
        if !hops.isEmpty {
            add("intermediaries", .note, "on the path: " + hops.map(\.description).joined(separator: "; "),
                evidence: "named from the response head: " + hops.map(\.evidence).joined(separator: ", "))
        }
        if let tls = r.tls, r.head != nil, !tls.offersH2 {
            add("http1_only", .note, "the server does not offer HTTP/2 (ALPN \(tls.alpn ?? "none")): browsers reach it over "
                + "HTTP/1.1, where each EventSource holds one of at most 6 connections per host name")
        }
    }

    /// When bytes came, and how the stream ended.
    private mutating func diagnoseTiming() {
        let r = record
        let connected = r.connectedAt ?? 0
        let verb = r.end == .reset ? "reset" : "closed"

        // Nothing, not even the head, for a while; then everything with the close.
        if let end = r.end, end.isServerSide, let endAt = r.endAt, let first = r.firstByteAt,
           first - connected >= Self.heldAfter, endAt - first <= Self.allAtOnce {
            heldResponse = true
            idleTimeout = endAt - connected
            let n = Self.rough(endAt - connected)
            let what = r.eventCount + r.commentCount > 0
                ? "\(r.eventCount) event\(r.eventCount == 1 ? "" : "s") and \(r.commentCount) comment\(r.commentCount == 1 ? "" : "s")"
                : "\(r.payloadBytes) payload bytes"
            add("held_response", .problem,
                "nothing, not even the response head, for \(n) s; then everything at once with the close: "
                + "a buffering hop held the whole response, and an idle timeout of about \(n) s behind it cut the stream; "
                + "fix both: no buffering for event streams on that hop (nginx: proxy_buffering off, or X-Accel-Buffering: no "
                + "from the backend) and a heartbeat below \(n) s",
                evidence: "connected at \(Self.s(connected)) s, first byte at \(Self.s(first)) s, \(verb) at \(Self.s(endAt)) s; "
                    + "head, \(what) and the close within \(ProbeFormat.millis(endAt - first))")
            return
        }

        // The head held until the body started.
        if let head = r.headAt, head - connected >= Self.heldAfter, r.firstPayloadAt == head {
            headHeldFor = head - connected
            let n = Self.rough(head - connected)
            add("head_held", .problem,
                "the response head arrived only with the first payload, \(n) s after connecting: a hop holds the head "
                + "until the body starts (Cloudflare does), or the server sends its head late; EventSource's open fires "
                + "\(n) s late; fix: a first comment right after the head (sse-keepalive: heartbeat.on_open)",
                evidence: "connected at \(Self.s(connected)) s; head and first payload in the same read at \(Self.s(head)) s")
        }

        guard let end = r.end, end.isServerSide, let endAt = r.endAt, let silence = silenceBeforeEnd else { return }
        // The diagnostic script ends its own stream when it is done.
        if end == .responseComplete && diagnostic?.reachedEnd == true { return }
        let lifetime = endAt - connected
        let evidence = "last byte at \(Self.s(r.lastByteAt ?? connected)) s, \(verb) at \(Self.s(endAt)) s; "
            + "longest earlier silence \(Self.s(r.longestReadGap)) s, \(r.reads) reads"
        if silence >= Self.minIdleTimeout && silence + Self.idleTolerance >= r.longestReadGap {
            idleTimeout = silence
            let n = Self.rough(silence)
            add("idle_timeout", .problem, "\(verb) after \(n) s of silence: an idle timeout of about \(n) s on the path",
                evidence: evidence)
        } else if silence >= Self.minIdleTimeout {
            add("stream_ended", .problem,
                "\(verb) after \(Self.s(lifetime)) s, \(Self.rough(silence)) s after the last byte; not an idle timeout "
                + "(the path had tolerated \(Self.rough(r.longestReadGap)) s of silence): "
                + "a stream lifetime limit, a restart or the server itself ended it", evidence: evidence)
        } else if r.reads >= 3 {
            lifetimeLimit = lifetime
            let n = Self.rough(lifetime)
            add("lifetime_limit", .problem,
                "\(verb) after \(n) s while bytes kept flowing (\(ProbeFormat.millis(silence)) after the last byte): "
                + "a stream lifetime limit of about \(n) s on the path, or the server ended the stream; heartbeats do not "
                + "prevent it, EventSource reconnects after its retry delay", evidence: evidence)
        } else {
            add("stream_ended", .problem,
                "\(verb) after \(Self.s(lifetime)) s, \(ProbeFormat.millis(silence)) after the last byte (not an idle timeout): "
                + "a stream lifetime limit, a restart or the server itself ended it", evidence: evidence)
        }
    }

    private mutating func diagnoseBuffering() {
        if buffering.detected {
            var detail = ""
            if buffering.method == "timestamps", let clock = buffering.clock, let late = buffering.lateness {
                detail = "\(late.late) of \(late.samples) events were held \(Self.rough(ProbeLateness.lateThreshold)) s "
                    + "or more, up to \(Self.rough(late.maxDelay)) s, judged by their send times in \(clock.description)"
            } else {
                let biggest = buffering.bursts.map(\.count).max() ?? 0
                detail = "\(buffering.bursts.count) bursts of up to \(biggest) events within "
                    + "\(ProbeFormat.millis(ProbeBurst.tight)) after quiet gaps"
            }
            var message = "events arrive in bursts: something on the path buffers the stream; "
                + "turn buffering off for event streams (nginx: proxy_buffering off, or X-Accel-Buffering: no from the backend)"
            if let size = buffering.burstBytes {
                message += "; the bursts carry about \(size) bytes each, the size of the hop's buffer"
            }
            if record.head?.isContentEncoded == true {
                message += "; the stream is also compressed, and a compressor holds output until its block fills"
            }
            add("buffering", .problem, message, evidence: detail)
        } else if buffering.bursts.count == 1, let b = buffering.bursts.first {
            add("burst", .note, "one burst of \(b.count) events after \(Self.rough(b.gapBefore)) s of quiet: "
                + "the server's own batching or a buffer on the path; probe longer to tell")
        }
    }

    /// The diagnostic stream's own measurements.
    private mutating func diagnoseScript(_ d: ProbeDiagnosticReading) {
        let sizes = "\(d.sizes.count) events of growing size sent every few hundred ms"
        if let threshold = d.bufferingThreshold {
            add("buffer_threshold", .problem,
                "the path held the diagnostic stream until about \(threshold) bytes had been sent: a buffer of that size "
                + "sits on the path; events smaller than that wait for the next ones",
                evidence: sizes + "; the first on time was the one that brought the total to \(threshold) bytes")
        } else if let above = d.thresholdAbove {
            add("buffer_threshold", .problem,
                "the path held every event of the diagnostic stream, \(above) bytes in all: it buffers more than that",
                evidence: sizes + ", none on time")
        } else if !d.sizes.isEmpty {
            add("buffer_threshold", .note, "nothing held: even the first, smallest event of the diagnostic stream arrived on time",
                evidence: sizes)
        }
        var words = ""
        if let longest = d.longestSurvivedSilence { words = "the path carried silences up to \(Self.rough(ProbeTime(longest) * 1_000_000)) s" }
        if let fatal = d.fatalSilence {
            words += (words.isEmpty ? "" : "; ") + "the stream was cut during the \(Self.rough(ProbeTime(fatal) * 1_000_000)) s silence"
        } else if d.reachedEnd {
            words += " (all of them: the script ran to its end)"
        }
        if !words.isEmpty && !d.silences.isEmpty {
            add("silences", .note, words, evidence: "silences announced (ms): "
                + d.silences.map(String.init).joined(separator: ", ") + "; survived: \(d.survivedSilences)")
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
            let coding = head.contentEncoding ?? ""
            let transform = head.forbidsTransform ? "Cache-Control has no-transform"
                : "Cache-Control has no no-transform, so any hop may compress or recompress the stream"
            var message = "Content-Encoding: \(coding) on the stream: a compressing hop may hold events until its block fills "
                + "(this run's timing shows whether it did); sse-keepalive forwards compressed streams without heartbeats; "
                + "do not compress text/event-stream (nginx: leave it out of gzip_types)"
            var evidence = transform
            if let decoded = record.decodedCoding {
                evidence = "decoded \(decoded): \(record.payloadBytes) bytes gave \(record.decodedBytes), "
                    + "\(record.eventCount) events counted; " + transform
                if let why = record.decodeError { evidence += "; decoding stopped: \(why)" }
            } else {
                message += "; the probe cannot decode \(coding), so events were not counted"
            }
            add("content_encoding", .note, message, evidence: evidence)
        }
        if head.isUsableStream && !head.forbidsCaching {
            let what = head.cacheControl.map { "Cache-Control: \($0)" } ?? "no Cache-Control"
            add("cache_control", .note, "\(what): a CDN or cache may hold the stream; send Cache-Control: no-cache")
        }
        if let xab = head.xAccelBuffering, xab.trimmingOWS().asciiCaseInsensitiveEquals("yes") {
            add("x_accel_buffering", .note, "X-Accel-Buffering: yes asks an nginx in front to buffer the stream")
        }
    }

    /// Below the smallest idle timeout measured or documented for a hop on
    /// the path; never above heartbeats already seen unless the path was
    /// seen to tolerate longer silences.
    private mutating func recommend() {
        guard let head = record.head, head.isUsableStream else { return }
        // The per-route form names the probed stream's path; not the diagnostic route's.
        let path = diagnostic == nil ? String(record.target.prefix { $0 != "?" }) : nil
        var limits: [(ProbeTime, String)] = []
        if let idleTimeout {
            limits.append((idleTimeout, "the idle timeout of about \(Self.rough(idleTimeout)) s measured on this path"))
        }
        for hop in hops where hop.limitKind == .idle {
            if let limit = hop.limit, let name = hop.limitName {
                limits.append((limit, "\(hop.name)'s documented default \(name) of \(Self.rough(limit)) s"))
            }
        }
        var hb: TimeSpan
        var reason: String
        if let (limit, why) = limits.min(by: { $0.0 < $1.0 }) {
            hb = ProbeRecommendation.heartbeat(below: limit)
            reason = "below \(why), with margin"
            if limit < 2 * Self.minIdleTimeout {
                reason += "; an idle timeout this short leaves little margin: raise it on the path if you can"
            }
        } else {
            hb = ProbeRecommendation.defaultHeartbeat
            let longest = longestToleratedSilence
            let ran = ProbeFormat.seconds(record.endAt ?? 0, decimals: 1)
            if longest < ProbeTime(Self.commonIdleTimeouts.high) * 1_000_000_000 {
                reason = "the probe ran \(ran) s with silences of at most \(Self.rough(longest)) s: too short to see the "
                    + "\(Self.commonIdleTimeouts.low)-\(Self.commonIdleTimeouts.high) s idle timeouts common on load balancers "
                    + "and CDNs; the default \(hb) stays below them"
            } else {
                reason = "no idle timeout showed up in \(ran) s (the path tolerated \(Self.rough(longest)) s of silence); "
                    + "the default \(hb) keeps a wide margin"
            }
        }
        if heldResponse {
            reason += "; a heartbeat alone does not reach the client while a hop holds the response: turn its buffering off too"
        }
        if let observedHeartbeat {
            let observed = ProbeRecommendation.interval(observed: observedHeartbeat)
            let tolerated = TimeSpan(milliseconds: Int(longestToleratedSilence / 100_000_000) * 100)
            let cap = Swift.max(observed, tolerated)
            reason += "; comments (heartbeats) already arrive about every \(Self.rough(observedHeartbeat)) s"
            if hb > cap {
                hb = cap
                reason += " and the path was not seen to tolerate longer silences than \(Self.rough(longestToleratedSilence)) s, "
                    + "so do not raise it beyond \(cap)"
            }
        }
        if let lifetimeLimit {
            reason += "; the stream was also cut after \(Self.rough(lifetimeLimit)) s while busy, which no heartbeat prevents"
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
