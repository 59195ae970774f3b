import CLibevent
#if canImport(Glibc)
import Glibc
#endif

/// Opens listening sockets. Each worker gets its own socket on the same
/// address (SO_REUSEPORT), so the kernel spreads connections and no accept
/// lock is shared.
enum ListenSocket {
    static func open(_ address: ResolvedAddress, reusePort: Bool) throws(ServerError) -> Int32 {
        let family = Int32(address.withSockaddr { sockaddr, _ in sockaddr.pointee.sa_family })
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ServerError("cannot listen on \(address): \(SocketErrors.describe(sse_errno()))") }
        var one: Int32 = 1
        let size = socklen_t(MemoryLayout<Int32>.size)
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, size)
        if reusePort { _ = setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, size) }
        if family == AF_INET6 { _ = setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, size) }
        let bound = address.withSockaddr { bind(fd, $0, socklen_t($1)) }
        guard bound == 0, Glibc.listen(fd, 1024) == 0 else {
            let code = sse_errno()
            Glibc.close(fd)
            throw ServerError("cannot listen on \(address): \(SocketErrors.describe(code))")
        }
        return fd
    }
}
