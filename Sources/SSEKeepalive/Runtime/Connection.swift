import CLibevent
#if canImport(Glibc)
import Glibc
#endif
import Logging

/// One client connection: its client channel, at most one upstream channel,
/// one timer, and the `ExchangeMachine` that decides everything. This class
/// only feeds the machine what the sockets and the timer report and carries
/// out the actions it returns; every `if` here is about an I/O result.
final class Connection {
    /// Changes once at most: a client joining a shared stream moves to the worker that owns it.
    private unowned var worker: Worker
    /// "<worker>.<n>", for logs.
    let id: String
    let peer: PeerAddress
    /// Set once in init (after `self` exists, since the channel reports to it).
    private var client: Channel!
    private var upstream: Channel?
    private let timer: OpaquePointer
    private var machine: ExchangeMachine
    /// A join the machine asked for, carried out once its call has returned.
    /// Boxed: a `SharedJoin` inline would add its size to every connection (memory per idle stream).
    private var pendingJoin: Box<SharedJoin>?
    /// The shared stream this client joined or waits for, and its place in the stream's client list.
    private var sharedStream: SharedUpstream?
    var sharedSlot: Int?

    private var logger: Logger { worker.logger }

    init?(worker: Worker, fd: Int32, id: String, peer: PeerAddress) {
        guard let timer = event_new(worker.base, -1, 0, timerCallback, nil) else { return nil }
        self.worker = worker
        self.id = id
        self.peer = peer
        self.timer = timer
        self.machine = ExchangeMachine(table: worker.settings.table)
        guard let client = Channel.accepted(fd: fd, base: worker.base, delegate: self) else {
            event_free(timer)
            return nil
        }
        self.client = client
        let context = Unmanaged.passUnretained(self).toOpaque()
        event_assign(timer, worker.base, -1, 0, timerCallback, context)
        Self.setNoDelay(fd)
    }

    func start() {
        machine.start(self)
        flushQueued()
    }

    /// Answers with an error page and closes (used before any request is read).
    func reject(status: Int, message: String) {
        machine.reject(status: status, reason: message, self)
        flushQueued()
    }

    /// A reload happened: new requests and open streams take the new settings.
    func settingsChanged() {
        machine.settingsChanged(worker.settings.table, self)
        flushQueued()
    }

    /// Draining: a connection with no request in progress closes now.
    func drainStarted() {
        machine.drainStarted(self)
        flushQueued()
    }

    /// The shutdown grace is over.
    func endForShutdown() {
        machine.shutdownGraceOver(self)
        flushQueued()
    }

    // MARK: Shared streams

    /// Joined `stream` (on this worker, the key's owner).
    func joined(_ stream: SharedUpstream) { sharedStream = stream }

    func sharedStreamOpened(head: ResponseHead, opening: [UInt8], replayed: Int, unknownID: Bool,
                            preambleSetsRetry: Bool, midEvent: Bool) {
        machine.sharedStreamOpened(head: head, opening: opening, replayed: replayed, unknownID: unknownID,
                                   preambleSetsRetry: preambleSetsRetry, self)
        if midEvent { machine.sharedJoinedMidEvent(self) }
        flushQueued()
    }

    func sharedPiece(_ piece: SharedStream.Piece) {
        machine.sharedPiece(piece, self)
        flushQueued()
    }

    func sharedStreamEnded() {
        sharedStream = nil
        machine.sharedStreamEnded(self)
        flushQueued()
    }

    func sharedStreamAnswered(_ response: [UInt8]?) {
        sharedStream = nil
        machine.sharedStreamAnswered(response, self)
        flushQueued()
    }

    /// Leaves this worker's loop (on this worker's thread): the client socket and
    /// the timer stop reporting here. Nothing is pending on them while the join is in flight.
    func detachFromWorker() {
        client.detachFromLoop()
        event_del(timer)
    }

    /// Joins `worker`'s loop (on that worker's thread).
    func attach(to worker: Worker) {
        self.worker = worker
        client.attach(to: worker.base)
        let context = Unmanaged.passUnretained(self).toOpaque()
        event_assign(timer, worker.base, -1, 0, timerCallback, context)
    }

    /// Writes what this loop turn queued on either side. A flush that empties an
    /// output gets no drain report later, so it is reported here.
    private func flushQueued() {
        if let join = pendingJoin?.value {
            // Outside the machine's call: the join may answer at once, or move this connection to another worker.
            pendingJoin = nil
            worker.joinShared(self, join)
            return
        }
        if isClosed { return }
        client.flush()
        upstream?.flush()
        if client.output.count <= client.lowWatermark { machine.clientDrained(self) }
        if !isClosed, let upstream, upstream.output.count <= upstream.lowWatermark { machine.upstreamDrained(self) }
    }

    private func channel(_ side: Side) -> Channel {
        switch side {
        case .client: return client
        case .upstream:
            guard let upstream else { preconditionFailure("conn \(id): the machine used an upstream it does not have") }
            return upstream
        }
    }

    private var isClosed: Bool {
        if case .closed = machine.state { return true }
        return false
    }

    private func dropUpstream(pool address: SocketAddressSpec?) {
        guard let upstream else { return }
        self.upstream = nil
        worker.releaseUpstream(upstream, pool: address)
    }

    private static func setNoDelay(_ fd: Int32) {
        guard fd >= 0 else { return }
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    private static func socketEnd(_ code: Int32) -> SocketEnd {
        if code == 0 { return .eof }
        return SocketErrors.isQuietDisconnect(code) ? .vanished(errno: code) : .failed(errno: code)
    }
}

// MARK: What the machine sees and does

extension Connection: EvBufferExchangeIO {
    func input(_ side: Side) -> EvBuffer { channel(side).input }

    func output(_ side: Side) -> EvBuffer { channel(side).output }

    func clientPendingBytes() -> Int { client.pendingBytes }

    func diagnosticAdmit() -> DiagnosticLimiter.Decision { worker.diagnosticAdmit(now: now()) }

    func diagnosticEnded() { worker.diagnosticEnded() }

    func openUpstream(_ spec: SocketAddressSpec, pooled: Bool) -> UpstreamOpening {
        let (channel, opening) = worker.openUpstream(spec, pooled: pooled, for: self)
        upstream = channel
        return opening
    }

    func perform(_ action: ExchangeAction) {
        switch action {
        case .write(let side, let bytes):
            channel(side).output.add(bytes)
            countBytes(bytes.count, to: side)
        case .writeChunkHeader(let side, let count):
            let output = channel(side).output
            ChunkedEncoding.withChunkHeader(count) { header in
                output.add(header)
                countBytes(header.count, to: side)
            }
        case .splice(let from, let count):
            channel(from).input.move(count, to: channel(from.other).output)
            countBytes(count, to: from.other)
        case .discard(let side, let count):
            channel(side).input.drain(count)
        case .setReading(let side, let enabled):
            channel(side).setReading(enabled)
        case .setLowWatermark(let side, let bytes):
            channel(side).lowWatermark = bytes
        case .flush(let side):
            channel(side).flush()
        case .shutdownWrite(let side):
            channel(side).shutdownWrite()
        case .releaseUpstream(let pool):
            dropUpstream(pool: pool)
        case .upstreamConnectTimedOut:
            if let upstream { worker.upstreamConnectTimedOut(upstream) }
        case .armTimer(let span, let common):
            worker.arm(timer, span, common: common)
        case .disarmTimer:
            event_del(timer)
        case .log(let level, let event):
            if case .compressedEventStream(let route) = event, !worker.compressedStreamWarnings.first(route) { return }
            logger.log(level: level.swiftLogLevel, "conn \(id): \(event.message(peer: "\(peer)", describe: SocketErrors.describe))")
        case .count(let metric):
            metric.apply(to: &worker.metrics)
        case .joinSharedStream(let join):
            pendingJoin = Box(join)
        case .leaveSharedStream:
            sharedStream?.leave(self)
            sharedStream = nil
        case .accessLog(var entry):
            entry.client = "\(peer)"
            entry.log(to: logger, format: worker.settings.config.logFormat)
        case .close:
            dropUpstream(pool: nil)
            event_free(timer)
            client.close()
            worker.forget(self)
        }
    }

    private func countBytes(_ n: Int, to side: Side) {
        if side == .client { worker.metrics.bytesUpstreamToClient += n } else { worker.metrics.bytesClientToUpstream += n }
    }
}

// MARK: Loop entry points

extension Connection: ChannelDelegate {
    // Each entry point ends by flushing what it queued: bytes read from one
    // side go out to the other in the same loop turn. The connection stays
    // alive to the end of the call even when the machine closed it.

    func channelReadable(_ channel: Channel) {
        withExtendedLifetime(self) {
            if channel === client { machine.clientReadable(self) } else { machine.upstreamReadable(self) }
            flushQueued()
        }
    }

    func channelDrained(_ channel: Channel) {
        withExtendedLifetime(self) {
            if channel === client { machine.clientDrained(self) } else { machine.upstreamDrained(self) }
            flushQueued()
        }
    }

    func channelConnected(_ channel: Channel) {
        withExtendedLifetime(self) {
            Self.setNoDelay(channel.fd)
            machine.upstreamConnected(self)
            flushQueued()
        }
    }

    func channelClosed(_ channel: Channel, error: Int32) {
        withExtendedLifetime(self) {
            let end = Self.socketEnd(error)
            if channel === client { machine.clientClosed(end, self) } else { machine.upstreamClosed(end, self) }
            flushQueued()
        }
    }

    fileprivate func timerFiredFromLoop() {
        machine.timerFired(self)
        flushQueued()
    }
}

private func timerCallback(_ fd: Int32, _ events: Int16, _ context: UnsafeMutableRawPointer?) {
    let connection = Unmanaged<Connection>.fromOpaque(context!).takeUnretainedValue()
    withExtendedLifetime(connection) { connection.timerFiredFromLoop() }
}

/// A rarely set value kept out of line, so it costs a connection one pointer.
private final class Box<Value> {
    let value: Value
    init(_ value: Value) { self.value = value }
}
