import CLibevent
#if canImport(Glibc)
import Glibc
#endif

/// A socket address ready for bind/connect, resolved once from a config spec.
struct ResolvedAddress: @unchecked Sendable, CustomStringConvertible {
    let spec: SocketAddressSpec
    private(set) var storage = sockaddr_storage()
    private(set) var length: socklen_t = 0

    var description: String { spec.description }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    init(_ spec: SocketAddressSpec) throws(Failure) {
        self.spec = spec
        switch spec {
        case .unix(let path):
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            let capacity = MemoryLayout.size(ofValue: addr.sun_path)
            guard path.utf8.count < capacity else { throw Failure(description: "unix socket path too long: \(path)") }
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in
                raw.copyBytes(from: path.utf8)
                raw[path.utf8.count] = 0
            }
            withUnsafeMutableBytes(of: &storage) { $0.copyBytes(from: withUnsafeBytes(of: addr) { Array($0) }) }
            length = socklen_t(MemoryLayout<sockaddr_un>.size)
        case .inet(let host, let port):
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            hints.ai_flags = AI_NUMERICSERV
            var result: UnsafeMutablePointer<addrinfo>?
            let status = getaddrinfo(host, String(port), &hints, &result)
            guard status == 0, let first = result else {
                throw Failure(description: "cannot resolve \(host): \(String(cString: gai_strerror(status)))")
            }
            defer { freeaddrinfo(result) }
            withUnsafeMutableBytes(of: &storage) { dst in
                dst.copyMemory(from: UnsafeRawBufferPointer(start: first.pointee.ai_addr, count: Int(first.pointee.ai_addrlen)))
            }
            length = first.pointee.ai_addrlen
        }
    }

    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, Int32) -> R) -> R {
        withUnsafeBytes(of: storage) { raw in
            body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), Int32(length))
        }
    }
}

enum SocketErrors {
    /// Errors that mean "the peer went away": logged at debug only (docs/behaviour.md, "Logs").
    static func isQuietDisconnect(_ code: Int32) -> Bool {
        code == ECONNRESET || code == EPIPE || code == ECONNABORTED
    }

    static func describe(_ code: Int32) -> String {
        String(cString: strerror(code)).lowercased()
    }
}

/// A client's address, kept as bytes (24 B inline) and formatted only when a
/// log line needs it: memory per open stream is a product figure.
struct PeerAddress: CustomStringConvertible {
    private var family: sa_family_t = 0
    private var port: UInt16 = 0
    private var address: (UInt64, UInt64) = (0, 0)

    init(_ sockaddrPointer: UnsafePointer<sockaddr>?) {
        guard let sockaddrPointer else { return }
        family = sockaddrPointer.pointee.sa_family
        switch Int32(family) {
        case AF_INET:
            sockaddrPointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                port = UInt16(bigEndian: sin.pointee.sin_port)
                withUnsafeMutableBytes(of: &address) { dst in
                    withUnsafeBytes(of: sin.pointee.sin_addr) { dst.copyMemory(from: $0) }
                }
            }
        case AF_INET6:
            sockaddrPointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                port = UInt16(bigEndian: sin6.pointee.sin6_port)
                withUnsafeMutableBytes(of: &address) { dst in
                    withUnsafeBytes(of: sin6.pointee.sin6_addr) { dst.copyMemory(from: $0) }
                }
            }
        default:
            break
        }
    }

    /// "127.0.0.1:52311", "[::1]:52311", or "unix" for local sockets.
    var description: String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        var bytes = address
        switch Int32(family) {
        case AF_INET:
            inet_ntop(AF_INET, &bytes, &text, socklen_t(text.count))
            return "\(String(cString: text)):\(port)"
        case AF_INET6:
            inet_ntop(AF_INET6, &bytes, &text, socklen_t(text.count))
            return "[\(String(cString: text))]:\(port)"
        default:
            return "unix"
        }
    }
}

enum MonotonicClock {
    static func milliseconds() -> Int {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return now.tv_sec * 1000 + now.tv_nsec / 1_000_000
    }
}
