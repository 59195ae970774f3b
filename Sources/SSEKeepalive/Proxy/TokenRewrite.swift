/// Why a token request is refused; the runtime answers `400 Bad Request`.
/// The descriptions never contain the token.
public enum TokenRewriteError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The token parameter appears more than once in the query.
    case duplicateParameter
    /// The value has a bad `%` escape, is not UTF-8 once decoded, or decodes
    /// to a control character (which would break the header).
    case invalidEncoding

    public var description: String {
        switch self {
        case .duplicateParameter: return "token parameter given more than once"
        case .invalidEncoding: return "token parameter is not validly percent-encoded"
        }
    }
}

/// The query token moves into a request header (docs/behaviour.md, "Query token").
public enum TokenRewrite {
    /// The request to send upstream for a route with `token` configured.
    ///
    /// - The parameter named `settings.query` (compared byte for byte on the
    ///   raw name: `Token`, `xtoken`, `token2`, `%74oken` are other
    ///   parameters) is removed from the target. The rest of the query stays
    ///   byte for byte in its original order (`&&` runs, `;`, `+` and every
    ///   escape untouched); the `?` is dropped when nothing is left; a
    ///   fragment, if a client sent one, is kept after the query.
    /// - Its value is percent-decoded (`+` stays `+`) and added as the last
    ///   header, `<header>: <scheme> <value>`; the bare value when the scheme
    ///   is empty, the bare scheme when the value is empty (`?token`,
    ///   `?token=`), so that no header value ends in a space.
    /// - If the request already has `settings.header` (any case), that header
    ///   wins: nothing is added or replaced, the parameter is still removed
    ///   (and still validated).
    /// - No parameter: the request is returned unchanged.
    ///
    /// Throws `duplicateParameter` when the parameter appears twice (with or
    /// without values), `invalidEncoding` for a `%` not followed by two hex
    /// digits, a value that is not UTF-8 once decoded, or one that decodes
    /// to a control character (0x00-0x1F, 0x7F, U+0080-U+009F; CR, LF, NUL,
    /// TAB included).
    public static func apply(to request: RequestHead, settings: TokenSettings) throws(TokenRewriteError) -> RequestHead {
        let parts = TargetParts(request.target)
        guard let query = parts.query else { return request }
        let name = Array(settings.query.utf8)
        let parameters = QueryParameter.split(query)

        var found: QueryParameter?
        var kept: [ArraySlice<UInt8>] = []
        kept.reserveCapacity(parameters.count)
        for parameter in parameters {
            if parameter.name.elementsEqual(name) {
                if found != nil { throw .duplicateParameter }
                found = parameter
            } else {
                kept.append(parameter.raw)
            }
        }
        guard let found else { return request }

        let value = try decodedValue(found.value ?? [])

        var result = request
        let newQuery = QueryParameter.join(kept)
        result.target = parts.joined(query: newQuery.isEmpty ? nil : newQuery)
        if !request.headers.contains(settings.header) {
            let headerValue: String
            if settings.scheme.isEmpty {
                headerValue = value
            } else if value.isEmpty {
                headerValue = settings.scheme
            } else {
                headerValue = settings.scheme + " " + value
            }
            result.headers.add(settings.header, headerValue)
        }
        return result
    }

    static func decodedValue(_ raw: ArraySlice<UInt8>) throws(TokenRewriteError) -> String {
        guard let bytes = PercentDecoding.decode(raw) else { throw .invalidEncoding }
        if bytes.contains(where: { $0 < 0x20 || $0 == 0x7F }) { throw .invalidEncoding }
        guard let string = String(validating: bytes, as: UTF8.self) else { throw .invalidEncoding }
        // C1 controls (U+0080-U+009F) as well: no header should carry them.
        if string.unicodeScalars.contains(where: { (0x80...0x9F).contains($0.value) }) { throw .invalidEncoding }
        return string
    }
}
