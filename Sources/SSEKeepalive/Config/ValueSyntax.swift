// The spelling of config values, apart from the YAML around them: durations,
// sizes and socket addresses, parsed from text and written back as text
// (docs/configuration.md, "Value syntax").

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

public enum ValueSyntax {
    public static let durationUsage = "use 500ms, 15s, 2m or 1h"
    public static let durationOrOffUsage = "use 500ms, 15s, 2m, 1h or off"
    public static let sizeUsage = "use 512, 64KiB, 1MiB or 1GiB"

    /// `500ms`, `15s`, `2m`, `1h`: a positive decimal integer and a unit, nothing else.
    public static func duration(_ s: String) -> TimeSpan? {
        let units: [(String, Int)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
        // "ms" must be tried before "s" and "m".
        for (unit, factor) in units where s.hasSuffix(unit) {
            let digits = s.dropLast(unit.count)
            guard let n = decimal(digits), n > 0 else { return nil }
            let (ms, overflow) = n.multipliedReportingOverflow(by: factor)
            guard !overflow else { return nil }
            return TimeSpan(milliseconds: ms)
        }
        return nil
    }

    /// `512` (bytes), `64KiB`, `1MiB`, `1GiB`; positive integers only.
    public static func size(_ s: String) -> Int? {
        let units: [(String, Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)]
        var digits = Substring(s)
        var factor = 1
        for (unit, f) in units where s.hasSuffix(unit) {
            digits = s.dropLast(unit.count)
            factor = f
            break
        }
        guard let n = decimal(digits), n > 0 else { return nil }
        let (bytes, overflow) = n.multipliedReportingOverflow(by: factor)
        return overflow ? nil : bytes
    }

    /// The shortest exact spelling of a size: `GiB`, `MiB` or `KiB` when exact, else plain bytes.
    public static func sizeText(_ n: Int) -> String {
        if n > 0 && n % (1 << 30) == 0 { return "\(n >> 30)GiB" }
        if n > 0 && n % (1 << 20) == 0 { return "\(n >> 20)MiB" }
        if n > 0 && n % (1 << 10) == 0 { return "\(n >> 10)KiB" }
        return "\(n)"
    }

    /// Non-empty ASCII decimal digits, no sign, no separators.
    public static func decimal(_ s: Substring) -> Int? {
        guard !s.isEmpty, s.utf8.count <= 18, s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int(s)
    }

    /// `host:port`, `[v6]:port`, or (with `allowUnix`) `unix:/absolute/path`;
    /// on failure, a message saying what is wrong.
    public static func address(_ s: String, allowUnix: Bool) -> Result<SocketAddressSpec, AddressProblem> {
        let usage = allowUnix ? "use host:port, [v6]:port or unix:/path" : "use host:port or [v6]:port"
        func bad(_ why: String? = nil) -> Result<SocketAddressSpec, AddressProblem> {
            .failure(AddressProblem(text: "invalid address \"\(TextEscape.message(s))\" (\(why.map { $0 + "; " } ?? "")\(usage))"))
        }
        if s.hasPrefix("unix:") {
            guard allowUnix else { return bad("unix sockets are not allowed here") }
            let path = String(s.dropFirst(5))
            guard path.hasPrefix("/") else { return bad("the socket path must be absolute") }
            guard path.utf8.count <= 107 else { return bad("the socket path is longer than 107 bytes") }
            guard !path.utf8.contains(0) else { return bad() }
            return .success(.unix(path: path))
        }
        let host: Substring
        let portText: Substring
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return bad() }
            host = s[s.index(after: s.startIndex)..<close]
            let rest = s[s.index(after: close)...]
            guard rest.hasPrefix(":") else { return bad("missing port") }
            portText = rest.dropFirst()
            guard isIPv6(host) else { return bad("\"\(TextEscape.message(String(host)))\" is not an IPv6 address") }
        } else {
            guard let colon = s.lastIndex(of: ":") else { return bad("missing port") }
            host = s[..<colon]
            portText = s[s.index(after: colon)...]
            if host.contains(":") { return bad("IPv6 addresses go in brackets") }
            guard !host.isEmpty else { return bad("missing host") }
            guard isHostname(host) else { return bad("\"\(TextEscape.message(String(host)))\" is not a host name or IPv4 address") }
        }
        guard let port = decimal(portText) else { return bad("the port must be a number") }
        guard port >= 1 && port <= 65535 else {
            return .failure(AddressProblem(text: "invalid address \"\(TextEscape.message(s))\": port \(port) is out of range 1-65535"))
        }
        return .success(.inet(host: String(host), port: UInt16(port)))
    }

    public struct AddressProblem: Error { public var text: String }

    /// An IPv4 literal (when the host is all digits and dots), or a DNS host
    /// name: labels of letters, digits and `-`, not starting or ending with `-`.
    public static func isHostname(_ host: Substring) -> Bool {
        let bytes = Array(host.utf8)
        guard !bytes.isEmpty, bytes.count <= 253 else { return false }
        if bytes.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E }) {
            let parts = host.split(separator: ".", omittingEmptySubsequences: false)
            return parts.count == 4 && parts.allSatisfy { p in
                guard let n = decimal(p), p.count <= 3 else { return false }
                return n <= 255
            }
        }
        let labels = host.split(separator: ".", omittingEmptySubsequences: false)
        for (i, label) in labels.enumerated() {
            // A single trailing dot (fully qualified name) is allowed.
            if label.isEmpty && i == labels.count - 1 && i > 0 { continue }
            let l = Array(label.utf8)
            guard !l.isEmpty, l.count <= 63, l.first != 0x2D, l.last != 0x2D else { return false }
            guard l.allSatisfy({ isAlnum($0) || $0 == 0x2D }) else { return false }
        }
        return true
    }

    public static func isIPv6(_ host: Substring) -> Bool {
        guard !host.isEmpty, host.utf8.count < 46 else { return false }
        var buf = in6_addr()
        return String(host).withCString { inet_pton(AF_INET6, $0, &buf) } == 1
    }

    public static func isAlnum(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
    }

    /// RFC 3986 unreserved.
    public static func isUnreserved(_ b: UInt8) -> Bool {
        isAlnum(b) || b == 0x2D || b == 0x2E || b == 0x5F || b == 0x7E
    }
}
