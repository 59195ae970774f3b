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
        values(name).flatMap { value in
            value.split(separator: ",").map { $0.trimmingOWS().lowercasedASCII() }
        }.filter { !$0.isEmpty }
    }

    public mutating func add(_ name: String, _ value: String) {
        fields.append(Field(name: name, value: value))
    }

    public mutating func remove(_ name: String) {
        fields.removeAll { $0.name.asciiCaseInsensitiveEquals(name) }
    }

    public mutating func removeAll(where predicate: (Field) -> Bool) {
        fields.removeAll(where: predicate)
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
        var out = "\(method) \(target) \(version)\r\n"
        for field in headers { out += "\(field.name): \(field.value)\r\n" }
        out += "\r\n"
        return Array(out.utf8)
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
        var out = "\(version) \(status) \(reason)\r\n"
        for field in headers { out += "\(field.name): \(field.value)\r\n" }
        out += "\r\n"
        return Array(out.utf8)
    }
}

extension StringProtocol {
    public func asciiCaseInsensitiveEquals<S: StringProtocol>(_ other: S) -> Bool {
        let a = self.utf8, b = other.utf8
        guard a.count == b.count else { return false }
        return zip(a, b).allSatisfy { x, y in
            x == y || (x | 0x20 == y | 0x20 && (x | 0x20) >= 0x61 && (x | 0x20) <= 0x7A)
        }
    }

    public func lowercasedASCII() -> String {
        String(decoding: utf8.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }, as: UTF8.self)
    }

    /// Trims optional whitespace (SP / HTAB) at both ends.
    public func trimmingOWS() -> Substring {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" { s.removeLast() }
        return s
    }
}
