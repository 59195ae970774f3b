import CLibevent
#if canImport(Glibc)
import Glibc
#endif
import Logging

/// One upstream event stream shared by the clients of one share key, on the
/// worker that owns the key. The upstream half is an `ExchangeMachine` whose
/// client is this object (the request comes from memory, the response goes to
/// `received`); `SharedStream` cuts what it receives into pieces, and this
/// class hands each piece to every client's connection. Its `if`s are about
/// I/O results and the client lists, as in `Connection`.
final class SharedUpstream {
    private unowned let worker: Worker
    let key: ShareKey
    let stream: SharedStream
    private var machine: ExchangeMachine
    /// The proxy's own request (read by the machine like a client's).
    private let request: EvBuffer
    /// What the machine wrote for its client: head, then the unframed stream.
    private let received: EvBuffer
    private var upstream: Channel?
    private let timer: OpaquePointer
    private let lingerTimer: OpaquePointer
    /// Clients waiting for the head, with their `Last-Event-ID`.
    private var waiting: [(Connection, String?)] = []
    /// Clients receiving pieces; a slot is nil between a leave during a broadcast and the next compaction.
    private var clients: [Connection?] = []
    private var broadcasting = false
    private var leftDuringBroadcast = false
    private(set) var isFinished = false
    private var counted = false
    /// Heartbeats the machine wrote that have not gone out to the clients yet.
    private var heartbeatsWritten = 0

    private var logger: Logger { worker.logger }

    /// `table`: `SharedUpstreamTable.make` of the worker's settings.
    init?(worker: Worker, key: ShareKey, join: SharedJoin, table: RouteTable, tag: String) {
        guard let timer = event_new(worker.base, -1, 0, sharedTimerCallback, nil) else { return nil }
        guard let lingerTimer = event_new(worker.base, -1, 0, sharedLingerCallback, nil) else {
            event_free(timer)
            return nil
        }
        guard let requestRaw = evbuffer_new(), let receivedRaw = evbuffer_new() else { return nil }
        self.worker = worker
        self.key = key
        self.timer = timer
        self.lingerTimer = lingerTimer
        self.request = EvBuffer(requestRaw)
        self.received = EvBuffer(receivedRaw)
        self.stream = SharedStream(settings: key.settings, tag: tag, holdLimit: table.config.streamBuffer)
        self.machine = ExchangeMachine(table: table)
        let context = Unmanaged.passUnretained(self).toOpaque()
        event_assign(timer, worker.base, -1, 0, sharedTimerCallback, context)
        event_assign(lingerTimer, worker.base, -1, 0, sharedLingerCallback, context)
        request.add(join.upstreamRequest)
    }

    deinit {
        evbuffer_free(request.raw)
        evbuffer_free(received.raw)
    }

    func start() {
        io { machine in
            machine.start(self)
            machine.clientReadable(self)
        }
    }

    var hasClients: Bool { !waiting.isEmpty || clients.contains { $0 != nil } }

    // MARK: Clients

    func add(_ connection: Connection, lastEventID: String?) {
        event_del(lingerTimer)
        switch stream.phase {
        case .live:
            open(connection, lastEventID: lastEventID)
        case .awaitingHead, .passthrough:
            waiting.append((connection, lastEventID))
        case .ended:
            connection.sharedStreamEnded()
        }
    }

    private func open(_ connection: Connection, lastEventID: String?) {
        guard let head = stream.head else { return }
        let opening = stream.opening(lastEventID: lastEventID, now: MonotonicClock.milliseconds())
        connection.sharedSlot = clients.count
        clients.append(connection)
        connection.sharedStreamOpened(head: head, opening: opening.bytes, replayed: opening.replayed,
                                      unknownID: opening.unknownID, preambleSetsRetry: stream.preambleSetsRetry,
                                      midEvent: stream.isMidEvent)
    }

    /// A client left (its exchange ended); when none is left, the stream lingers.
    func leave(_ connection: Connection) {
        if let i = waiting.firstIndex(where: { $0.0 === connection }) {
            waiting.remove(at: i)
        } else if let slot = connection.sharedSlot, slot < clients.count, clients[slot] === connection {
            if broadcasting {
                clients[slot] = nil
                leftDuringBroadcast = true
            } else {
                removeSlot(slot)
            }
        }
        connection.sharedSlot = nil
        if !hasClients && !isFinished {
            var span = timeval(tv_sec: 0, tv_usec: 0)
            if !worker.draining {
                let ms = key.settings.linger.milliseconds
                span = timeval(tv_sec: ms / 1000, tv_usec: (ms % 1000) * 1000)
            }
            event_add(lingerTimer, &span)
        }
    }

    private func removeSlot(_ slot: Int) {
        let last = clients.removeLast()
        if slot < clients.count {
            clients[slot] = last
            last?.sharedSlot = slot
        }
    }

    private func broadcast(_ produced: SharedStream.Piece) {
        var piece = produced
        piece.heartbeats = heartbeatsWritten
        heartbeatsWritten = 0
        broadcasting = true
        for client in clients { client?.sharedPiece(piece) }
        broadcasting = false
        if leftDuringBroadcast {
            leftDuringBroadcast = false
            clients.removeAll { $0 == nil }
            for (i, client) in clients.enumerated() { client?.sharedSlot = i }
        }
    }

    fileprivate func lingerOver() {
        guard !hasClients, !isFinished else { return }
        logger.debug("shared stream of route \(key.route) closed: its last client left \(worker.draining ? "during the drain" : "\(key.settings.linger) ago")")
        io { machine in machine.abandon(self) }
    }

    /// Draining with no client: close now (a lingering stream would hold the exit back).
    func closeForDrain() {
        io { machine in machine.abandon(self) }
    }

    /// A reload: the upstream exchange takes the route's new heartbeat (`table` as in init).
    func settingsChanged(_ table: RouteTable) {
        io { machine in machine.settingsChanged(table, self) }
    }

    // MARK: Driving the machine

    /// Runs one machine entry point, then hands on what it wrote and finishes when it closed.
    private func io(_ body: (inout ExchangeMachine) -> Void) {
        guard !isFinished else { return }
        withExtendedLifetime(self) {
            body(&machine)
            upstream?.flush()
            deliverReceived()
            if case .closed = machine.state { finish() }
        }
    }

    /// Passes what the machine wrote for its client through `SharedStream`.
    private func deliverReceived() {
        let n = received.count
        guard n > 0 else { return }
        let now = MonotonicClock.milliseconds()
        received.pullup(n) { bytes in
            stream.consume(bytes, now: now, opened: openWaiting, emit: broadcast)
        }
        received.drain(n)
    }

    private func openWaiting() {
        if !counted, stream.phase == .live {
            counted = true
            ExchangeMetric.sharedUpstreams(route: key.route, delta: 1).apply(to: &worker.metrics)
        }
        guard stream.phase == .live else { return }
        let joined = waiting
        waiting = []
        for (connection, lastEventID) in joined { open(connection, lastEventID: lastEventID) }
    }

    /// The upstream exchange is over: every client's stream ends here.
    private func finish() {
        guard !isFinished else { return }
        let answer = stream.finish()
        isFinished = true
        event_del(lingerTimer)
        event_free(lingerTimer)
        if counted { ExchangeMetric.sharedUpstreams(route: key.route, delta: -1).apply(to: &worker.metrics) }
        worker.sharedStreamFinished(self)
        let live = clients.compactMap { $0 }
        let joined = waiting.map(\.0)
        clients = []
        waiting = []
        for connection in live { connection.sharedStreamEnded() }
        for connection in joined { connection.sharedStreamAnswered(answer) }
    }

    private func dropUpstream(pool address: SocketAddressSpec?) {
        guard let upstream else { return }
        self.upstream = nil
        worker.releaseUpstream(upstream, pool: address)
    }
}

// MARK: What the upstream exchange sees and does

extension SharedUpstream: EvBufferExchangeIO {
    /// The client side is memory: the proxy's request in, what the machine wrote out.
    func input(_ side: Side) -> EvBuffer {
        side == .client ? request : upstreamChannel.input
    }

    func output(_ side: Side) -> EvBuffer {
        side == .client ? received : upstreamChannel.output
    }

    private var upstreamChannel: Channel {
        guard let upstream else { preconditionFailure("shared stream \(key.route): the machine used an upstream it does not have") }
        return upstream
    }

    func clientPendingBytes() -> Int { received.count }

    func openUpstream(_ spec: SocketAddressSpec, pooled: Bool) -> UpstreamOpening {
        let (channel, opening) = worker.openUpstream(spec, pooled: pooled, for: self)
        upstream = channel
        return opening
    }

    func perform(_ action: ExchangeAction) {
        switch action {
        case .write(let side, let bytes):
            output(side).add(bytes)
            if side == .upstream { worker.metrics.bytesClientToUpstream += bytes.count }
        case .writeChunkHeader(let side, let count):
            let output = output(side)
            ChunkedEncoding.withChunkHeader(count) { output.add($0) }
        case .splice(let from, let count):
            input(from).move(count, to: output(from.other))
            if from == .client { worker.metrics.bytesClientToUpstream += count }
        case .discard(let side, let count):
            input(side).drain(count)
        case .setReading(let side, let enabled):
            if side == .upstream { upstream?.setReading(enabled) }
        case .setLowWatermark(let side, let bytes):
            if side == .upstream { upstream?.lowWatermark = bytes }
        case .flush(let side):
            if side == .upstream { upstream?.flush() } else { deliverReceived() }
        case .shutdownWrite(let side):
            if side == .upstream { upstream?.shutdownWrite() }
        case .releaseUpstream(let pool):
            dropUpstream(pool: pool)
        case .upstreamConnectTimedOut:
            if let upstream { worker.upstreamConnectTimedOut(upstream) }
        case .armTimer(let span, let common):
            worker.arm(timer, span, common: common)
        case .disarmTimer:
            event_del(timer)
        case .log(let level, let event):
            logger.log(level: level.swiftLogLevel,
                       "shared stream of route \(key.route): \(event.message(peer: "the proxy", describe: SocketErrors.describe))")
        case .count(let metric):
            if case .heartbeat = metric { heartbeatsWritten += 1 }
            if metric.countsForSharedUpstream { metric.apply(to: &worker.metrics) }
        case .accessLog, .joinSharedStream, .leaveSharedStream:
            // Its table has no access log and no sharing: the clients' exchanges log and share.
            break
        case .close:
            dropUpstream(pool: nil)
            event_free(timer)
        }
    }
}

extension SharedUpstream: ChannelDelegate {
    func channelReadable(_ channel: Channel) { io { machine in machine.upstreamReadable(self) } }
    func channelDrained(_ channel: Channel) { io { machine in machine.upstreamDrained(self) } }
    func channelConnected(_ channel: Channel) { io { machine in machine.upstreamConnected(self) } }
    func channelClosed(_ channel: Channel, error: Int32) {
        let end: SocketEnd = error == 0 ? .eof : SocketErrors.isQuietDisconnect(error) ? .vanished(errno: error) : .failed(errno: error)
        io { machine in machine.upstreamClosed(end, self) }
    }
    fileprivate func timerFired() { io { machine in machine.timerFired(self) } }
}

private func sharedTimerCallback(_ fd: Int32, _ events: Int16, _ context: UnsafeMutableRawPointer?) {
    Unmanaged<SharedUpstream>.fromOpaque(context!).takeUnretainedValue().timerFired()
}

private func sharedLingerCallback(_ fd: Int32, _ events: Int16, _ context: UnsafeMutableRawPointer?) {
    Unmanaged<SharedUpstream>.fromOpaque(context!).takeUnretainedValue().lingerOver()
}
