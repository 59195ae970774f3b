/// A request-target split into path, query and fragment, on raw UTF-8 bytes,
/// with the query cut into its `&`-separated parameters. Nothing is decoded:
/// joining the pieces back gives the target byte for byte. Shared by
/// `TokenRewrite` (what goes upstream) and `Redactor` (what goes into logs),
/// so that both agree on what a parameter is.
struct TargetParts {
    /// Everything before the first `?` or `#`.
    var path: ArraySlice<UInt8>
    /// The bytes between `?` and the fragment, nil when the target has no `?`
    /// before its first `#`. Empty for a target ending in `?`.
    var query: ArraySlice<UInt8>?
    /// The bytes after `#` (without the `#`), nil when there is none.
    var fragment: ArraySlice<UInt8>?

    init(_ target: String) {
        let bytes = Array(target.utf8)
        let q = bytes.firstIndex { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") }
        guard let q else {
            path = bytes[...]
            return
        }
        path = bytes[..<q]
        if bytes[q] == UInt8(ascii: "#") {
            fragment = bytes[(q + 1)...]
            return
        }
        let hash = bytes[(q + 1)...].firstIndex(of: UInt8(ascii: "#"))
        query = bytes[(q + 1)..<(hash ?? bytes.endIndex)]
        if let hash { fragment = bytes[(hash + 1)...] }
    }

    /// The target again, with `query` as given (nil drops the `?`).
    func joined(query newQuery: [UInt8]?) -> String {
        var out = [UInt8]()
        out.reserveCapacity(path.count + (newQuery?.count ?? 0) + (fragment?.count ?? 0) + 2)
        out += path
        if let newQuery {
            out.append(UInt8(ascii: "?"))
            out += newQuery
        }
        if let fragment {
            out.append(UInt8(ascii: "#"))
            out += fragment
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// One `&`-separated piece of a query: `name=value`, `name` alone, or empty.
struct QueryParameter {
    var raw: ArraySlice<UInt8>
    var name: ArraySlice<UInt8>
    /// nil when there is no `=`.
    var value: ArraySlice<UInt8>?

    init(_ raw: ArraySlice<UInt8>) {
        self.raw = raw
        if let eq = raw.firstIndex(of: UInt8(ascii: "=")) {
            name = raw[..<eq]
            value = raw[(eq + 1)...]
        } else {
            name = raw
            value = nil
        }
    }

    /// Splits on `&` only (`;` is an ordinary byte); `a&&b` gives an empty
    /// middle piece, so joining with `&` restores the input exactly.
    static func split(_ query: ArraySlice<UInt8>) -> [QueryParameter] {
        query.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: false).map(QueryParameter.init)
    }

    static func join(_ parameters: [ArraySlice<UInt8>]) -> [UInt8] {
        var out = [UInt8]()
        for (i, p) in parameters.enumerated() {
            if i > 0 { out.append(UInt8(ascii: "&")) }
            out += p
        }
        return out
    }
}

enum PercentDecoding {
    /// Decodes `%XX` escapes; `+` and every other byte stay as they are
    /// (RFC 3986, not form encoding). nil on a `%` not followed by two hex digits.
    static func decode(_ bytes: ArraySlice<UInt8>) -> [UInt8]? {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count)
        var i = bytes.startIndex
        while i < bytes.endIndex {
            let b = bytes[i]
            if b == UInt8(ascii: "%") {
                guard i + 2 < bytes.endIndex,
                      let hi = HTTPBytes.hexValue(bytes[i + 1]), let lo = HTTPBytes.hexValue(bytes[i + 2]) else { return nil }
                out.append(UInt8(hi << 4 | lo))
                i += 3
            } else {
                out.append(b)
                i += 1
            }
        }
        return out
    }
}
