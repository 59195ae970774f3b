/// HTTP/1.x message heads as plain values. Parsing lives in `HeadParser`,
/// body framing in `BodyFraming` and `ChunkedDecoder`.

public struct HTTPVersion: Equatable, Sendable, CustomStringConvertible {
    public var major: Int
    public var minor: Int

    public init(major: Int, minor: Int) {
        self.major = major
        self.minor = minor
    }

    public static let http10 = HTTPVersion(major: 1, minor: 0)
    public static let http11 = HTTPVersion(major: 1, minor: 1)

    public var description: String { "HTTP/\(major).\(minor)" }
}

/// Header fields in received order; names compare case-insensitively.
public struct HTTPHeaders: Equatable, Sendable, Sequence {
    public struct Field: Equatable, Sendable {
        public var name: String
        public var value: String
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    public private(set) var fields: [Field]

    public init(_ fields: [Field] = []) { self.fields = fields }

    public init(_ pairs: [(String, String)]) {
        self.fields = pairs.map { Field(name: $0.0, value: $0.1) }
    }

    public func makeIterator() -> IndexingIterator<[Field]> { fields.makeIterator() }

    public var count: Int { fields.count }

    /// All values of `name`, in order.
    public func values(_ name: String) -> [String] {
        fields.filter { $0.name.asciiCaseInsensitiveEquals(name) }.map(\.value)
    }

    /// The first value of `name`.
    public subscript(_ name: String) -> String? {
        fields.first { $0.name.asciiCaseInsensitiveEquals(name) }?.value
    }

    public func contains(_ name: String) -> Bool {
        fields.contains { $0.name.asciiCaseInsensitiveEquals(name) }
    }

    /// Comma-separated list elements of every `name` field, trimmed and lowercased
    /// (for `Connection`, `Transfer-Encoding`, `Accept`, ...).
    public func tokens(_ name: String) -> [String] {
        var out: [String] = []
        _ = containsToken(name) { element in
            out.append(element.lowercasedASCII())
            return false
        }
        return out
    }

    /// Whether a list element of a `name` field (trimmed, non-empty, as received)
    /// satisfies `predicate`. Allocates nothing: this runs for every exchange.
    public func containsToken(_ name: String, where predicate: (Substring) -> Bool) -> Bool {
        for field in fields where field.name.asciiCaseInsensitiveEquals(name) {
            var rest = Substring(field.value)
            while true {
                let comma = rest.utf8.firstIndex(of: UInt8(ascii: ",")) ?? rest.endIndex
                let element = rest[..<comma].trimmingOWS()
                if !element.isEmpty && predicate(element) { return true }
                guard comma < rest.endIndex else { break }
                rest = rest[rest.utf8.index(after: comma)...]
            }
        }
        return false
    }

    /// Whether `token` (compared case-insensitively) is a list element of a `name` field.
    public func containsToken(_ name: String, _ token: String) -> Bool {
        containsToken(name) { $0.asciiCaseInsensitiveEquals(token) }
    }

    public mutating func add(_ name: String, _ value: String) {
        fields.append(Field(name: name, value: value))
    }

    public mutating func remove(_ name: String) {
        removeAll { $0.name.asciiCaseInsensitiveEquals(name) }
    }

    public mutating func removeAll(where predicate: (Field) -> Bool) {
        // Nothing is written (so a shared copy is not copied) until a field goes;
        // `predicate` sees every field once, in order.
        guard let first = fields.firstIndex(where: predicate) else { return }
        var kept = first
        for index in (first + 1)..<fields.count where !predicate(fields[index]) {
            fields[kept] = fields[index]
            kept += 1
        }
        fields.removeSubrange(kept...)
    }

    /// Replaces every `name` field by one with `value`.
    public mutating func set(_ name: String, _ value: String) {
        remove(name)
        add(name, value)
    }
}

public struct RequestHead: Equatable, Sendable {
    public var method: String
    /// The request-target exactly as received (origin-form, absolute-form, ...).
    public var target: String
    public var version: HTTPVersion
    public var headers: HTTPHeaders

    public init(method: String, target: String, version: HTTPVersion, headers: HTTPHeaders) {
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
    }

    /// The path part of the target, without query.
    public var path: Substring {
        let end = target.firstIndex { $0 == "?" || $0 == "#" } ?? target.endIndex
        return target[..<end]
    }

    /// Serialised head, CRLF line ends, ending with the blank line.
    public func serialized() -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(method.utf8.count + target.utf8.count + 16 + headers.serializedCount)
        out.append(contentsOf: method.utf8)
        out.append(UInt8(ascii: " "))
        out.append(contentsOf: target.utf8)
        out.append(UInt8(ascii: " "))
        version.append(to: &out)
        out.append(contentsOf: [13, 10])
        headers.append(to: &out)
        return out
    }
}

public struct ResponseHead: Equatable, Sendable {
    public var version: HTTPVersion
    public var status: Int
    public var reason: String
    public var headers: HTTPHeaders

    public init(version: HTTPVersion, status: Int, reason: String, headers: HTTPHeaders) {
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
    }

    public func serialized() -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(reason.utf8.count + 32 + headers.serializedCount)
        version.append(to: &out)
        out.append(UInt8(ascii: " "))
        out.append(contentsOf: String(status).utf8)
        out.append(UInt8(ascii: " "))
        out.append(contentsOf: reason.utf8)
        out.append(contentsOf: [13, 10])
        headers.append(to: &out)
        return out
    }
}

// Heads are serialised into one exactly reserved array (one allocation per head).
extension HTTPVersion {
    func append(to out: inout [UInt8]) {
        out.append(contentsOf: "HTTP/".utf8)
        out.append(contentsOf: String(major).utf8)
        out.append(UInt8(ascii: "."))
        out.append(contentsOf: String(minor).utf8)
    }
}

extension HTTPHeaders {
    /// Bytes of the fields as serialised, with the blank line.
    var serializedCount: Int {
        fields.reduce(2) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 }
    }

    /// "Name: value" lines and the blank line.
    func append(to out: inout [UInt8]) {
        for field in fields {
            out.append(contentsOf: field.name.utf8)
            out.append(contentsOf: [UInt8(ascii: ":"), UInt8(ascii: " ")])
            out.append(contentsOf: field.value.utf8)
            out.append(contentsOf: [13, 10])
        }
        out.append(contentsOf: [13, 10])
    }
}

extension StringProtocol {
    public func asciiCaseInsensitiveEquals<S: StringProtocol>(_ other: S) -> Bool {
        let a = self.utf8, b = other.utf8
        guard a.count == b.count else { return false }
        var i = a.startIndex, j = b.startIndex
        while i != a.endIndex {
            let x = a[i], y = b[j]
            guard x == y || (x | 0x20 == y | 0x20 && (x | 0x20) >= 0x61 && (x | 0x20) <= 0x7A) else { return false }
            a.formIndex(after: &i)
            b.formIndex(after: &j)
        }
        return true
    }

    public func lowercasedASCII() -> String {
        // One allocation at most (none up to 15 bytes), no intermediate array.
        let bytes = utf8
        guard bytes.contains(where: { $0 >= 0x41 && $0 <= 0x5A }) else { return String(self) }
        return String(unsafeUninitializedCapacity: bytes.count) { buffer in
            var n = 0
            for b in bytes {
                buffer[n] = b >= 0x41 && b <= 0x5A ? b | 0x20 : b
                n += 1
            }
            return n
        }
    }

    /// Trims optional whitespace (SP / HTAB) at both ends.
    public func trimmingOWS() -> Substring {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" { s.removeLast() }
        return s
    }
}
