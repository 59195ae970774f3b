/// The request-target reduced to one unambiguous path, decided once: the
/// route is picked on `path` and the upstream receives `originForm`, so a
/// spelling cannot pick one route while the origin resolves another path.
///
/// What is normalised (docs/routing.md says the same for users):
/// - absolute-form (`http://host/p?q`) becomes origin-form (`/p?q`); its
///   scheme must be http or https, it has no userinfo, and its authority
///   must name the same host and port as the `Host` field;
/// - `%XX` escapes of unreserved characters (letters, digits, `-._~`) are
///   decoded; other escapes stay, with upper-case hex digits;
/// - runs of `/` become one `/`;
/// - `.` and `..` segments are removed (RFC 3986 section 5.2.4), also when
///   spelled with `%2E`; a path ending in one of them keeps a final `/`.
///
/// Refused (`400`): an encoded `/` or `\`, a raw `\`, a control byte raw or
/// encoded (NUL included), a raw space, a byte outside ASCII, escapes that do not decode to
/// UTF-8, a bad `%` escape, `..` above the root, and any form other than
/// origin-form, absolute-form and `OPTIONS *`.
///
/// The query and fragment are kept byte for byte.
public struct RequestTarget: Equatable, Sendable {
    /// The normalised path (`*` for `OPTIONS *`): what routing matches.
    public var path: String
    /// The bytes after `?`, up to a `#`; nil when there is no `?`.
    public var query: String?
    /// The bytes after `#`, nil when there is none.
    public var fragment: String?
    /// The authority of an absolute-form target (the `Host` an origin must see).
    public var authority: String?

    /// What is sent upstream: the normalised path, then query and fragment as received.
    public var originForm: String {
        var out = path
        if let query { out += "?" + query }
        if let fragment { out += "#" + fragment }
        return out
    }

    /// `host`: the request's `Host` field, which an absolute-form authority must match.
    public init(_ target: String, method: String, host: String?) throws(RequestTargetError) {
        let bytes = Array(target.utf8)
        if bytes == [UInt8(ascii: "*")] {
            guard method == "OPTIONS" else { throw .asteriskForm }
            path = "*"
            return
        }
        var rest = bytes[...]
        if rest.first != UInt8(ascii: "/") {
            let (authority, remainder) = try Self.splitAbsoluteForm(rest)
            if let host, !Self.sameAuthority(authority, host, scheme: remainder.scheme) { throw .hostMismatch }
            self.authority = authority
            rest = remainder.rest
        }
        let end = rest.firstIndex { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") } ?? rest.endIndex
        path = try Self.normalisePath(rest[..<end])
        var tail = rest[end...]
        if tail.first == UInt8(ascii: "?") {
            let hash = tail.firstIndex(of: UInt8(ascii: "#")) ?? tail.endIndex
            query = String(decoding: tail[(tail.startIndex + 1)..<hash], as: UTF8.self)
            tail = tail[hash...]
        }
        if tail.first == UInt8(ascii: "#") {
            fragment = String(decoding: tail.dropFirst(), as: UTF8.self)
        }
    }

    /// The target of `request`, checked against its `Host`.
    public static func parse(_ request: RequestHead) -> Result<RequestTarget, RequestTargetError> {
        Result { () throws(RequestTargetError) in
            try RequestTarget(request.target, method: request.method, host: request.headers["Host"])
        }
    }

    /// The path routing uses for a raw path or whole target (no `Host` check),
    /// nil when the target would be refused. Idempotent: a normalised path
    /// comes back as it is.
    public static func routingPath<S: StringProtocol>(_ pathOrTarget: S) -> String? {
        try? RequestTarget(String(pathOrTarget), method: "OPTIONS", host: nil).path
    }

    /// Whether `path` is already what `normalisePath` gives (a quick, conservative
    /// check: a path with any `%` is left to `normalisePath`).
    public static func isNormalPath<S: StringProtocol>(_ path: S) -> Bool {
        isNormalPath(bytes: path.utf8)
    }

    static func isNormalPath<C: Sequence<UInt8>>(bytes path: C) -> Bool {
        var bytes = path.makeIterator()
        guard bytes.next() == UInt8(ascii: "/") else { return false }
        var length = 0, dots = 0 // of the current segment
        func isDotSegment() -> Bool { length > 0 && length <= 2 && dots == length }
        while let b = bytes.next() {
            switch b {
            case UInt8(ascii: "/"):
                if length == 0 || isDotSegment() { return false }
                length = 0
                dots = 0
                continue
            case UInt8(ascii: "%"), UInt8(ascii: "\\"), UInt8(ascii: "?"), UInt8(ascii: "#"), 0...0x20, 0x7F...:
                return false
            case UInt8(ascii: "."):
                dots += 1
            default:
                break
            }
            length += 1
        }
        return !isDotSegment()
    }

    // MARK: Path

    /// The normalised form of an absolute path (which must start with `/`).
    public static func normalisePath(_ raw: ArraySlice<UInt8>) throws(RequestTargetError) -> String {
        guard raw.first == UInt8(ascii: "/") else { throw .notAbsolutePath }
        // Most paths are already normal: no segment arrays to build.
        if isNormalPath(bytes: raw) { return String(decoding: raw, as: UTF8.self) }
        // Segments after decoding unreserved escapes; dot segments resolved as they close.
        var segments: [[UInt8]] = []
        var segment: [UInt8] = []
        var utf8 = UTF8Check()
        var endsWithSlash = false

        func close(_ segment: [UInt8], last: Bool) throws(RequestTargetError) {
            switch segment {
            case []:
                endsWithSlash = last
            case [UInt8(ascii: ".")]:
                endsWithSlash = true
            case [UInt8(ascii: "."), UInt8(ascii: ".")]:
                guard !segments.isEmpty else { throw .aboveRoot }
                segments.removeLast()
                endsWithSlash = true
            default:
                segments.append(segment)
                endsWithSlash = false
            }
        }

        var i = raw.startIndex + 1
        while i < raw.endIndex {
            let b = raw[i]
            switch b {
            case UInt8(ascii: "/"):
                guard utf8.isComplete else { throw .notUTF8 }
                try close(segment, last: false)
                segment.removeAll(keepingCapacity: true)
                i += 1
                continue
            case UInt8(ascii: "%"):
                guard i + 2 < raw.endIndex, let hi = hex(raw[i + 1]), let lo = hex(raw[i + 2]) else { throw .badEscape }
                let decoded = hi << 4 | lo
                if decoded == UInt8(ascii: "/") || decoded == UInt8(ascii: "\\") { throw .encodedSeparator }
                if decoded < 0x20 || decoded == 0x7F { throw .controlCharacter }
                guard utf8.accept(decoded) else { throw .notUTF8 }
                if isUnreserved(decoded) {
                    segment.append(decoded)
                } else {
                    segment += [UInt8(ascii: "%"), upperHex[Int(hi)], upperHex[Int(lo)]]
                }
                i += 3
                continue
            case UInt8(ascii: "\\"):
                throw .backslash
            case 0...0x20, 0x7F:
                throw .controlCharacter
            case 0x80...:
                throw .nonASCII
            default:
                guard utf8.accept(b) else { throw .notUTF8 }
                segment.append(b)
                i += 1
            }
        }
        try close(segment, last: true)
        guard utf8.isComplete else { throw .notUTF8 }

        var out: [UInt8] = [UInt8(ascii: "/")]
        for (n, s) in segments.enumerated() {
            if n > 0 { out.append(UInt8(ascii: "/")) }
            out += s
        }
        if endsWithSlash && !segments.isEmpty { out.append(UInt8(ascii: "/")) }
        return String(decoding: out, as: UTF8.self)
    }

    static func isUnreserved(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    static let upperHex = Array("0123456789ABCDEF".utf8)

    static func hex(_ b: UInt8) -> UInt8? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return b - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return b - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return b - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    // MARK: Absolute-form

    struct Remainder {
        var scheme: String
        /// From the first `/`, `?` or `#` after the authority; `/` when the target had no path.
        var rest: ArraySlice<UInt8>
    }

    /// `http://authority[/path][?query]` -> (authority, scheme and the rest).
    static func splitAbsoluteForm(_ target: ArraySlice<UInt8>) throws(RequestTargetError) -> (String, Remainder) {
        guard let colon = target.firstIndex(of: UInt8(ascii: ":")) else { throw .notAbsolutePath }
        let scheme = String(decoding: target[..<colon], as: UTF8.self).lowercasedASCII()
        guard scheme == "http" || scheme == "https" else { throw .unsupportedScheme }
        let slashes = target[(colon + 1)...]
        guard slashes.starts(with: [UInt8(ascii: "/"), UInt8(ascii: "/")]) else { throw .notAbsolutePath }
        let authorityStart = slashes.startIndex + 2
        let authorityEnd = target[authorityStart...].firstIndex {
            $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#")
        } ?? target.endIndex
        let authority = target[authorityStart..<authorityEnd]
        guard !authority.isEmpty else { throw .badAuthority }
        // Userinfo is deprecated and only ever used to deceive; escapes and `\` have no place here.
        guard !authority.contains(where: {
            $0 == UInt8(ascii: "@") || $0 == UInt8(ascii: "%") || $0 == UInt8(ascii: "\\") || $0 < 0x21 || $0 > 0x7E
        }) else { throw .badAuthority }
        var rest = target[authorityEnd...]
        if rest.first != UInt8(ascii: "/") {
            rest = ([UInt8(ascii: "/")] + rest)[...]
        }
        return (String(decoding: authority, as: UTF8.self), Remainder(scheme: scheme, rest: rest))
    }

    /// Host and port equal, case-insensitively, with the scheme's default port implied.
    static func sameAuthority(_ a: String, _ b: String, scheme: String) -> Bool {
        let defaultPort = scheme == "https" ? ":443" : ":80"
        func canonical(_ s: String) -> String {
            let lower = s.lowercasedASCII()
            return lower.hasSuffix(defaultPort) ? String(lower.dropLast(defaultPort.count)) : lower
        }
        return canonical(a) == canonical(b)
    }
}

/// Why a request-target is refused; the proxy answers `400 Bad Request`.
public enum RequestTargetError: Error, Equatable, Sendable, CustomStringConvertible {
    case badEscape
    case encodedSeparator
    case backslash
    case controlCharacter
    case nonASCII
    case notUTF8
    case aboveRoot
    case notAbsolutePath
    case asteriskForm
    case unsupportedScheme
    case badAuthority
    case hostMismatch

    public var description: String {
        switch self {
        case .badEscape: return "'%' not followed by two hex digits in the path"
        case .encodedSeparator: return "encoded '/' or '\\' in the path"
        case .backslash: return "'\\' in the path"
        case .controlCharacter: return "control character or space in the path"
        case .nonASCII: return "non-ASCII byte in the request-target"
        case .notUTF8: return "path does not decode to UTF-8"
        case .aboveRoot: return "'..' above the root of the path"
        case .notAbsolutePath: return "request-target is neither an absolute path nor an absolute URI"
        case .asteriskForm: return "'*' request-target is only for OPTIONS"
        case .unsupportedScheme: return "absolute URI scheme is not http or https"
        case .badAuthority: return "invalid authority in absolute URI"
        case .hostMismatch: return "absolute URI authority differs from the Host header"
        }
    }
}

/// Incremental UTF-8 well-formedness (RFC 3629: no overlongs, no surrogates, <= U+10FFFF).
struct UTF8Check {
    private var remaining = 0
    private var lower: UInt8 = 0x80
    private var upper: UInt8 = 0xBF

    var isComplete: Bool { remaining == 0 }

    mutating func accept(_ b: UInt8) -> Bool {
        if remaining > 0 {
            guard b >= lower && b <= upper else { return false }
            remaining -= 1
            lower = 0x80
            upper = 0xBF
            return true
        }
        switch b {
        case 0x00...0x7F: return true
        case 0xC2...0xDF: remaining = 1
        case 0xE0: remaining = 2; lower = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: remaining = 2
        case 0xED: remaining = 2; upper = 0x9F
        case 0xF0: remaining = 3; lower = 0x90
        case 0xF1...0xF3: remaining = 3
        case 0xF4: remaining = 3; upper = 0x8F
        default: return false
        }
        return true
    }
}
