import CLibevent
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A socket address ready for bind/connect, resolved from a config spec.
/// A host name may resolve to several addresses: `withSockaddr` (bind) uses
/// the first, `connectTarget()` takes turns over all of them (see
/// `UpstreamCandidates`).
struct ResolvedAddress: @unchecked Sendable, CustomStringConvertible {
    let spec: SocketAddressSpec
    private(set) var storage = sockaddr_storage()
    private(set) var length: socklen_t = 0
    /// Set for host names (not for IP literals or unix paths): every address
    /// of the name, and where a failed connect is reported.
    let candidates: UpstreamCandidates?

    var description: String { spec.description }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// Resolves now (getaddrinfo; blocking: start and reload only).
    init(_ spec: SocketAddressSpec, onConnectFailure: (@Sendable () -> Void)? = nil) throws(Failure) {
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
            self.init(spec: spec, first: AddressBytes(withUnsafeBytes(of: addr) { Array($0) }), candidates: nil)
        case .inet(let host, let port):
            let found: [AddressBytes]
            switch AddressBytes.lookup(host: host, port: port) {
            case .success(let addresses): found = addresses
            case .failure(let failure): throw failure
            }
            try self.init(spec, addresses: found, onConnectFailure: onConnectFailure)
        }
    }

    /// From addresses looked up elsewhere (the resolver thread).
    init(_ spec: SocketAddressSpec, addresses: [AddressBytes], onConnectFailure: (@Sendable () -> Void)?) throws(Failure) {
        guard let first = addresses.first else { throw Failure(description: "\(spec): no addresses") }
        var isName = false
        if case .inet(let host, _) = spec { isName = !AddressBytes.isNumeric(host) }
        self.init(spec: spec, first: first,
                  candidates: isName ? UpstreamCandidates(addresses: addresses, onConnectFailure: onConnectFailure) : nil)
    }

    private init(spec: SocketAddressSpec, first: AddressBytes, candidates: UpstreamCandidates?) {
        self.spec = spec
        self.candidates = candidates
        withUnsafeMutableBytes(of: &storage) { $0.copyBytes(from: first.bytes.prefix(MemoryLayout<sockaddr_storage>.size)) }
        length = socklen_t(first.bytes.count)
    }

    /// Every address (one for IP literals and unix paths).
    var addresses: [AddressBytes] {
        candidates?.addresses ?? [AddressBytes(withUnsafeBytes(of: storage) { Array($0.prefix(Int(length))) })]
    }

    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, Int32) -> R) -> R {
        withUnsafeBytes(of: storage) { raw in
            body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), Int32(length))
        }
    }

    /// The address the next connect uses.
    func connectTarget() -> ConnectTarget {
        guard let candidates else { return ConnectTarget(address: self, candidates: nil, index: 0) }
        return ConnectTarget(address: self, candidates: candidates, index: candidates.pick())
    }
}

/// One connect's choice among a name's addresses; reports how it went.
struct ConnectTarget {
    let address: ResolvedAddress
    let candidates: UpstreamCandidates?
    let index: Int

    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, Int32) -> R) -> R {
        guard let candidates else { return address.withSockaddr(body) }
        return candidates.addresses[index].withSockaddr(body)
    }
}

/// The addresses of one host name, shared by all workers' connects: round
/// robin, skipping an address whose connect just failed (`CandidatePicker`),
/// and a failed connect asks the resolver to look the name up again.
final class UpstreamCandidates: @unchecked Sendable {
    let addresses: [AddressBytes]
    private let picker: Mutex<CandidatePicker>
    private let onConnectFailure: (@Sendable () -> Void)?

    init(addresses: [AddressBytes], onConnectFailure: (@Sendable () -> Void)?) {
        self.addresses = addresses
        self.picker = Mutex(CandidatePicker(count: addresses.count))
        self.onConnectFailure = onConnectFailure
    }

    func pick() -> Int {
        if addresses.count == 1 { return 0 }
        let now = Self.nowMs()
        return picker.withLock { $0.next(atMs: now) }
    }

    func connectFailed(_ index: Int) {
        if addresses.count > 1 {
            let now = Self.nowMs()
            picker.withLock { $0.failed(index, atMs: now) }
        }
        onConnectFailure?()
    }

    func connected(_ index: Int) {
        if addresses.count > 1 { picker.withLock { $0.connected(index) } }
    }

    static func nowMs() -> Int {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return now.tv_sec * 1000 + now.tv_nsec / 1_000_000
    }
}

/// One socket address as bytes (a sockaddr_in, sockaddr_in6 or sockaddr_un).
struct AddressBytes: Hashable, Sendable, CustomStringConvertible {
    let bytes: [UInt8]

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, Int32) -> R) -> R {
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { $0.copyBytes(from: bytes.prefix(MemoryLayout<sockaddr_storage>.size)) }
        return withUnsafeBytes(of: storage) { raw in
            body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), Int32(bytes.count))
        }
    }

    /// "10.0.0.5:3000", "[fd00::5]:3000".
    var description: String {
        withSockaddr { pointer, _ in PeerAddress(pointer).description }
    }

    static func isNumeric(_ host: String) -> Bool {
        var v4 = in_addr(), v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    /// Every distinct TCP address of `host`, in the resolver's order.
    static func lookup(host: String, port: UInt16) -> Result<[AddressBytes], ResolvedAddress.Failure> {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &result)
        guard status == 0, result != nil else {
            return .failure(ResolvedAddress.Failure(description: "cannot resolve \(host): \(String(cString: gai_strerror(status)))"))
        }
        defer { freeaddrinfo(result) }
        var found: [AddressBytes] = []
        var entry = result
        while let info = entry {
            if let address = info.pointee.ai_addr {
                let bytes = AddressBytes(Array(UnsafeRawBufferPointer(start: address, count: Int(info.pointee.ai_addrlen))))
                if !found.contains(bytes) { found.append(bytes) }
            }
            entry = info.pointee.ai_next
        }
        return found.isEmpty ? .failure(ResolvedAddress.Failure(description: "cannot resolve \(host): no addresses")) : .success(found)
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

/// Wall-clock milliseconds since 1970 (unique tags across restarts, never for intervals).
enum WallClock {
    static func milliseconds() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
    }
}
