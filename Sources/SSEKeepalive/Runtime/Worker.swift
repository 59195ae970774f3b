import CLibevent
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One event loop on one thread: its listeners, its connections, its timers,
/// its counters. Nothing here is touched by another thread except the
/// mailbox, which the server fills and the worker empties on its own loop.
final class Worker: @unchecked Sendable {
    enum Command: @unchecked Sendable {
        /// Start accepting on these already-listening sockets.
        case adopt([SocketAddressSpec: Int32])
        /// Stop accepting on these addresses.
        case unlisten([SocketAddressSpec])
        /// New connections use these settings; open streams take their route's new heartbeat.
        case apply(ProxySettings, Logger.Level)
        /// Stop accepting, close idle connections, close the rest as they finish.
        case drain
        /// The shutdown grace is over: end event streams and cut what is left.
        case endStreams
        case snapshot(MetricsReply)
        /// A client (detached from its accepting worker) joins a shared stream this worker owns.
        case joinShared(Connection, SharedJoin)
    }

    let index: Int
    let base: OpaquePointer
    private(set) var logger: Logger
    private(set) var settings: ProxySettings
    private(set) var draining = false
    /// Live counters of this worker; copied out on request, never shared.
    var metrics = MetricsSnapshot()
    /// Idle upstream connections, reused by the next request to the same address.
    let upstreamPool = UpstreamPool()
    /// Diagnostic streams of this worker (`diagnostic: true` routes): at most 2 at once, 10 starts a minute.
    private var diagnosticLimiter: DiagnosticLimiter?

    func diagnosticAdmit(now: Int) -> DiagnosticLimiter.Decision {
        if diagnosticLimiter == nil { diagnosticLimiter = DiagnosticLimiter(now: Int64(now)) }
        return diagnosticLimiter!.request(now: Int64(now))
    }

    func diagnosticEnded() { diagnosticLimiter?.finished() }
    /// Routes already warned about a compressed event stream (docs/behaviour.md, "Event streams": once per route, across workers).
    let compressedStreamWarnings: WarnOnce

    /// Every worker of the process, by index: a share key's stream lives on
    /// `shareOwners[hash(key) % count]`, so there is one per process, not per worker.
    var shareOwners: [Worker] = []
    /// The shared streams this worker owns.
    private var sharedStreams: [ShareKey: SharedUpstream] = [:]
    private var sharedStreamCount = 0
    private var sharedTableCache: (source: RouteTable, table: RouteTable)?

    /// The settings of the proxy's own exchanges with shared upstreams, made once per (re)load.
    private var sharedUpstreamTable: RouteTable {
        let source = settings.table
        if let cached = sharedTableCache, cached.source === source { return cached.table }
        let table = SharedUpstreamTable.make(from: settings.table)
        sharedTableCache = (source, table)
        return table
    }

    private var listeners: [SocketAddressSpec: OpaquePointer] = [:]
    private var connections: [ObjectIdentifier: Connection] = [:]
    private var commonTimeouts: [Int: UnsafePointer<timeval>] = [:]
    private var nextConnectionNumber: UInt64 = 0
    private let mailbox = Mutex<[Command]>([])
    /// Set (under the mailbox lock) once the loop has returned for good.
    private nonisolated(unsafe) var loopEnded = false
    private var wakeEvent: OpaquePointer?
    /// Re-enables accepting after a pause for EMFILE/ENFILE.
    private var resumeAcceptEvent: OpaquePointer?
    /// Once a second: close pooled upstream connections idle past their reuse window.
    private var poolSweepEvent: OpaquePointer?
    private var acceptPaused = false
    private var stopped = false
    private let onStop: @Sendable (Int) -> Void
    /// Open client connections across all workers (`limits.max_connections` is global).
    private let openConnections: ConnectionCount

    init(index: Int, settings: ProxySettings, logger: Logger, openConnections: ConnectionCount,
         compressedStreamWarnings: WarnOnce, onStop: @escaping @Sendable (Int) -> Void) throws(ServerError) {
        guard let base = Self.makeBase() else { throw ServerError("cannot create an event base") }
        self.index = index
        self.base = base
        self.settings = settings
        self.logger = logger
        self.onStop = onStop
        self.openConnections = openConnections
        self.compressedStreamWarnings = compressedStreamWarnings
        let context = Unmanaged.passUnretained(self).toOpaque()
        wakeEvent = event_new(base, -1, 0, wakeCallback, context)
        resumeAcceptEvent = event_new(base, -1, 0, resumeAcceptCallback, context)
        poolSweepEvent = event_new(base, -1, Int16(EV_PERSIST), poolSweepCallback, context)
        var second = timeval(tv_sec: 1, tv_usec: 0)
        if let poolSweepEvent { event_add(poolSweepEvent, &second) }
    }

    /// An event base whose epoll changes are batched per loop turn: a write
    /// interest added and dropped in the same turn costs no syscall. (The
    /// changelist's one caveat, dup()ed descriptors, does not apply here.)
    private static func makeBase() -> OpaquePointer? {
        guard let config = event_config_new() else { return nil }
        defer { event_config_free(config) }
        event_config_set_flag(config, Int32(EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST.rawValue))
        return event_base_new_with_config(config)
    }

    deinit {
        for listener in listeners.values { evconnlistener_free(listener) }
        if let wakeEvent { event_free(wakeEvent) }
        if let resumeAcceptEvent { event_free(resumeAcceptEvent) }
        if let poolSweepEvent { event_free(poolSweepEvent) }
        event_base_free(base)
    }

    // MARK: Thread and mailbox

    /// Runs the loop on a new thread until the worker has drained.
    func start() throws(ServerError) {
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        guard pthread_create(&thread, nil, workerThreadMain, context) == 0 else {
            Unmanaged<Worker>.fromOpaque(context).release()
            throw ServerError("cannot start worker thread \(index)")
        }
        pthread_detach(thread)
    }

    fileprivate func runLoop() {
        event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY)
        // From here on the mailbox is read by no one: answer its last questions.
        mailbox.withLock { queued in
            loopEnded = true
            for case .snapshot(let reply) in queued { reply.deliver(snapshot(), from: index) }
            queued.removeAll()
        }
        shareOwners = []
        onStop(index)
    }

    /// Thread-safe: queue a command and wake the loop.
    func send(_ command: Command) {
        let answered = mailbox.withLock { queued in
            // A drained worker's loop has ended: a scrape gets its final counters at once.
            if loopEnded, case .snapshot(let reply) = command {
                reply.deliver(snapshot(), from: index)
                return true
            }
            queued.append(command)
            return loopEnded
        }
        if !answered, let wakeEvent { event_active(wakeEvent, Int32(EV_READ), 0) }
    }

    private func snapshot() -> MetricsSnapshot {
        var copy = metrics
        copy.connectionsOpen = connections.count
        copy.acceptedByWorker = [index: metrics.connectionsAccepted]
        return copy
    }

    fileprivate func wake() {
        let commands = mailbox.withLock { queued in
            defer { queued.removeAll() }
            return queued
        }
        for command in commands { perform(command) }
    }

    private func perform(_ command: Command) {
        switch command {
        case .adopt(let sockets):
            for (spec, fd) in sockets { adopt(fd, for: spec) }
        case .unlisten(let specs):
            for spec in specs {
                if let listener = listeners.removeValue(forKey: spec) { evconnlistener_free(listener) }
            }
        case .apply(let newSettings, let level):
            // Pooled connections to addresses a name no longer has are not reused.
            for (spec, old) in settings.upstreams where newSettings.upstreams[spec]?.addresses != old.addresses {
                upstreamPool.closeAll(for: spec)
            }
            settings = newSettings
            logger.logLevel = level
            for connection in connections.values { connection.settingsChanged() }
            if !sharedStreams.isEmpty {
                let table = sharedUpstreamTable
                for stream in sharedStreams.values { stream.settingsChanged(table) }
            }
        case .drain:
            draining = true
            upstreamPool.closeAll()
            for listener in listeners.values { evconnlistener_free(listener) }
            listeners.removeAll()
            for connection in Array(connections.values) { connection.drainStarted() }
            for stream in Array(sharedStreams.values) where !stream.hasClients { stream.closeForDrain() }
            stopIfDrained()
        case .endStreams:
            for connection in Array(connections.values) { connection.endForShutdown() }
            stopIfDrained()
        case .snapshot(let reply):
            reply.deliver(snapshot(), from: index)
        case .joinShared(let connection, let join):
            connections[ObjectIdentifier(connection)] = connection
            connection.attach(to: self)
            joinLocally(connection, join)
        }
    }

    // MARK: Shared streams

    /// A client asks for the shared stream of `join.key`: joined here when this
    /// worker owns the key, else handed to the owner (once per join: nothing
    /// crosses threads per event).
    func joinShared(_ connection: Connection, _ join: SharedJoin) {
        let owner = shareOwners.isEmpty ? self
            : shareOwners[Int(UInt(bitPattern: join.key.hashValue) % UInt(shareOwners.count))]
        guard owner !== self else {
            joinLocally(connection, join)
            return
        }
        connection.detachFromWorker()
        connections.removeValue(forKey: ObjectIdentifier(connection))
        owner.send(.joinShared(connection, join))
        stopIfDrained()
    }

    private func joinLocally(_ connection: Connection, _ join: SharedJoin) {
        if let stream = sharedStreams[join.key], !stream.isFinished {
            connection.joined(stream)
            stream.add(connection, lastEventID: join.lastEventID)
            return
        }
        sharedStreamCount += 1
        let tag = "\(String(WallClock.milliseconds(), radix: 36))\(index)x\(sharedStreamCount)"
        guard let stream = SharedUpstream(worker: self, key: join.key, join: join, table: sharedUpstreamTable, tag: tag) else {
            connection.sharedStreamAnswered(nil)
            return
        }
        sharedStreams[join.key] = stream
        connection.joined(stream)
        stream.add(connection, lastEventID: join.lastEventID)
        stream.start()
    }

    /// The stream's upstream exchange is over: the next join opens a new one.
    func sharedStreamFinished(_ stream: SharedUpstream) {
        if sharedStreams[stream.key] === stream { sharedStreams.removeValue(forKey: stream.key) }
        stopIfDrained()
    }

    private func stopIfDrained() {
        guard draining, connections.isEmpty, sharedStreams.isEmpty, !stopped else { return }
        if let poolSweepEvent { event_del(poolSweepEvent) }
        stopped = true
        event_base_loopbreak(base)
    }

    // MARK: Listening

    private func adopt(_ fd: Int32, for spec: SocketAddressSpec) {
        let flags = UInt32(LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC)
        let context = Unmanaged.passUnretained(self).toOpaque()
        guard !draining, let listener = evconnlistener_new(base, acceptCallback, context, flags, 0, fd) else {
            Glibc.close(fd)
            return
        }
        evconnlistener_set_error_cb(listener, acceptErrorCallback)
        if acceptPaused { evconnlistener_disable(listener) }
        if let old = listeners.updateValue(listener, forKey: spec) { evconnlistener_free(old) }
    }

    /// accept() failed (typically EMFILE/ENFILE): the listening socket stays readable, so
    /// retrying at once would spin. Like nginx, pause accepting briefly and say so once.
    fileprivate func acceptFailed(code: Int32) {
        guard !acceptPaused else { return }
        acceptPaused = true
        logger.error("accept failed: \(SocketErrors.describe(code)); pausing new connections for 500ms")
        for listener in listeners.values { evconnlistener_disable(listener) }
        var pause = timeval(tv_sec: 0, tv_usec: 500_000)
        if let resumeAcceptEvent { event_add(resumeAcceptEvent, &pause) }
    }

    fileprivate func resumeAccepting() {
        acceptPaused = false
        for listener in listeners.values { evconnlistener_enable(listener) }
    }

    fileprivate func accept(fd: Int32, peer: UnsafeMutablePointer<sockaddr>?) {
        nextConnectionNumber &+= 1
        let peerAddress = PeerAddress(UnsafePointer(peer))
        let id = "\(index).\(nextConnectionNumber)"
        guard let connection = Connection(worker: self, fd: fd, id: id, peer: peerAddress) else {
            evutil_closesocket(fd)
            logger.warning("cannot set up a connection from \(peerAddress)")
            return
        }
        connections[ObjectIdentifier(connection)] = connection
        metrics.connectionsAccepted += 1
        if openConnections.increment() > settings.config.maxConnections {
            connection.reject(status: 503, message: "too many connections")
        } else {
            connection.start()
        }
    }

    /// Hook for the connection: call it when `timeouts.connect` expires on an
    /// upstream channel that is still connecting, before closing it. Connect
    /// errors are reported by the channel itself; a timeout is not an error
    /// the socket sees.
    func upstreamConnectTimedOut(_ channel: Channel) {
        channel.reportConnectFailure()
    }

    // MARK: Upstream connections and timers of exchanges (Connection, SharedUpstream)

    /// An idle pooled connection to `spec` when `pooled` allows, else a new connect; reports go to `delegate`.
    func openUpstream(_ spec: SocketAddressSpec, pooled: Bool, for delegate: ChannelDelegate) -> (Channel?, UpstreamOpening) {
        if pooled, let channel = upstreamPool.take(spec) {
            channel.delegate = delegate
            return (channel, .pooled)
        }
        // An exchange that started before a reload may name an upstream the new settings dropped.
        guard let address = settings.address(of: spec) ?? (try? ResolvedAddress(spec)),
              let channel = Channel.connect(to: address, base: base, delegate: delegate) else {
            return (nil, .failed(errno: sse_errno()))
        }
        return (channel, .connecting)
    }

    /// Back to the pool of `address`, or (nil) closed.
    func releaseUpstream(_ upstream: Channel, pool address: SocketAddressSpec?) {
        if let address {
            upstreamPool.give(upstream, to: address)
        } else {
            // Dropped before the upstream closed its side (the client left mid-stream,
            // a timeout, shutdown): reset it, as HAProxy does, instead of leaving a
            // TIME_WAIT socket and a FIN exchange per stream.
            upstream.close(abortive: !upstream.peerClosed)
        }
    }

    /// Starts an exchange's timer; `common` spans share libevent's O(1) common timeout.
    func arm(_ timer: OpaquePointer, _ span: TimeSpan, common: Bool) {
        if common {
            event_add(timer, commonTimeout(span))
        } else {
            var once = timeval(tv_sec: span.milliseconds / 1000, tv_usec: (span.milliseconds % 1000) * 1000)
            event_add(timer, &once)
        }
    }

    func forget(_ connection: Connection) {
        guard connections.removeValue(forKey: ObjectIdentifier(connection)) != nil else { return }
        openConnections.decrement()
        stopIfDrained()
    }

    // MARK: Timers

    /// libevent's common timeout for `span` on this base: O(1) re-arming when many timers share it.
    func commonTimeout(_ span: TimeSpan) -> UnsafePointer<timeval> {
        if let known = commonTimeouts[span.milliseconds] { return known }
        var tv = timeval(tv_sec: span.milliseconds / 1000, tv_usec: (span.milliseconds % 1000) * 1000)
        // libevent allows 256 per base; reloads with ever new intervals fall back to a plain timeval.
        let common = commonTimeouts.count < 200 ? event_base_init_common_timeout(base, &tv) : nil
        let pointer = common ?? {
            let own = UnsafeMutablePointer<timeval>.allocate(capacity: 1)
            own.initialize(to: tv)
            return UnsafePointer(own)
        }()
        commonTimeouts[span.milliseconds] = pointer
        return pointer
    }
}

/// Client connections open across workers: touched once per accept and close, never per read.
final class ConnectionCount: Sendable {
    private let value = Atomic<Int>(0)

    /// The count including the new connection.
    func increment() -> Int { value.wrappingAdd(1, ordering: .relaxed).newValue }
    func decrement() { value.wrappingSubtract(1, ordering: .relaxed) }
}

/// Keys already reported, shared by workers (used for rare warnings only).
final class WarnOnce: Sendable {
    private let seen = Mutex<Set<String>>([])

    /// True the first time `key` is seen.
    func first(_ key: String) -> Bool { seen.withLock { $0.insert(key).inserted } }
}

/// A scrape in progress: each worker drops its copy here from its own thread.
final class MetricsReply: @unchecked Sendable {
    private let state: Mutex<(total: MetricsSnapshot, perWorker: [Int: MetricsSnapshot], pending: Int)>

    init(workers: Int) {
        state = Mutex((MetricsSnapshot(), [:], workers))
    }

    func deliver(_ snapshot: MetricsSnapshot, from worker: Int) {
        state.withLock {
            $0.total.add(snapshot)
            $0.perWorker[worker] = snapshot
            $0.pending -= 1
        }
    }

    /// Waits (polling, bounded) until every worker answered or `timeoutMs` passed.
    func wait(timeoutMs: Int) -> (total: MetricsSnapshot, perWorker: [Int: MetricsSnapshot]) {
        var waited = 0
        while waited < timeoutMs * 2 {
            if state.withLock({ $0.pending <= 0 }) { break }
            usleep(500)
            waited += 1
        }
        return state.withLock { ($0.total, $0.perWorker) }
    }
}

private func workerThreadMain(_ context: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let worker = Unmanaged<Worker>.fromOpaque(context!).takeRetainedValue()
    worker.runLoop()
    return nil
}

private func wakeCallback(_ fd: Int32, _ events: Int16, _ context: UnsafeMutableRawPointer?) {
    Unmanaged<Worker>.fromOpaque(context!).takeUnretainedValue().wake()
}

private func acceptErrorCallback(_ listener: OpaquePointer?, _ context: UnsafeMutableRawPointer?) {
    let code = sse_errno()
    Unmanaged<Worker>.fromOpaque(context!).takeUnretainedValue().acceptFailed(code: code)
}

private func poolSweepCallback(_ fd: Int32, _ events: Int16, _ context: UnsafeMutableRawPointer?) {
    Unmanaged<Worker>.fromOpaque(context!).takeUnretainedValue().upstreamPool.sweep()
}

private func resumeAcceptCallback(_ fd: Int32, _ events: Int16, _ context: UnsafeMutableRawPointer?) {
    Unmanaged<Worker>.fromOpaque(context!).takeUnretainedValue().resumeAccepting()
}

private func acceptCallback(
    _ listener: OpaquePointer?, _ fd: Int32, _ peer: UnsafeMutablePointer<sockaddr>?, _ length: Int32,
    _ context: UnsafeMutableRawPointer?
) {
    Unmanaged<Worker>.fromOpaque(context!).takeUnretainedValue().accept(fd: fd, peer: peer)
}

public struct ServerError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
