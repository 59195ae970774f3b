import CLibevent
#if canImport(Glibc)
import Glibc
#endif

/// Small socket and clock helpers shared by the client and the backend.
enum Net {
    /// CLOCK_MONOTONIC in nanoseconds (the clock the backend embeds in events).
    @inline(__always)
    static func monotonicNanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// Raises the soft fd limit to the hard one; returns the new soft limit.
    @discardableResult
    static func raiseFileLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return -1 }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        return Int(limit.rlim_cur)
    }

    /// Parses a dotted IPv4 address into network byte order.
    static func ipv4(_ text: String) -> in_addr? {
        var addr = in_addr()
        guard inet_pton(AF_INET, text, &addr) == 1 else { return nil }
        return addr
    }

    /// "HOST:PORT" (IPv4 only) as a sockaddr_in.
    static func endpoint(_ text: String) -> sockaddr_in? {
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]),
              let addr = ipv4(String(text[..<colon])) else { return nil }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        sa.sin_addr = addr
        return sa
    }

    /// Only loopback targets (127.0.0.0/8): the benchmark never sends load elsewhere.
    static func isLoopback(_ addr: in_addr) -> Bool {
        UInt32(bigEndian: addr.s_addr) >> 24 == 127
    }

    /// "127.0.0.2-127.0.0.50" (or a single address) as a list of addresses.
    static func sourceRange(_ text: String) -> [in_addr]? {
        let parts = text.split(separator: "-").map(String.init)
        guard parts.count == 1 || parts.count == 2, let first = ipv4(parts[0]) else { return nil }
        let last = parts.count == 2 ? ipv4(parts[1]) : first
        guard let last else { return nil }
        let a = UInt32(bigEndian: first.s_addr), b = UInt32(bigEndian: last.s_addr)
        guard a <= b, b - a < 65536 else { return nil }
        return (a...b).map { in_addr(s_addr: $0.bigEndian) }
    }

    static func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL, 0)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
    }

    static func setNoDelay(_ fd: Int32) {
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    /// A non-blocking socket bound to `source` (port chosen at connect time,
    /// IP_BIND_ADDRESS_NO_PORT) and connecting to `target`. Returns the fd or -errno.
    static func connect(to target: sockaddr_in, from source: in_addr?) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return -sse_errno() }
        setNoDelay(fd)
        if let source {
            var one: Int32 = 1
            _ = setsockopt(fd, Int32(IPPROTO_IP), 24 /* IP_BIND_ADDRESS_NO_PORT */, &one, socklen_t(MemoryLayout<Int32>.size))
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_addr = source
            let bound = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if bound != 0 {
                let code = sse_errno()
                close(fd)
                return -code
            }
        }
        var dst = target
        let rc = withUnsafePointer(to: &dst) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 {
            let code = sse_errno()
            if code != EINPROGRESS {
                close(fd)
                return -code
            }
        }
        return fd
    }

    static func socketError(_ fd: Int32) -> Int32 {
        var code: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &len)
        return code
    }

    static func describe(_ code: Int32) -> String {
        String(cString: strerror(code))
    }
}

/// Writes a JSON object by hand (no Foundation in the tools).
struct JSON {
    private var parts: [String] = []

    mutating func add(_ key: String, _ value: Int) { parts.append("\"\(key)\":\(value)") }
    mutating func add(_ key: String, _ value: UInt64) { parts.append("\"\(key)\":\(value)") }
    mutating func add(_ key: String, _ value: Double) {
        parts.append("\"\(key)\":\(value.isFinite ? String(format3(value)) : "null")")
    }
    mutating func add(_ key: String, _ value: String) { parts.append("\"\(key)\":\"\(value)\"") }
    mutating func add(_ key: String, raw: String) { parts.append("\"\(key)\":\(raw)") }

    var text: String { "{" + parts.joined(separator: ",") + "}" }

    /// Three decimals, without Foundation's String(format:).
    private func format3(_ v: Double) -> String {
        let scaled = (v * 1000).rounded()
        guard abs(scaled) < 9e15 else { return "\(v)" }
        let i = Int(scaled)
        let sign = i < 0 ? "-" : ""
        let a = abs(i)
        let frac = a % 1000
        let fracText = frac < 10 ? "00\(frac)" : frac < 100 ? "0\(frac)" : "\(frac)"
        return "\(sign)\(a / 1000).\(fracText)"
    }
}

/// One line to stdout, unbuffered (the bench script reads it as it comes).
func emit(_ line: String) {
    writeAll(1, line + "\n")
}

func writeAll(_ fd: Int32, _ text: String) {
    var bytes = Array(text.utf8)
    var off = 0
    while off < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
        if n <= 0 { return }
        off += n
    }
}

func fail(_ message: String) -> Never {
    writeAll(2, "sse-bench: \(message)\n")
    exit(2)
}
