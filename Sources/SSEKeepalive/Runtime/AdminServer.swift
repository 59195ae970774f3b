import CLibevent
#if canImport(Glibc)
import Glibc
#endif

/// The admin listener on the control loop: one request per connection,
/// answered by `AdminEndpoint`, then closed.
final class AdminServer {
    private let base: OpaquePointer
    private var listener: OpaquePointer?
    private unowned let server: Server
    private var open: [ObjectIdentifier: AdminConnection] = [:]

    init(base: OpaquePointer, address: ResolvedAddress, server: Server) throws(ServerError) {
        self.base = base
        self.server = server
        let fd = try ListenSocket.open(address, reusePort: false)
        let context = Unmanaged.passUnretained(self).toOpaque()
        guard let listener = evconnlistener_new(base, adminAcceptCallback, context,
                                                UInt32(LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC), 0, fd) else {
            Glibc.close(fd)
            throw ServerError("cannot listen on \(address)")
        }
        self.listener = listener
    }

    deinit {
        if let listener { evconnlistener_free(listener) }
        for connection in open.values { connection.free() }
    }

    fileprivate func accept(_ fd: Int32) {
        guard let bev = bufferevent_socket_new(base, fd, Int32(BEV_OPT_CLOSE_ON_FREE.rawValue)) else {
            Glibc.close(fd)
            return
        }
        let connection = AdminConnection(bev: bev, admin: self)
        open[ObjectIdentifier(connection)] = connection
    }

    fileprivate func respond(to request: RequestHead) -> [UInt8] {
        AdminEndpoint.response(method: request.method, target: request.target, draining: server.isDraining) {
            server.collectMetrics()
        }
    }

    fileprivate func finished(_ connection: AdminConnection) {
        connection.free()
        open.removeValue(forKey: ObjectIdentifier(connection))
    }
}

private final class AdminConnection {
    private let bev: OpaquePointer
    private unowned let admin: AdminServer
    private var answered = false
    private var freed = false

    init(bev: OpaquePointer, admin: AdminServer) {
        self.bev = bev
        self.admin = admin
        let context = Unmanaged.passUnretained(self).toOpaque()
        bufferevent_setcb(bev, adminReadCallback, adminWriteCallback, adminEventCallback, context)
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        bufferevent_set_timeouts(bev, &timeout, &timeout)
        bufferevent_enable(bev, Int16(EV_READ | EV_WRITE))
    }

    func free() {
        guard !freed else { return }
        freed = true
        bufferevent_free(bev)
    }

    fileprivate func readable() {
        guard !answered else { return }
        let input = EvBuffer(bufferevent_get_input(bev))
        let result = input.pullup(8193) { HeadParser.parseRequest($0, maxHeaderBytes: 8192) }
        switch result {
        case .incomplete:
            return
        case .failed(let error):
            answer(ErrorPage.response(status: ErrorPage.status(for: error), message: "bad admin request"))
        case .complete(let head, _):
            answer(admin.respond(to: head))
        }
    }

    private func answer(_ bytes: [UInt8]) {
        answered = true
        bufferevent_disable(bev, Int16(EV_READ))
        EvBuffer(bufferevent_get_output(bev)).add(bytes)
    }

    fileprivate func writable() {
        if answered { admin.finished(self) }
    }

    fileprivate func event() {
        admin.finished(self)
    }
}

private func adminAcceptCallback(
    _ listener: OpaquePointer?, _ fd: Int32, _ peer: UnsafeMutablePointer<sockaddr>?, _ length: Int32,
    _ context: UnsafeMutableRawPointer?
) {
    Unmanaged<AdminServer>.fromOpaque(context!).takeUnretainedValue().accept(fd)
}

private func adminConnection(_ context: UnsafeMutableRawPointer?) -> AdminConnection {
    Unmanaged<AdminConnection>.fromOpaque(context!).takeUnretainedValue()
}

private func adminReadCallback(_ bev: OpaquePointer?, _ context: UnsafeMutableRawPointer?) {
    adminConnection(context).readable()
}

private func adminWriteCallback(_ bev: OpaquePointer?, _ context: UnsafeMutableRawPointer?) {
    adminConnection(context).writable()
}

private func adminEventCallback(_ bev: OpaquePointer?, _ events: Int16, _ context: UnsafeMutableRawPointer?) {
    adminConnection(context).event()
}
