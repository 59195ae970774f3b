import CLibevent
#if canImport(Glibc)
import Glibc
#endif

/// The benchmark backend: one libevent loop, raw sockets, no per-event allocation
/// on the flood path.
///
///   GET .../idle            head, then nothing (the stream is held open)
///   GET .../flood?size=N    events of N bytes, as fast as the socket accepts
///   GET .../rate            joins the shared ticker: `--rate` events/s in total,
///                           round-robin over all rate streams, each carrying
///                           `data: t=<CLOCK_MONOTONIC ns>`
///   GET .../ping            200, Content-Length 2 ("ok"), keep-alive
///   GET .../bcast           the broadcast ticker: `--bcast-rate` events/s to EVERY
///                           bcast stream (the same events, each `data: t=<ns>`),
///                           as one app that serves each viewer its own copy
///   GET .../bcast-stats     JSON: bcast streams open now and in total, events, drops
///   GET .../first           head and one event (`data: t=<ns>`) in one write, then
///                           nothing (the stream-churn scenario's stream)
///
/// Paths match on their last segment, so proxy routes like /hb1/idle work.
/// Event streams are chunked (`--framing chunked`, like most app servers) or
/// close-delimited (`--framing close`).
final class Backend: @unchecked Sendable {
    struct Options {
        var host = "127.0.0.1"
        var port: UInt16 = 3000
        var rate = 20_000.0
        var eventSize = 64
        var floodSize = 1024
        var chunked = true
        var maxSeconds = 3600.0
        var bcastRate = 1000.0
    }

    let options: Options
    let base: OpaquePointer
    private var listener: OpaquePointer?
    private var conns: [Int32: BackendConn] = [:]
    /// Streams on the shared ticker, in join order (swap-remove on close).
    private var rateStreams: [BackendConn] = []
    private var ticker: OpaquePointer?
    private var tickerStart: UInt64 = 0
    private var emitted: UInt64 = 0
    private var roundRobin = 0
    /// Streams on the broadcast ticker (swap-remove on close).
    private var bcastStreams: [BackendConn] = []
    private var bcastTicker: OpaquePointer?
    private var bcastStart: UInt64 = 0
    private var bcastEmitted: UInt64 = 0
    private var bcastStats = (streams: 0, events: UInt64(0), dropped: UInt64(0))
    private var floodBuffers: [Int: UnsafeMutableRawBufferPointer] = [:]
    let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
    let eventScratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
    var stats = (accepted: 0, pings: 0, idle: 0, first: 0, flood: 0, rate: 0, rateEvents: UInt64(0), rateDropped: UInt64(0))

    init(options: Options) {
        self.options = options
        guard let base = event_base_new() else { fail("cannot create an event base") }
        self.base = base
    }

    func run() -> Never {
        sse_ignore_sigpipe()
        Net.raiseFileLimit()
        guard var sa = Net.endpoint("\(options.host):\(options.port)"), Net.isLoopback(sa.sin_addr) else {
            fail("backend listens on loopback only: \(options.host):\(options.port)")
        }
        let context = Unmanaged.passUnretained(self).toOpaque()
        let flags = UInt32(LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC)
        listener = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                evconnlistener_new_bind(base, backendAccept, context, flags, 4096, $0, Int32(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard listener != nil else { fail("cannot listen on \(options.host):\(options.port): \(Net.describe(sse_errno()))") }
        // The shared ticker: every millisecond, emit what the rate says is due.
        var tick = timeval(tv_sec: 0, tv_usec: 1000)
        ticker = event_new(base, -1, Int16(EV_PERSIST), backendTick, context)
        event_add(ticker, &tick)
        bcastTicker = event_new(base, -1, Int16(EV_PERSIST), backendBcastTick, context)
        event_add(bcastTicker, &tick)
        // Bounded: the backend stops by itself after --max-seconds.
        var limit = timeval(tv_sec: Int(options.maxSeconds), tv_usec: 0)
        event_base_loopexit(base, &limit)
        for signo in [SIGTERM, SIGINT] {
            let ev = event_new(base, signo, Int16(EV_SIGNAL | EV_PERSIST), backendSignal, context)
            event_add(ev, nil)
        }
        emit("{\"phase\":\"listening\",\"port\":\(options.port)}")
        event_base_dispatch(base)
        var j = JSON()
        j.add("phase", "stopped")
        j.add("accepted", stats.accepted)
        j.add("pings", stats.pings)
        j.add("idle_streams", stats.idle)
        j.add("first_event_streams", stats.first)
        j.add("flood_streams", stats.flood)
        j.add("rate_streams", stats.rate)
        j.add("rate_events", stats.rateEvents)
        j.add("rate_dropped", stats.rateDropped)
        j.add("bcast_streams", bcastStats.streams)
        j.add("bcast_events", bcastStats.events)
        j.add("bcast_dropped", bcastStats.dropped)
        emit(j.text)
        exit(0)
    }

    fileprivate func accept(_ fd: Int32) {
        stats.accepted += 1
        Net.setNonBlocking(fd)
        Net.setNoDelay(fd)
        let conn = BackendConn(backend: self, fd: fd)
        conns[fd] = conn
        event_add(conn.readEvent, nil)
    }

    func close(_ conn: BackendConn) {
        guard conns.removeValue(forKey: conn.fd) != nil else { return }
        if conn.kind == .rate, let i = conn.rateIndex {
            let last = rateStreams.removeLast()
            if last !== conn {
                rateStreams[i] = last
                last.rateIndex = i
            }
        }
        if conn.kind == .bcast, let i = conn.bcastIndex {
            let last = bcastStreams.removeLast()
            if last !== conn {
                bcastStreams[i] = last
                last.bcastIndex = i
            }
        }
        conn.free()
    }

    // MARK: Requests

    /// A request head arrived: answer according to the path.
    func handle(_ conn: BackendConn, path: Substring) {
        let query = path.firstIndex(of: "?")
        let route = path[..<(query ?? path.endIndex)]
        let last = route.split(separator: "/").last.map(String.init) ?? ""
        switch last {
        case "ping":
            stats.pings += 1
            conn.send(Backend.pingResponse)
        case "idle":
            stats.idle += 1
            conn.kind = .idle
            conn.send(streamHead)
        case "flood":
            stats.flood += 1
            var size = options.floodSize
            if let query, let v = Self.queryValue(path[path.index(after: query)...], "size"), let n = Int(v) {
                size = min(max(n, 16), 60_000)
            }
            conn.kind = .flood
            conn.flood = floodBuffer(size)
            conn.send(streamHead)
            conn.startFlood()
        case "first":
            stats.first += 1
            conn.kind = .idle
            firstEvent(conn)
        case "rate":
            stats.rate += 1
            conn.kind = .rate
            conn.send(streamHead)
            conn.rateIndex = rateStreams.count
            rateStreams.append(conn)
        case "bcast-stats":
            let body = "{\"bcast_open\":\(bcastStreams.count),\"bcast_streams\":\(bcastStats.streams),\"bcast_events\":\(bcastStats.events),\"bcast_dropped\":\(bcastStats.dropped)}"
            conn.send(Array("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8))
        case "bcast":
            bcastStats.streams += 1
            conn.kind = .bcast
            conn.send(streamHead)
            conn.bcastIndex = bcastStreams.count
            bcastStreams.append(conn)
        default:
            conn.send(Array("HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nnot found\n".utf8))
        }
    }

    /// The head and the first event as one write, like an app server that flushes its first event.
    private func firstEvent(_ conn: BackendConn) {
        let data = "data: t=\(Net.monotonicNanos())\n\n"
        let body = options.chunked ? String(data.utf8.count, radix: 16) + "\r\n" + data + "\r\n" : data
        conn.send(streamHead + Array(body.utf8))
    }

    static let pingResponse = Array("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok".utf8)

    private var streamHead: [UInt8] {
        options.chunked
            ? Array("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
            : Array("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n".utf8)
    }

    private static func queryValue(_ query: Substring, _ name: String) -> Substring? {
        for pair in query.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1)
            if kv.count == 2, kv[0] == name { return kv[1] }
        }
        return nil
    }

    /// ~64 KiB of back-to-back events of `size` bytes (`data: xxxx...\n\n`),
    /// as one chunk when chunked; built once per size and shared by all floods.
    private func floodBuffer(_ size: Int) -> UnsafeMutableRawBufferPointer {
        if let known = floodBuffers[size] { return known }
        let perBuffer = max(1, 64 * 1024 / size)
        var events: [UInt8] = []
        events.reserveCapacity(perBuffer * size)
        var event = Array("data: ".utf8)
        while event.count < size - 2 { event.append(UInt8(ascii: "a") + UInt8(event.count % 26)) }
        event.append(contentsOf: [10, 10])
        for _ in 0..<perBuffer { events.append(contentsOf: event) }
        var bytes: [UInt8] = []
        if options.chunked {
            bytes.append(contentsOf: Array(String(events.count, radix: 16).utf8) + [13, 10])
            bytes.append(contentsOf: events)
            bytes.append(contentsOf: [13, 10])
        } else {
            bytes = events
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 16)
        buffer.copyBytes(from: bytes)
        floodBuffers[size] = buffer
        return buffer
    }

    // MARK: Ticker

    fileprivate func tick() {
        let now = Net.monotonicNanos()
        if tickerStart == 0 || rateStreams.isEmpty {
            tickerStart = now
            emitted = 0
            return
        }
        let due = UInt64(Double(now - tickerStart) * options.rate / 1e9)
        var todo = due > emitted ? due - emitted : 0
        // After a stall (the machine is shared), do not burst more than 100 ms worth.
        let cap = UInt64(max(1, options.rate / 10))
        if todo > cap {
            emitted = due - cap
            todo = cap
        }
        var n: UInt64 = 0
        // A write error closes a stream (and shrinks the list) inside this loop.
        while n < todo, !rateStreams.isEmpty {
            if roundRobin >= rateStreams.count { roundRobin = 0 }
            let conn = rateStreams[roundRobin]
            roundRobin += 1
            sendRateEvent(conn)
            n += 1
        }
        emitted += todo
        stats.rateEvents &+= todo
    }

    /// `data: t=<ns> pad...\n\n`, framed, written at once with a fresh timestamp.
    private func sendRateEvent(_ conn: BackendConn) {
        let out = eventScratch.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let size = max(options.eventSize, 32)
        var p = 0
        if options.chunked {
            for c in String(size, radix: 16).utf8 { out[p] = c; p += 1 }
            out[p] = 13; out[p + 1] = 10; p += 2
        }
        let payloadStart = p
        for c in "data: t=".utf8 { out[p] = c; p += 1 }
        let now = Net.monotonicNanos()
        var v = now, nd = 0
        repeat { v /= 10; nd += 1 } while v > 0
        v = now
        for i in stride(from: nd - 1, through: 0, by: -1) { out[p + i] = UInt8(48 + v % 10); v /= 10 }
        p += nd
        out[p] = 32; p += 1
        while p - payloadStart < size - 2 { out[p] = UInt8(ascii: "x"); p += 1 }
        out[p] = 10; out[p + 1] = 10; p += 2
        if options.chunked { out[p] = 13; out[p + 1] = 10; p += 2 }
        if !conn.send(UnsafeRawBufferPointer(start: out, count: p), dropIfBacklogged: true) {
            stats.rateDropped &+= 1
        }
    }
}

// MARK: Broadcast ticker

extension Backend {
    /// Every millisecond: the events due by `--bcast-rate`, as one write of
    /// one chunk, to every bcast stream (a stream with over 1 MiB queued skips it).
    fileprivate func bcastTick() {
        let now = Net.monotonicNanos()
        if bcastStart == 0 || bcastStreams.isEmpty {
            bcastStart = now
            bcastEmitted = 0
            return
        }
        let due = UInt64(Double(now - bcastStart) * options.bcastRate / 1e9)
        var todo = due > bcastEmitted ? due - bcastEmitted : 0
        let cap = UInt64(max(1, options.bcastRate / 10))   // after a stall, at most 100 ms worth
        if todo > cap {
            bcastEmitted = due - cap
            todo = cap
        }
        guard todo > 0 else { return }
        bcastEmitted += todo
        bcastStats.events &+= todo
        let size = max(options.eventSize, 32)
        var events: [UInt8] = []
        events.reserveCapacity(Int(todo) * size)
        let stamp = Array("data: t=\(now) ".utf8)
        for _ in 0..<todo {
            let start = events.count
            events.append(contentsOf: stamp)
            while events.count - start < size - 2 { events.append(UInt8(ascii: "x")) }
            events.append(contentsOf: [10, 10])
        }
        var out: [UInt8] = []
        if options.chunked { out = Array(String(events.count, radix: 16).utf8) + [13, 10] + events + [13, 10] } else { out = events }
        out.withUnsafeBytes { bytes in
            var i = 0
            // A write error closes a stream (and shrinks the list) inside this loop.
            while i < bcastStreams.count {
                let conn = bcastStreams[i]
                if !conn.send(bytes, dropIfBacklogged: true) { bcastStats.dropped &+= 1 }
                if i < bcastStreams.count, bcastStreams[i] === conn { i += 1 }
            }
        }
    }
}

/// One accepted connection of the backend.
final class BackendConn {
    enum Kind { case request, idle, flood, rate, bcast }

    unowned let backend: Backend
    let fd: Int32
    var kind = Kind.request
    var readEvent: OpaquePointer!
    var writeEvent: OpaquePointer!
    /// Request bytes until a full head (requests are small).
    private var head: [UInt8] = []
    /// Bytes a short write left over (rate events, ping answers).
    private var pending: [UInt8] = []
    var flood: UnsafeMutableRawBufferPointer?
    private var floodOffset = 0
    var rateIndex: Int?
    var bcastIndex: Int?
    private var closed = false

    init(backend: Backend, fd: Int32) {
        self.backend = backend
        self.fd = fd
        let context = Unmanaged.passUnretained(self).toOpaque()
        readEvent = event_new(backend.base, fd, Int16(EV_READ | EV_PERSIST), backendConnRead, context)
        writeEvent = event_new(backend.base, fd, Int16(EV_WRITE | EV_PERSIST), backendConnWrite, context)
    }

    func free() {
        guard !closed else { return }
        closed = true
        event_free(readEvent)
        event_free(writeEvent)
        Glibc.close(fd)
    }

    fileprivate func readable() {
        let buffer = backend.readBuffer
        // Bounded: at most a few reads per callback.
        for _ in 0..<4 {
            let n = read(fd, buffer.baseAddress, buffer.count)
            if n == 0 { backend.close(self); return }
            if n < 0 {
                let code = sse_errno()
                if code == EAGAIN || code == EINTR { return }
                backend.close(self)
                return
            }
            guard kind == .request else { continue }   // streams ignore further input
            head.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            while kind == .request, let end = headEnd() {
                let line = head.prefix(while: { $0 != 13 && $0 != 10 })
                let fields = line.split(separator: 32)
                let path = fields.count >= 2 ? String(decoding: fields[1], as: UTF8.self) : "/"
                head.removeFirst(end)
                backend.handle(self, path: Substring(path))
                if closed { return }
            }
            if head.count > 64 * 1024 { backend.close(self); return }
            if n < buffer.count { return }
        }
    }

    private func headEnd() -> Int? {
        guard head.count >= 4 else { return nil }
        for i in 3..<head.count where head[i] == 10 && head[i - 1] == 13 && head[i - 2] == 10 && head[i - 3] == 13 {
            return i + 1
        }
        return nil
    }

    func send(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { _ = send($0, dropIfBacklogged: false) }
    }

    /// Writes now if nothing is pending; queues the rest. With `dropIfBacklogged`,
    /// a stream with more than 1 MiB queued drops the event (returns false).
    @discardableResult
    func send(_ bytes: UnsafeRawBufferPointer, dropIfBacklogged: Bool) -> Bool {
        guard !closed else { return false }
        if !pending.isEmpty {
            if dropIfBacklogged && pending.count > 1 << 20 { return false }
            pending.append(contentsOf: bytes)
            return true
        }
        let n = write(fd, bytes.baseAddress, bytes.count)
        if n == bytes.count { return true }
        if n < 0 {
            let code = sse_errno()
            if code != EAGAIN && code != EINTR { backend.close(self); return false }
        }
        let written = max(n, 0)
        pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[written...]))
        event_add(writeEvent, nil)
        return true
    }

    func startFlood() {
        event_add(writeEvent, nil)
    }

    fileprivate func writable() {
        if !pending.isEmpty {
            let n = pending.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                let code = sse_errno()
                if code != EAGAIN && code != EINTR { backend.close(self) }
                return
            }
            pending.removeFirst(n)
            if !pending.isEmpty { return }
            if kind != .flood { event_del(writeEvent); return }
        }
        guard kind == .flood, let flood else { return }
        // As fast as the socket accepts; bounded per callback so other streams get a turn.
        for _ in 0..<8 {
            let n = write(fd, flood.baseAddress! + floodOffset, flood.count - floodOffset)
            if n < 0 {
                let code = sse_errno()
                if code != EAGAIN && code != EINTR { backend.close(self) }
                return
            }
            floodOffset += n
            if floodOffset == flood.count { floodOffset = 0 } else { return }
        }
    }
}

private func backendAccept(_ listener: OpaquePointer?, _ fd: Int32, _ sa: UnsafeMutablePointer<sockaddr>?, _ len: Int32, _ ctx: UnsafeMutableRawPointer?) {
    Unmanaged<Backend>.fromOpaque(ctx!).takeUnretainedValue().accept(fd)
}

private func backendTick(_ fd: Int32, _ events: Int16, _ ctx: UnsafeMutableRawPointer?) {
    Unmanaged<Backend>.fromOpaque(ctx!).takeUnretainedValue().tick()
}

private func backendBcastTick(_ fd: Int32, _ events: Int16, _ ctx: UnsafeMutableRawPointer?) {
    Unmanaged<Backend>.fromOpaque(ctx!).takeUnretainedValue().bcastTick()
}

private func backendSignal(_ fd: Int32, _ events: Int16, _ ctx: UnsafeMutableRawPointer?) {
    event_base_loopbreak(Unmanaged<Backend>.fromOpaque(ctx!).takeUnretainedValue().base)
}

private func backendConnRead(_ fd: Int32, _ events: Int16, _ ctx: UnsafeMutableRawPointer?) {
    Unmanaged<BackendConn>.fromOpaque(ctx!).takeUnretainedValue().readable()
}

private func backendConnWrite(_ fd: Int32, _ events: Int16, _ ctx: UnsafeMutableRawPointer?) {
    Unmanaged<BackendConn>.fromOpaque(ctx!).takeUnretainedValue().writable()
}
