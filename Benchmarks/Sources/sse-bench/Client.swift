import CLibevent
#if canImport(Glibc)
import Glibc
#endif

/// The load generator: N concurrent streams (or a churn of short requests)
/// on one libevent loop, raw non-blocking sockets, one shared read buffer.
/// Responses are de-chunked and the SSE payload parsed incrementally: only the
/// first bytes of each line are looked at byte by byte, the rest is skipped
/// with memchr.
final class Client: @unchecked Sendable {
    struct Options {
        var target = "127.0.0.1:8080"
        var path = "/idle"
        var streams = 100
        var duration = 10.0
        var warmup = 0.0
        var sources = "127.0.0.2-127.0.0.50"
        var connectConcurrency = 200
        var connectTimeout = 60.0
        var churn = false
        /// Churn of event streams: each connection ends at its first event.
        var firstEvent = false
        var connections = 10_000
        var concurrency = 32
        var label = ""
    }

    enum Phase { case connecting, warmup, measuring, done }

    let options: Options
    let base: OpaquePointer
    let target: sockaddr_in
    let sources: [in_addr]
    let request: [UInt8]
    let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 * 1024, alignment: 64)

    private(set) var phase = Phase.connecting
    private var conns: [ClientConn?] = []
    private var nextIndex = 0
    private var inflight = 0
    private var opened = 0
    private var failed = 0
    private var completed = 0
    var errors: [String: Int] = [:]
    private var driver: OpaquePointer?
    private let startedAt = Net.monotonicNanos()
    private var phaseStartedAt = Net.monotonicNanos()
    private var connectSeconds = 0.0

    /// Time of the current read (one clock read per read call).
    var now: UInt64 = 0
    var totals = Totals()
    private var windowStart = Totals()
    var latency = Histogram()

    struct Totals {
        var events: UInt64 = 0
        var heartbeats: UInt64 = 0
        var bytes: UInt64 = 0
        var payloadBytes: UInt64 = 0
        var closedEarly = 0
        var badStatus = 0
    }

    init(options: Options) {
        guard let target = Net.endpoint(options.target) else { fail("bad --target \(options.target) (want IPv4 HOST:PORT)") }
        guard Net.isLoopback(target.sin_addr) else { fail("--target must be a loopback address (127.0.0.0/8)") }
        guard let sources = Net.sourceRange(options.sources), sources.allSatisfy(Net.isLoopback) else {
            fail("bad --sources \(options.sources) (want loopback A-B)")
        }
        guard let base = event_base_new() else { fail("cannot create an event base") }
        self.options = options
        self.base = base
        self.target = target
        self.sources = sources
        let host = options.target
        self.request = Array("GET \(options.path) HTTP/1.1\r\nHost: \(host)\r\nAccept: \(options.churn && !options.firstEvent ? "*/*" : "text/event-stream")\r\nUser-Agent: sse-bench\r\n\r\n".utf8)
    }

    var measuring: Bool { phase == .measuring }

    func run() -> Never {
        sse_ignore_sigpipe()
        let limit = Net.raiseFileLimit()
        let wanted = options.churn ? options.concurrency : options.streams
        if wanted + 64 > limit { fail("\(wanted) connections need more than the fd limit \(limit)") }
        conns = Array(repeating: nil, count: options.churn ? options.concurrency : options.streams)
        let context = Unmanaged.passUnretained(self).toOpaque()
        driver = event_new(base, -1, Int16(EV_PERSIST), clientDrive, context)
        var tick = timeval(tv_sec: 0, tv_usec: 10_000)
        event_add(driver, &tick)
        if options.churn {
            phase = .measuring
            phaseStartedAt = Net.monotonicNanos()
            for slot in 0..<options.concurrency { startChurn(slot: slot) }
        } else {
            fillConnects()
        }
        // Bounded in time whatever happens: connect timeout + warmup + duration + slack.
        var hardLimit = timeval(tv_sec: Int(options.connectTimeout + options.warmup + options.duration) + 30, tv_usec: 0)
        event_base_loopexit(base, &hardLimit)
        event_base_dispatch(base)
        if phase != .done { finish() }
        exit(0)
    }

    // MARK: Streams

    private func fillConnects() {
        while phase == .connecting, inflight < options.connectConcurrency, nextIndex < options.streams {
            let index = nextIndex
            nextIndex += 1
            open(slot: index, source: sources[index % sources.count])
        }
    }

    private func open(slot: Int, source: in_addr) {
        let fd = Net.connect(to: target, from: source)
        if fd < 0 {
            noteError(-fd)
            failed += 1
            return
        }
        let conn = ClientConn(client: self, fd: fd, slot: slot)
        conns[slot] = conn
        inflight += 1
        conn.started = Net.monotonicNanos()
        event_add(conn.event, nil)
    }

    /// A stream's response head arrived (200 or not).
    func headReceived(_ conn: ClientConn, ok: Bool) {
        if options.churn { return }
        inflight -= 1
        if ok { opened += 1 } else { failed += 1 }
    }

    /// A connection ended (error, EOF, or churn completion).
    func closed(_ conn: ClientConn, completedRequest: Bool, error: Int32) {
        conns[conn.slot] = nil
        if error != 0 { noteError(error) }
        if options.churn {
            if completedRequest {
                completed += 1
                if measuring { latency.record(Net.monotonicNanos() - conn.started) }
            } else {
                failed += 1
            }
            if phase == .measuring { startChurn(slot: conn.slot) }
            return
        }
        if !conn.headSeen {
            inflight -= 1
            failed += 1
        } else if phase != .done {
            totals.closedEarly += 1
        }
    }

    func noteError(_ code: Int32) {
        let name = code == -1 ? "bad-response" : Net.describe(code)
        errors[name, default: 0] += 1
    }

    // MARK: Churn

    private var churnStarted = 0

    private func startChurn(slot: Int) {
        // Bounded in count and time.
        guard churnStarted < options.connections, phase == .measuring else { return }
        churnStarted += 1
        open(slot: slot, source: sources[churnStarted % sources.count])
    }

    // MARK: Phases

    fileprivate func drive() {
        let t = Net.monotonicNanos()
        let inPhase = Double(t - phaseStartedAt) / 1e9
        switch phase {
        case .connecting:
            fillConnects()
            let done = opened + failed >= options.streams
            if done || inPhase > options.connectTimeout {
                connectSeconds = inPhase
                var j = JSON()
                j.add("phase", "open")
                j.add("streams_open", opened)
                j.add("failed", failed)
                j.add("connect_s", connectSeconds)
                emit(j.text)
                phase = options.warmup > 0 ? .warmup : .measuring
                phaseStartedAt = t
                startWindow()
            }
        case .warmup:
            if inPhase >= options.warmup {
                phase = .measuring
                phaseStartedAt = t
                startWindow()
            }
        case .measuring:
            if options.churn {
                if inPhase >= options.duration || (completed + failed >= options.connections) { finish() }
            } else if inPhase >= options.duration {
                finish()
            }
        case .done:
            break
        }
    }

    private func startWindow() {
        windowStart = totals
        latency.reset()
        if phase == .measuring { emit("{\"phase\":\"measuring\"}") }
    }

    private func finish() {
        let t = Net.monotonicNanos()
        let window = max(Double(t - phaseStartedAt) / 1e9, 1e-9)
        let prior = phase
        phase = .done
        var j = JSON()
        j.add("mode", options.churn ? (options.firstEvent ? "stream-churn" : "churn") : "streams")
        if !options.label.isEmpty { j.add("label", options.label) }
        j.add("target", options.target)
        j.add("path", options.path)
        if options.churn {
            j.add("connections", completed)
            j.add("failed", failed)
            j.add("duration_s", window)
            j.add("conn_per_s", Double(completed) / window)
            j.add("request_latency", raw: latency.json)
        } else {
            var perStreamMin = Int.max, open = 0
            for case let conn? in conns where conn.headSeen {
                open += 1
                perStreamMin = min(perStreamMin, conn.heartbeats)
            }
            let events = totals.events - windowStart.events
            let bytes = totals.bytes - windowStart.bytes
            j.add("streams", options.streams)
            j.add("streams_open", opened)
            j.add("streams_open_at_end", open)
            j.add("failed", failed)
            j.add("closed_early", totals.closedEarly)
            j.add("connect_s", connectSeconds)
            j.add("duration_s", prior == .measuring ? window : 0)
            j.add("events", events)
            j.add("events_per_s", Double(events) / window)
            j.add("heartbeats", totals.heartbeats)
            j.add("heartbeats_window", totals.heartbeats - windowStart.heartbeats)
            j.add("heartbeats_per_stream", opened > 0 ? Double(totals.heartbeats) / Double(opened) : 0)
            j.add("min_heartbeats_per_stream", open > 0 ? perStreamMin : 0)
            j.add("bytes", bytes)
            j.add("payload_bytes", totals.payloadBytes - windowStart.payloadBytes)
            j.add("mb_per_s", Double(bytes) / window / 1e6)
            j.add("latency", raw: latency.json)
        }
        j.add("bad_status", totals.badStatus)
        j.add("errors", raw: "{" + errors.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",") + "}")
        j.add("elapsed_s", Double(t - startedAt) / 1e9)
        emit(j.text)
        for case let conn? in conns { conn.free() }
        conns.removeAll()
        event_base_loopbreak(base)
    }
}

/// One client connection: HTTP response head, then a de-chunker feeding the SSE line scanner.
final class ClientConn {
    enum State { case connecting, head, body, done }
    enum Framing { case chunked, length, close }

    unowned let client: Client
    let fd: Int32
    let slot: Int
    var event: OpaquePointer!
    var state = State.connecting
    var headSeen = false
    var started: UInt64 = 0
    var heartbeats = 0
    private var head: [UInt8] = []
    private var framing = Framing.close
    private var remaining = 0
    private var isStream = false
    private var freed = false

    // Chunked decoder.
    private enum ChunkState: UInt8 { case size, ext, data, dataEnd, trailer }
    private var chunkState = ChunkState.size
    private var chunkSize = 0
    private var trailerLineEmpty = true

    // SSE line scanner.
    private enum LineKind: UInt8 { case start, prefix, digits, data, comment, other, carriageReturn }
    private var lineKind = LineKind.start
    private var matchPos = 0
    private var lineTs: UInt64 = 0
    private var eventHasData = false
    private var eventTs: UInt64 = 0
    private static let dataPrefix: [UInt8] = Array("data: t=".utf8)

    init(client: Client, fd: Int32, slot: Int) {
        self.client = client
        self.fd = fd
        self.slot = slot
        let context = Unmanaged.passUnretained(self).toOpaque()
        event = event_new(client.base, fd, Int16(EV_WRITE | EV_PERSIST), clientConnEvent, context)
    }

    func free() {
        guard !freed else { return }
        freed = true
        event_free(event)
        Glibc.close(fd)
    }

    private func end(completed: Bool, error: Int32) {
        guard !freed else { return }
        state = .done
        free()
        client.closed(self, completedRequest: completed, error: error)
    }

    fileprivate func ready(_ events: Int16) {
        if state == .connecting {
            let code = Net.socketError(fd)
            if code != 0 { end(completed: false, error: code); return }
            let sent = client.request.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if sent != client.request.count { end(completed: false, error: sent < 0 ? sse_errno() : EIO); return }
            state = .head
            event_del(event)
            let context = Unmanaged.passUnretained(self).toOpaque()
            event_assign(event, client.base, fd, Int16(EV_READ | EV_PERSIST), clientConnEvent, context)
            event_add(event, nil)
            return
        }
        let buffer = client.readBuffer
        // Bounded per callback so one busy stream cannot starve the others.
        for _ in 0..<8 {
            let n = read(fd, buffer.baseAddress, buffer.count)
            if n == 0 {
                end(completed: framing == .close && state == .body && !isStream, error: 0)
                return
            }
            if n < 0 {
                let code = sse_errno()
                if code == EAGAIN || code == EINTR { return }
                end(completed: false, error: code)
                return
            }
            client.now = Net.monotonicNanos()
            client.totals.bytes &+= UInt64(n)
            consume(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            if freed { return }
            if n < buffer.count { return }
        }
    }

    private func consume(_ bytes: UnsafeRawBufferPointer) {
        var rest = bytes
        if state == .head {
            head.append(contentsOf: rest)
            guard let end = headEnd() else {
                if head.count > 16 * 1024 { self.end(completed: false, error: -1) }
                return
            }
            let body = Array(head[end...])
            head.removeSubrange(end...)
            guard parseHead() else {
                client.totals.badStatus += 1
                headSeen = false
                self.end(completed: false, error: -1)
                return
            }
            headSeen = true
            head = []
            state = .body
            client.headReceived(self, ok: true)
            body.withUnsafeBytes { feedBody($0) }
            return
        }
        if state == .body {
            rest = bytes
            feedBody(rest)
        }
    }

    private func headEnd() -> Int? {
        guard head.count >= 4 else { return nil }
        for i in 3..<head.count where head[i] == 10 && head[i - 1] == 13 && head[i - 2] == 10 && head[i - 3] == 13 {
            return i + 1
        }
        return nil
    }

    /// Status 200, framing from Transfer-Encoding / Content-Length.
    private func parseHead() -> Bool {
        let text = String(decoding: head, as: UTF8.self)
        let lines = text.split(separator: "\r\n", omittingEmptySubsequences: true)
        guard let status = lines.first, status.hasPrefix("HTTP/1."), status.split(separator: " ").count >= 2,
              status.split(separator: " ")[1] == "200" else { return false }
        framing = .close
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingPrefixSpaces.lowercased()
            if name == "transfer-encoding", value.contains("chunked") { framing = .chunked }
            if name == "content-length", framing != .chunked, let n = Int(value) { framing = .length; remaining = n }
            if name == "content-type", value.hasPrefix("text/event-stream") { isStream = true }
        }
        if framing == .length && remaining == 0 { state = .done }
        return true
    }

    private func feedBody(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 || (framing == .length && remaining == 0) else { return }
        switch framing {
        case .close:
            payload(bytes)
        case .length:
            let n = min(remaining, bytes.count)
            payload(UnsafeRawBufferPointer(rebasing: bytes[0..<n]))
            remaining -= n
            if remaining == 0 { end(completed: true, error: 0) }
        case .chunked:
            dechunk(bytes)
        }
    }

    private func dechunk(_ bytes: UnsafeRawBufferPointer) {
        var i = 0
        let n = bytes.count
        while i < n {
            switch chunkState {
            case .data:
                let take = min(chunkSize, n - i)
                payload(UnsafeRawBufferPointer(rebasing: bytes[i..<(i + take)]))
                chunkSize -= take
                i += take
                if chunkSize == 0 { chunkState = .dataEnd }
            case .size:
                let b = bytes[i]
                i += 1
                switch b {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): chunkSize = chunkSize * 16 + Int(b - 48)
                case UInt8(ascii: "a")...UInt8(ascii: "f"): chunkSize = chunkSize * 16 + Int(b - 87)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): chunkSize = chunkSize * 16 + Int(b - 55)
                case UInt8(ascii: ";"): chunkState = .ext
                case 13: break
                case 10: sizeLineDone()
                default: end(completed: false, error: -1); return
                }
            case .ext:
                if bytes[i] == 10 { sizeLineDone() }
                i += 1
            case .dataEnd:
                if bytes[i] == 10 { chunkState = .size; chunkSize = 0 }
                i += 1
            case .trailer:
                let b = bytes[i]
                i += 1
                if b == 10 {
                    if trailerLineEmpty { end(completed: !isStream, error: 0); return }
                    trailerLineEmpty = true
                } else if b != 13 {
                    trailerLineEmpty = false
                }
            }
            if freed { return }
        }
    }

    private func sizeLineDone() {
        if chunkSize == 0 {
            chunkState = .trailer
            trailerLineEmpty = true
        } else {
            chunkState = .data
        }
    }

    /// De-framed payload: SSE-scanned for streams, counted either way.
    private func payload(_ bytes: UnsafeRawBufferPointer) {
        client.totals.payloadBytes &+= UInt64(bytes.count)
        guard isStream, bytes.count > 0 else { return }
        let base = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let n = bytes.count
        var i = 0
        while i < n {
            switch lineKind {
            case .data, .comment, .other:
                // The rest of the line does not matter: skip to its end.
                guard let hit = memchr(base + i, 10, n - i) else { return }
                i = base.distance(to: hit.assumingMemoryBound(to: UInt8.self))
                endLine()
                if freed { return }
                i += 1
                continue
            default:
                break
            }
            let b = base[i]
            i += 1
            if b == 10 {
                endLine()
                if freed { return }
                continue
            }
            switch lineKind {
            case .start:
                if b == UInt8(ascii: ":") { lineKind = .comment }
                else if b == 13 { lineKind = .carriageReturn }
                else if b == Self.dataPrefix[0] { lineKind = .prefix; matchPos = 1 }
                else { lineKind = .other }
            case .prefix:
                if b == Self.dataPrefix[matchPos] {
                    matchPos += 1
                    if matchPos == Self.dataPrefix.count { lineKind = .digits; lineTs = 0 }
                } else {
                    lineKind = matchPos >= 5 ? .data : .other
                }
            case .digits:
                if b >= 48 && b <= 57 { lineTs = lineTs &* 10 &+ UInt64(b - 48) } else {
                    eventTs = lineTs
                    lineKind = .data
                }
            case .carriageReturn:
                lineKind = .other
            case .data, .comment, .other:
                break
            }
        }
    }

    private func endLine() {
        switch lineKind {
        case .start, .carriageReturn:
            if eventHasData {
                client.totals.events &+= 1
                if client.options.firstEvent {
                    end(completed: true, error: 0)
                    return
                }
                if eventTs != 0 && client.measuring && client.now > eventTs {
                    client.latency.record(client.now - eventTs)
                }
            }
            eventHasData = false
            eventTs = 0
        case .comment:
            heartbeats += 1
            client.totals.heartbeats &+= 1
        case .digits:
            eventTs = lineTs
            eventHasData = true
        case .data:
            eventHasData = true
        case .prefix:
            if matchPos >= 5 { eventHasData = true }
        case .other:
            break
        }
        lineKind = .start
        matchPos = 0
    }
}

extension Substring {
    fileprivate var trimmingPrefixSpaces: Substring {
        var s = self
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return s
    }
}

private func clientDrive(_ fd: Int32, _ events: Int16, _ ctx: UnsafeMutableRawPointer?) {
    Unmanaged<Client>.fromOpaque(ctx!).takeUnretainedValue().drive()
}

private func clientConnEvent(_ fd: Int32, _ events: Int16, _ ctx: UnsafeMutableRawPointer?) {
    Unmanaged<ClientConn>.fromOpaque(ctx!).takeUnretainedValue().ready(events)
}
