import CLibevent
import Logging

/// One event loop on one thread: its listeners, its connections, its timers.
/// Nothing here is shared with another worker.
final class Worker: @unchecked Sendable {
    let base: OpaquePointer
    let logger: Logger
    private(set) var settings: ProxySettings
    private var listeners: [OpaquePointer] = []
    private var connections: [ObjectIdentifier: Connection] = [:]
    private var commonTimeouts: [Int: UnsafePointer<timeval>] = [:]
    private var nextConnectionID: UInt64 = 0
    /// Routes already warned about a compressed event stream (SPEC 1.4: once per route).
    var warnedCompressedRoutes: Set<String> = []

    init(settings: ProxySettings, logger: Logger) throws(ServerError) {
        guard let base = event_base_new() else { throw ServerError("cannot create an event base") }
        self.base = base
        self.settings = settings
        self.logger = logger
    }

    deinit {
        for listener in listeners { evconnlistener_free(listener) }
        event_base_free(base)
    }

    var connectionCount: Int { connections.count }

    // MARK: Listening

    func listen(on address: ResolvedAddress) throws(ServerError) {
        let flags = UInt32(LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC)
        let context = Unmanaged.passUnretained(self).toOpaque()
        let listener = address.withSockaddr { sockaddr, length in
            evconnlistener_new_bind(base, acceptCallback, context, flags, 1024, sockaddr, length)
        }
        guard let listener else {
            throw ServerError("cannot listen on \(address): \(SocketErrors.describe(sse_errno()))")
        }
        listeners.append(listener)
        logger.info("listening on \(address)")
    }

    fileprivate func accept(fd: Int32, peer: UnsafeMutablePointer<sockaddr>?) {
        nextConnectionID &+= 1
        let peerName = SocketErrors.describe(peer: UnsafePointer(peer))
        guard let connection = Connection(worker: self, fd: fd, id: nextConnectionID, peer: peerName) else {
            evutil_closesocket(fd)
            logger.warning("cannot set up connection from \(peerName)")
            return
        }
        connections[ObjectIdentifier(connection)] = connection
        if connections.count > settings.config.maxConnections {
            connection.reject(status: 503, message: "too many connections")
        } else {
            connection.start()
        }
    }

    func forget(_ connection: Connection) {
        connections.removeValue(forKey: ObjectIdentifier(connection))
    }

    // MARK: Timers

    /// libevent's common timeout for `span` on this base: O(1) re-arming when many timers share it.
    func commonTimeout(_ span: TimeSpan) -> UnsafePointer<timeval> {
        if let known = commonTimeouts[span.milliseconds] { return known }
        var tv = timeval(tv_sec: span.milliseconds / 1000, tv_usec: (span.milliseconds % 1000) * 1000)
        // At most 256 per base; beyond that (never with sane configs) libevent falls back to the heap.
        let common = commonTimeouts.count < 200 ? event_base_init_common_timeout(base, &tv) : nil
        let pointer = common ?? {
            let own = UnsafeMutablePointer<timeval>.allocate(capacity: 1)
            own.initialize(to: tv)
            return UnsafePointer(own)
        }()
        commonTimeouts[span.milliseconds] = pointer
        return pointer
    }

    // MARK: Loop

    func run() {
        event_base_dispatch(base)
    }

    func stop() {
        event_base_loopbreak(base)
    }
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
