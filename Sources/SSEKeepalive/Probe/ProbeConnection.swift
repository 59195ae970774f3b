#if canImport(Glibc)
import Glibc
#endif

/// The probe's only I/O: one blocking-style client connection over plain
/// POSIX sockets (non-blocking fd + poll for every wait, so every wait is
/// bounded), feeding bytes and CLOCK_MONOTONIC times into a ProbeSession.
/// A single connection does not need libevent.

nonisolated(unsafe) private var probeStopRequested: sig_atomic_t = 0

public enum ProbeConnection {
    /// Nanoseconds on CLOCK_MONOTONIC.
    public static func monotonicNow() -> ProbeTime {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return ProbeTime(ts.tv_sec) * 1_000_000_000 + ProbeTime(ts.tv_nsec)
    }

    public static let connectTimeout: ProbeTime = 10_000_000_000
    /// Longest single poll: how often `progress` is called.
    public static let tick: ProbeTime = 250_000_000

    /// SIGINT and SIGTERM end the probe early (with a report) instead of
    /// killing it; SIGPIPE is ignored.
    public static func installSignalHandlers() {
        signal(SIGPIPE, SIG_IGN)
        for sig in [SIGINT, SIGTERM] {
            signal(sig) { _ in probeStopRequested = 1 }
        }
    }

    /// Runs the probe; `progress(elapsed, record)` is called about every `tick`.
    public static func run(_ options: ProbeOptions, progress: (ProbeTime, ProbeRecord) -> Void = { _, _ in }) -> ProbeRecord {
        let start = monotonicNow()
        func now() -> ProbeTime { monotonicNow() - start }
        let deadline = options.duration
        var session = ProbeSession(url: options.url, durationLimit: deadline)

        // Whether the server offers h2 (what a browser would get) is asked on
        // a connection of its own: the probe itself speaks HTTP/1.1.
        var offeredALPN: String?? = nil
        if options.url.isTLS {
            switch open(options, alpn: ProbeTLSSession.h2First, until: min(deadline, connectTimeout), clock: now) {
            case .failure(let why):
                session.finish(probeStopRequested != 0 ? .interrupted : .connectFailed(why.description), at: now())
                return session.record
            case .success(let (fd, _, info)):
                close(fd)
                offeredALPN = .some(info?.alpn)
            }
        }

        let fd: Int32
        let tls: ProbeTLSSession?
        switch open(options, alpn: ProbeTLSSession.http11, until: min(deadline, now() + connectTimeout), clock: now) {
        case .failure(let why):
            session.finish(probeStopRequested != 0 ? .interrupted : .connectFailed(why.description), at: now())
            return session.record
        case .success(let (socket, t, info)):
            fd = socket
            tls = t
            if var info {
                if let offered = offeredALPN { info.alpn = offered }
                session.tlsEstablished(info)
            }
        }
        defer { close(fd) }
        session.connected(at: now())

        let request = ProbeRequest.bytes(url: options.url, headers: options.headers, lastEventID: options.lastEventID)
        if let why = sendAll(fd, tls, request, until: deadline, clock: now) {
            session.finish(why == "timeout" ? .durationReached : .failed("sending the request: \(why)"), at: now())
            return session.record
        }

        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        var lastProgress: ProbeTime = 0
        while !session.isFinished {
            let t = now()
            if probeStopRequested != 0 { session.finish(.interrupted, at: t); break }
            if t >= deadline { session.finish(.durationReached, at: t); break }
            if t - lastProgress >= tick {
                progress(t, session.record)
                lastProgress = t
            }
            if tls?.pending != true {
                let wait = min(deadline - t, tick - (t - lastProgress))
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ready = poll(&pfd, 1, Int32(max(1, (wait + 999_999) / 1_000_000)))
                if ready < 0 {
                    if errno == EINTR { continue }
                    session.finish(.failed("poll: \(describe(errno))"), at: now())
                    break
                }
                if ready == 0 { continue }
            }
            let outcome: ProbeTLSSession.ReadOutcome
            if let tls {
                outcome = tls.read(into: &buffer)
            } else {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n > 0 { outcome = .data(n) }
                else if n == 0 { outcome = .closed }
                else if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { outcome = .wouldBlock }
                else if errno == ECONNRESET { outcome = .reset }
                else { outcome = .failed("reading: \(describe(errno))") }
            }
            let at = now()
            switch outcome {
            case .data(let n): session.receive(Array(buffer[0..<n]), at: at)
            case .wouldBlock: continue
            case .closed: session.finish(.serverClosed, at: at)
            case .reset: session.finish(.reset, at: at)
            case .failed(let why): session.finish(.failed(why), at: at)
            }
        }
        return session.record
    }

    /// TCP connect (to the --connect-to target if one matches) and, for
    /// https, the TLS handshake with `alpn`.
    static func open(_ options: ProbeOptions, alpn: [UInt8], until deadline: ProbeTime,
                     clock: () -> ProbeTime) -> Result<(Int32, ProbeTLSSession?, ProbeTLSInfo?), ProbeConnectError> {
        let (host, port) = ProbeConnectTo.target(for: options.url, rules: options.connectTo)
        let fd: Int32
        switch connect(host: host, port: port, label: options.url.hostHeader, until: deadline, clock: clock) {
        case .failure(let why): return .failure(why)
        case .success(let socket): fd = socket
        }
        guard options.url.isTLS else { return .success((fd, nil, nil)) }
        do {
            let tls = try ProbeTLSSession(fd: fd, options: options, alpn: alpn)
            switch tls.handshake(options: options, until: deadline, clock: clock, stop: { probeStopRequested != 0 }) {
            case .failure(let why):
                close(fd)
                return .failure(why)
            case .success(let info):
                return .success((fd, tls, info))
            }
        } catch {
            close(fd)
            return .failure(error)
        }
    }

    static func describe(_ code: Int32) -> String { String(cString: strerror(code)) }

    /// Resolves and connects (each address in turn) before `until`.
    static func connect(host: String, port: UInt16, label: String, until deadline: ProbeTime,
                        clock: () -> ProbeTime) -> Result<Int32, ProbeConnectError> {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &result)
        guard status == 0, result != nil else {
            return .failure(ProbeConnectError("cannot resolve \(host): \(String(cString: gai_strerror(status)))"))
        }
        defer { freeaddrinfo(result) }
        var lastError = ProbeConnectError("no address for \(host)")
        var ai = result
        while let info = ai?.pointee {
            ai = info.ai_next
            let fd = socket(info.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            if fd < 0 { lastError = ProbeConnectError("socket: \(describe(errno))"); continue }
            var one: Int32 = 1
            _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            if Glibc.connect(fd, info.ai_addr, info.ai_addrlen) == 0 { return .success(fd) }
            guard errno == EINPROGRESS else {
                lastError = ProbeConnectError("\(label): \(describe(errno))")
                close(fd)
                continue
            }
            var outcome: ProbeConnectError? = ProbeConnectError("\(label): connect timed out")
            while probeStopRequested == 0 {
                let left = deadline - clock()
                if left <= 0 { break }
                var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                let ready = poll(&pfd, 1, Int32(min(left, tick) / 1_000_000 + 1))
                if ready < 0 && errno != EINTR { outcome = ProbeConnectError("poll: \(describe(errno))"); break }
                if ready <= 0 { continue }
                var code: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &length)
                outcome = code == 0 ? nil : ProbeConnectError("\(label): \(describe(code))")
                break
            }
            if probeStopRequested != 0 { outcome = ProbeConnectError("interrupted") }
            if outcome == nil { return .success(fd) }
            lastError = outcome!
            close(fd)
            if probeStopRequested != 0 || clock() >= deadline { break }
        }
        return .failure(lastError)
    }

    /// nil on success, "timeout", or the error.
    static func sendAll(_ fd: Int32, _ tls: ProbeTLSSession?, _ bytes: [UInt8], until deadline: ProbeTime,
                        clock: () -> ProbeTime) -> String? {
        var sent = 0
        while sent < bytes.count {
            if clock() >= deadline || probeStopRequested != 0 { return "timeout" }
            if let tls {
                switch tls.write(bytes[sent...]) {
                case .failure(let why): return why.description
                case .success(let n) where n > 0: sent += n
                case .success:
                    var pfd = pollfd(fd: fd, events: Int16(POLLOUT | POLLIN), revents: 0)
                    _ = poll(&pfd, 1, Int32(tick / 1_000_000))
                }
                continue
            }
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n > 0 { sent += n; continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                _ = poll(&pfd, 1, Int32(tick / 1_000_000))
                continue
            }
            return describe(errno)
        }
        return nil
    }
}

public struct ProbeConnectError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// `sse-keepalive probe`: run, show progress on stderr, print the report on
/// stdout, return the exit status.
public enum ProbeMain {
    public static func run(_ options: ProbeOptions, json: Bool, quiet: Bool) -> Int32 {
        ProbeConnection.installSignalHandlers()
        let tty = isatty(2) != 0
        var shown = false
        var lastLine: ProbeTime = -1
        let record = ProbeConnection.run(options) { elapsed, record in
            guard !quiet else { return }
            let line = ProbeReport.progressLine(elapsed: elapsed, record: record)
            if tty {
                write(2, "\r\u{1B}[K" + line)
                shown = true
            } else if lastLine < 0 || elapsed - lastLine >= 5_000_000_000 {
                // Not a terminal (a log, a pipe): a plain line every 5 s.
                write(2, line + "\n")
                lastLine = elapsed
            }
        }
        if shown { write(2, "\r\u{1B}[K") }
        let analysis = ProbeAnalysis(record)
        write(1, json ? ProbeReport.json(analysis) + "\n" : ProbeReport.text(analysis))
        return analysis.exitStatus
    }

    static func write(_ fd: Int32, _ text: String) {
        var text = text
        text.withUTF8 { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if n <= 0 { if n < 0 && errno == EINTR { continue }; return }
                offset += n
            }
        }
    }
}
