// The runtime done in memory: what Runtime/Connection.swift does with
// sockets, buffers and a libevent timer, done with byte arrays and a fake
// clock, so unit tests and the `exchange` / `sse_heartbeat` fuzz targets
// drive the real `ExchangeMachine`. Compiled into the fuzz build too (no
// imports there), so it uses only the stdlib and the pure sources.

#if !SSE_FUZZ
@testable import SSEKeepalive
#endif

final class ExchangeHarness: ExchangeIO {
    var machine: ExchangeMachine
    let table: RouteTable

    /// Bytes the peers sent that the proxy has not read yet (the kernel's receive queues).
    var clientSocket: [UInt8] = []
    var upstreamSocket: [UInt8] = []
    var clientSentEOF = false
    var upstreamSentEOF = false
    /// Read but not consumed (the channels' input buffers).
    var clientIn: [UInt8] = []
    var upstreamIn: [UInt8] = []
    /// Queued, not yet taken by the socket (the channels' output buffers); each client byte tagged with its origin.
    var clientOut: [UInt8] = []
    var clientOutTags: [Int32] = []
    var upstreamOut: [UInt8] = []
    /// What reached the client, and for each byte 0 (moved from the upstream) or the index of the proxy's write in `proxyWrites`.
    var clientWire: [UInt8] = []
    var clientWireTags: [Int32] = []
    var proxyWrites: [[UInt8]] = [[]]
    /// How many more bytes the client's socket takes (a client that stops reading: 0).
    var clientWindow = Int.max
    /// Bytes in the kernel's send queue towards the client (counted as pending).
    var kernelQueue = 0
    var reading: [Side: Bool] = [.client: false, .upstream: false]
    var lowWatermark: [Side: Int] = [.client: 0, .upstream: 0]
    var shutdownWrites: [Side] = []

    enum UpstreamState: Equatable { case none, connecting, connected }
    var upstream = UpstreamState.none
    /// Every upstream connection used, in order, and the bytes each received.
    var upstreamConnections: [(address: SocketAddressSpec, pooled: Bool, received: [UInt8])] = []
    /// Idle pooled connections available, and how many the machine gave back.
    var poolIdle = 0
    var givenToPool = 0
    /// errno of the next connect, if it fails at once.
    var connectFailure: Int32?

    var clock = 0
    /// When the timer fires (fake clock), if armed.
    var timerDeadline: Int?
    var timerSpans: [TimeSpan] = []

    var closed = false
    var actions: [ExchangeAction] = []
    var logs: [(level: LogLevelName, event: ExchangeLogEvent)] = []
    var metrics = MetricsSnapshot()
    var accessLog: [AccessLogEntry] = []
    /// The first thing the machine asked that the real runtime could not do.
    var violation: String?

    init(config: Config = ExchangeHarness.defaultConfig) {
        table = RouteTable(config: config)
        machine = ExchangeMachine(table: table)
    }

    static var defaultConfig: Config {
        var config = Config()
        config.accessLog = true
        return config
    }

    // MARK: Driving it (what Connection's entry points do)

    func start() {
        machine.start(self)
        afterEntry()
    }

    func clientSends(_ bytes: [UInt8]) {
        clientSocket += bytes
        deliverClient()
    }

    func clientSends(_ text: String) { clientSends(Array(text.utf8)) }

    func upstreamSends(_ bytes: [UInt8]) {
        upstreamSocket += bytes
        deliverUpstream()
    }

    func upstreamSends(_ text: String) { upstreamSends(Array(text.utf8)) }

    /// The client's socket: what it sent reaches the proxy while the proxy reads.
    func deliverClient(max: Int = Int.max) {
        guard !closed, reading[.client] == true else { return }
        if !clientSocket.isEmpty {
            let n = min(max, clientSocket.count)
            clientIn += clientSocket.prefix(n)
            clientSocket.removeFirst(n)
            machine.clientReadable(self)
            afterEntry()
        } else if clientSentEOF {
            clientSentEOF = false
            reading[.client] = false
            machine.clientClosed(.eof, self)
            afterEntry()
        }
    }

    func deliverUpstream(max: Int = Int.max) {
        guard !closed, upstream == .connected, reading[.upstream] == true else { return }
        if !upstreamSocket.isEmpty {
            let n = min(max, upstreamSocket.count)
            upstreamIn += upstreamSocket.prefix(n)
            upstreamSocket.removeFirst(n)
            machine.upstreamReadable(self)
            afterEntry()
        } else if upstreamSentEOF {
            upstreamSentEOF = false
            reading[.upstream] = false
            machine.upstreamClosed(.eof, self)
            afterEntry()
        }
    }

    func clientCloses() {
        clientSentEOF = true
        deliverClient()
    }

    func upstreamCloses() {
        upstreamSentEOF = true
        deliverUpstream()
    }

    func clientFails(_ end: SocketEnd) {
        guard !closed else { return }
        machine.clientClosed(end, self)
        afterEntry()
    }

    func upstreamFails(_ end: SocketEnd) {
        guard !closed, upstream != .none else { return }
        // The channel stays attached (and silent) until the machine releases it.
        reading[.upstream] = false
        machine.upstreamClosed(end, self)
        afterEntry()
    }

    func upstreamConnects() {
        guard !closed, upstream == .connecting else { return }
        upstream = .connected
        machine.upstreamConnected(self)
        afterEntry()
        deliverUpstream()
    }

    /// The client reads `n` more bytes (or everything).
    func clientReads(_ n: Int = Int.max) {
        guard !closed else { return }
        clientWindow = n == Int.max ? Int.max : clientWindow &+ n
        let had = clientOut.count
        flushClient()
        if had > 0 && clientOut.count <= (lowWatermark[.client] ?? 0) {
            machine.clientDrained(self)
            afterEntry()
        }
    }

    /// Advances the clock to the timer's deadline and fires it; false if no timer is armed.
    @discardableResult
    func fireTimer() -> Bool {
        guard !closed, let deadline = timerDeadline else { return false }
        clock = max(clock, deadline)
        timerDeadline = nil
        machine.timerFired(self)
        afterEntry()
        return true
    }

    func advance(_ milliseconds: Int) { clock += milliseconds }

    func reload(_ config: Config) {
        guard !closed else { return }
        machine.settingsChanged(RouteTable(config: config), self)
        afterEntry()
    }

    // Shared streams: what `SharedUpstream` hands a client (Connection's shared entry points).

    func sharedStreamOpened(head: String, opening: String = "", replayed: Int = 0, unknownID: Bool = false,
                            preambleSetsRetry: Bool = false) {
        guard case .complete(let parsed, _) = Array(head.utf8).withUnsafeBytes({
            HeadParser.parseResponse($0, maxHeaderBytes: 65536)
        }) else { return fail("an unreadable shared head") }
        sharedStreamOpened(head: parsed, opening: Array(opening.utf8), replayed: replayed, unknownID: unknownID,
                           preambleSetsRetry: preambleSetsRetry)
    }

    func sharedStreamOpened(head: ResponseHead, opening: [UInt8], replayed: Int = 0, unknownID: Bool = false,
                            preambleSetsRetry: Bool = false, midEvent: Bool = false) {
        guard !closed else { return }
        machine.sharedStreamOpened(head: head, opening: opening, replayed: replayed, unknownID: unknownID,
                                   preambleSetsRetry: preambleSetsRetry, self)
        if midEvent { machine.sharedJoinedMidEvent(self) }
        afterEntry()
    }

    func sharedPiece(_ piece: SharedStream.Piece) {
        guard !closed else { return }
        machine.sharedPiece(piece, self)
        afterEntry()
    }

    func sharedPiece(_ text: String, atBoundary: Bool = true) {
        guard !closed else { return }
        machine.sharedPiece(SharedStream.Piece(bytes: Array(text.utf8), atBoundary: atBoundary), self)
        afterEntry()
    }

    func sharedStreamEnded() {
        guard !closed else { return }
        machine.sharedStreamEnded(self)
        afterEntry()
    }

    func sharedStreamAnswered(_ response: String?) {
        guard !closed else { return }
        machine.sharedStreamAnswered(response.map { Array($0.utf8) }, self)
        afterEntry()
    }

    func drain() {
        guard !closed else { return }
        machine.drainStarted(self)
        afterEntry()
    }

    func shutdownGraceOver() {
        guard !closed else { return }
        machine.shutdownGraceOver(self)
        afterEntry()
    }

    /// Connection.flushQueued: write both outputs, report what emptied.
    private func afterEntry() {
        guard !closed else { return }
        flushClient()
        flushUpstream()
        if clientOut.count <= (lowWatermark[.client] ?? 0) { machine.clientDrained(self) }
        if !closed, upstream != .none, upstreamOut.count <= (lowWatermark[.upstream] ?? 0) { machine.upstreamDrained(self) }
    }

    private func flushClient() {
        let n = min(clientWindow, clientOut.count)
        guard n > 0 else { return }
        clientWire += clientOut.prefix(n)
        clientWireTags += clientOutTags.prefix(n)
        clientOut.removeFirst(n)
        clientOutTags.removeFirst(n)
        if clientWindow != Int.max { clientWindow -= n }
    }

    private func flushUpstream() {
        guard upstream == .connected, !upstreamOut.isEmpty, !upstreamConnections.isEmpty else { return }
        upstreamConnections[upstreamConnections.count - 1].received += upstreamOut
        upstreamOut.removeAll()
    }

    // MARK: ExchangeIO

    func inputCount(_ side: Side) -> Int {
        if side == .upstream && upstream == .none { fail("upstream input asked without an upstream") }
        return side == .client ? clientIn.count : upstreamIn.count
    }

    func withInputPrefix<R>(_ side: Side, limit: Int, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        let input = side == .client ? clientIn : upstreamIn
        return Array(input.prefix(limit)).withUnsafeBytes(body)
    }

    func withFirstInputExtent<R>(_ side: Side, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        (side == .client ? clientIn : upstreamIn).withUnsafeBytes(body)
    }

    func inputTail(_ side: Side, endingAt end: Int) -> InputTail {
        let input = side == .client ? clientIn : upstreamIn
        var tail = InputTail()
        let n = min(3, end, input.count)
        withUnsafeMutableBytes(of: &tail.bytes) { dst in
            for i in 0..<n { dst[i] = input[end - n + i] }
        }
        tail.count = n
        return tail
    }

    func outputCount(_ side: Side) -> Int { side == .client ? clientOut.count : upstreamOut.count }

    func clientPendingBytes() -> Int { clientOut.count + kernelQueue }

    func now() -> Int { clock }

    /// Diagnostic streams holding a slot; `refuseDiagnostic` makes the limiter say no.
    var diagnosticSlots = 0
    var refuseDiagnostic: DiagnosticLimiter.Decision?

    func diagnosticAdmit() -> DiagnosticLimiter.Decision {
        if let refuseDiagnostic { return refuseDiagnostic }
        diagnosticSlots += 1
        return .start
    }

    func diagnosticEnded() { diagnosticSlots -= 1 }

    func describe(errno code: Int32) -> String { "errno \(code)" }

    /// Seeded, so every run draws the same numbers.
    var rng = FuzzRNG(seed: 0x5EED)
    func random(below n: Int) -> Int { rng.below(n) }

    func openUpstream(_ address: SocketAddressSpec, pooled: Bool) -> UpstreamOpening {
        if closed { fail("connect after close") }
        if upstream != .none { fail("connect with an upstream already attached") }
        if pooled && poolIdle > 0 {
            poolIdle -= 1
            upstream = .connected
            reading[.upstream] = true
            upstreamConnections.append((address, true, []))
            return .pooled
        }
        if let code = connectFailure {
            connectFailure = nil
            return .failed(errno: code)
        }
        upstream = .connecting
        upstreamConnections.append((address, false, []))
        return .connecting
    }

    /// Shared-stream joins the machine asked for, and leaves (at most one each per connection).
    var sharedJoins: [SharedJoin] = []
    var sharedLeaves = 0

    func perform(_ action: ExchangeAction) {
        actions.append(action)
        if closed { fail("\(action) after close") }
        switch action {
        case .write(let side, let bytes):
            output(bytes, to: side)
        case .writeChunkHeader(let side, let count):
            output(ChunkedEncoding.chunkHeader(count), to: side)
        case .splice(let from, let count):
            if from == .client {
                guard count <= clientIn.count, upstream != .none else { return fail("splice of \(count) client bytes, \(clientIn.count) read") }
                upstreamOut += clientIn.prefix(count)
                clientIn.removeFirst(count)
            } else {
                guard count <= upstreamIn.count else { return fail("splice of \(count) upstream bytes, \(upstreamIn.count) read") }
                clientOut += upstreamIn.prefix(count)
                clientOutTags += repeatElement(0, count: count)
                upstreamIn.removeFirst(count)
            }
        case .discard(let side, let count):
            if side == .client {
                guard count <= clientIn.count else { return fail("discard of \(count) client bytes, \(clientIn.count) read") }
                clientIn.removeFirst(count)
            } else {
                guard count <= upstreamIn.count else { return fail("discard of \(count) upstream bytes, \(upstreamIn.count) read") }
                upstreamIn.removeFirst(count)
            }
        case .setReading(let side, let enabled):
            if side == .upstream && upstream == .none { return fail("setReading on a missing upstream") }
            reading[side] = enabled
        case .setLowWatermark(let side, let bytes):
            lowWatermark[side] = bytes
        case .flush(let side):
            if side == .client { flushClient() } else { flushUpstream() }
        case .shutdownWrite(let side):
            shutdownWrites.append(side)
        case .releaseUpstream(let pool):
            guard upstream != .none else { return fail("release without an upstream") }
            upstream = .none
            upstreamIn.removeAll()
            upstreamOut.removeAll()
            upstreamSocket.removeAll()
            upstreamSentEOF = false
            reading[.upstream] = false
            if pool != nil {
                givenToPool += 1
                poolIdle += 1
            }
        case .upstreamConnectTimedOut:
            if upstream != .connecting { fail("a connect timeout without a connect in progress") }
        case .armTimer(let span, _):
            timerDeadline = clock + span.milliseconds
            timerSpans.append(span)
        case .disarmTimer:
            timerDeadline = nil
        case .log(let level, let event):
            logs.append((level, event))
        case .count(let metric):
            metric.apply(to: &metrics)
        case .accessLog(let summary):
            accessLog.append(summary)
        case .joinSharedStream(let join):
            if !sharedJoins.isEmpty { fail("a second shared-stream join") }
            sharedJoins.append(join)
        case .leaveSharedStream:
            if sharedJoins.isEmpty || sharedLeaves > 0 { fail("a shared-stream leave without one join") }
            sharedLeaves += 1
        case .close:
            closed = true
            upstream = .none
            timerDeadline = nil
        }
    }

    private func output(_ bytes: [UInt8], to side: Side) {
        if side == .client {
            proxyWrites.append(bytes)
            clientOut += bytes
            clientOutTags += repeatElement(Int32(proxyWrites.count - 1), count: bytes.count)
        } else {
            guard upstream != .none else { return fail("write to a missing upstream") }
            upstreamOut += bytes
        }
    }

    private func fail(_ message: String) {
        if violation == nil { violation = message }
    }

    // MARK: Reading what the client got

    var clientText: String { String(decoding: clientWire, as: UTF8.self) }

    /// What the upstream connection `i` received, as text.
    func upstreamText(_ i: Int = 0) -> String {
        i < upstreamConnections.count ? String(decoding: upstreamConnections[i].received, as: UTF8.self) : ""
    }

    var timerArmed: Bool { timerDeadline != nil }

    func logged(_ level: LogLevelName) -> [ExchangeLogEvent] { logs.filter { $0.level == level }.map(\.event) }
}

/// A response as the client read it off the wire: head, body (de-chunked) and
/// where each body byte came from.
struct ClientResponse {
    var head: ResponseHead
    var body: [UInt8] = []
    /// 0: moved from the upstream; n > 0: the proxy's write n.
    var tags: [Int32] = []
    var complete = false
}

enum ClientWireReader {
    enum Failure: Error, Equatable { case badHead(String), badFraming(String) }

    /// Splits the client's bytes into responses to requests made with `methods`
    /// (in order). A response whose body is still open at the end is returned
    /// with `complete == false`, a head cut short is left out. Heads and
    /// chunked framing must be valid throughout.
    static func read(_ wire: [UInt8], tags: [Int32], methods: [String]) throws(Failure) -> [ClientResponse] {
        var responses: [ClientResponse] = []
        var at = 0
        var methodIndex = 0
        while at < wire.count {
            let method = methodIndex < methods.count ? methods[methodIndex] : "GET"
            let result = HeadParser.parseResponse(Array(wire[at...]), maxHeaderBytes: 1 << 20)
            // A head cut short ends the reading (a connection closed on a client that stopped reading).
            if case .incomplete = result { break }
            guard case .complete(let head, let length) = result else {
                throw .badHead("no response head at \(at): \(result)")
            }
            at += length
            var response = ClientResponse(head: head)
            if head.status >= 100 && head.status < 200 && head.status != 101 {
                response.complete = true
                responses.append(response)
                continue
            }
            methodIndex += 1
            let framing: BodyFraming
            do { framing = try BodyFraming.response(head, requestMethod: method) } catch {
                throw .badHead("response framing: \(error)")
            }
            if head.status == 101 {
                response.body = Array(wire[at...])
                response.tags = Array(tags[at...])
                at = wire.count
                responses.append(response)
                break
            }
            var decoder = BodyDecoder(framing)
            while true {
                let available = wire.count - at
                let step = wire.withUnsafeBytes { p in
                    Result { () throws(HTTPParseError) in
                        try decoder.next(available: available, window: UnsafeRawBufferPointer(rebasing: p[at...]))
                    }
                }
                switch step {
                case .failure(let error):
                    throw .badFraming("body framing at \(at): \(error)")
                case .success(.payload(let n)):
                    response.body += wire[at..<at + n]
                    response.tags += tags[at..<at + n]
                    decoder.didForwardPayload(n)
                    at += n
                case .success(.skip(let n)):
                    at += n
                case .success(.end):
                    response.complete = true
                case .success(.needMore):
                    break
                }
                if response.complete { break }
                if case .success(.needMore) = step { break }
            }
            responses.append(response)
            if !response.complete { break }
        }
        return responses
    }
}

/// One event stream through the real machine: a client's GET, an upstream
/// answering `text/event-stream`, then payload reads and idle timeouts
/// (each fires the heartbeat timer if the machine armed it).
final class EventStreamDriver {
    let harness: ExchangeHarness
    let heartbeat: HeartbeatBytes
    /// The upstream frames its payload in chunks (else it is close-delimited).
    let upstreamChunked: Bool
    /// Proxy writes made while the heartbeat timer fired: the heartbeats.
    private(set) var heartbeatWrites: Set<Int32> = []
    private(set) var heartbeatForms: [HeartbeatForm] = []
    private(set) var payloadSent: [UInt8] = []

    /// `onOpen`: the first comment right after the head (off by default here: these
    /// streams are about where heartbeats go, and `idle()` says when one is due).
    init(heartbeat: HeartbeatBytes, upstreamChunked: Bool = false, interval: TimeSpan = .seconds(1),
         onOpen: Bool = false, padding: Int = 0) {
        var config = Config()
        config.heartbeat = HeartbeatSettings(interval: interval, comment: heartbeat.comment, blankLine: heartbeat.blankLine)
        config.heartbeat.onOpen = onOpen
        config.heartbeat.padding = padding
        self.harness = ExchangeHarness(config: config)
        self.heartbeat = heartbeat
        self.upstreamChunked = upstreamChunked
        harness.start()
        harness.clientSends("GET /events HTTP/1.1\r\nHost: sidecar\r\nAccept: text/event-stream\r\n\r\n")
        harness.upstreamConnects()
        harness.upstreamSends("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            + (upstreamChunked ? "Transfer-Encoding: chunked\r\n" : "") + "\r\n")
    }

    /// The stream stayed idle for the interval; returns the heartbeat written, if any.
    @discardableResult
    func idle() -> HeartbeatForm? {
        guard harness.machine.timer == .heartbeat else { return nil }
        let safe = cursor?.safeHeartbeat
        let before = harness.proxyWrites.count
        harness.fireTimer()
        var wrote = false
        for i in before..<harness.proxyWrites.count where harness.proxyWrites[i].first == 0x3A {   // not chunk framing
            heartbeatWrites.insert(Int32(i))
            wrote = true
        }
        guard wrote, let safe else { return nil }
        heartbeatForms.append(safe)
        return safe
    }

    /// Where the machine's cursor says the stream stands.
    var cursor: SSECursor? {
        guard case .exchanging(let exchange) = harness.machine.state, case .streaming(let stream) = exchange.response else { return nil }
        return stream.cursor
    }

    /// One upstream read of payload bytes.
    func upstream(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        payloadSent += bytes
        harness.upstreamSends(upstreamChunked ? ChunkedEncoding.chunkHeader(bytes.count) + bytes + ChunkedEncoding.chunkEnd : bytes)
    }

    func upstream(_ text: String) { upstream(Array(text.utf8)) }

    /// The upstream ends the response.
    func endOfStream() {
        if upstreamChunked { harness.upstreamSends(ChunkedEncoding.lastChunk) } else { harness.upstreamCloses() }
    }

    // The client's side, read incrementally: head, then the body de-chunked.
    private var decoder: BodyDecoder?
    private var wireAt = 0
    private var body: [UInt8] = []
    private var tags: [Int32] = []
    /// The response ended cleanly (final chunk, or EOF after a close-delimited body).
    private(set) var complete = false
    /// Why the client could not read its bytes, if it could not.
    private(set) var readError: String?
    /// Where the SSE grammar stands after every body byte so far, stepped one by one.
    private(set) var reference = SSECursor.Position.eventBoundary

    private func sync() {
        let wire = harness.clientWire
        if decoder == nil {
            guard case .complete(let head, let length) = HeadParser.parseResponse(wire, maxHeaderBytes: 1 << 16) else { return }
            guard head.status == 200, let framing = try? BodyFraming.response(head, requestMethod: "GET") else {
                readError = "unexpected head \(head)"
                return
            }
            decoder = BodyDecoder(framing)
            wireAt = length
        }
        guard var decoder, !complete, readError == nil else { return }
        defer { self.decoder = decoder }
        while true {
            let available = wire.count - wireAt
            let at = wireAt
            let step = wire.withUnsafeBytes { p in
                Result { () throws(HTTPParseError) in
                    try decoder.next(available: available, window: UnsafeRawBufferPointer(rebasing: p[at...]))
                }
            }
            switch step {
            case .failure(let error):
                readError = "bad framing at \(at): \(error)"
                return
            case .success(.payload(let n)):
                for b in wire[at..<at + n] { reference = SSECursor.step(reference, b) }
                body += wire[at..<at + n]
                tags += harness.clientWireTags[at..<at + n]
                decoder.didForwardPayload(n)
                wireAt += n
            case .success(.skip(let n)):
                wireAt += n
            case .success(.end):
                complete = true
                return
            case .success(.needMore):
                if harness.closed && decoder.endsAtClose { complete = true }
                return
            }
        }
    }

    /// The payload bytes the client received, heartbeats included.
    var output: [UInt8] {
        sync()
        return body
    }

    /// The response ended cleanly.
    var ended: Bool {
        sync()
        return complete
    }

    /// Where each heartbeat sits in `output`.
    var heartbeatRanges: [Range<Int>] {
        sync()
        var ranges: [Range<Int>] = []
        var i = 0
        while i < tags.count {
            let tag = tags[i]
            var j = i + 1
            while j < tags.count && tags[j] == tag { j += 1 }
            if heartbeatWrites.contains(tag) { ranges.append(i..<j) }
            i = j
        }
        return ranges
    }

    var outputWithoutHeartbeats: [UInt8] {
        sync()
        var out: [UInt8] = []
        for (byte, tag) in zip(body, tags) where !heartbeatWrites.contains(tag) { out.append(byte) }
        return out
    }

    /// The upstream's leading BOM was dropped.
    var bomStripped: Bool { payloadSent.count - outputWithoutHeartbeats.count == 3 }
}
