/// Why a token request is refused; the runtime answers `400 Bad Request`.
/// The descriptions never contain the token.
public enum TokenRewriteError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The token parameter appears more than once in the query.
    case duplicateParameter
    /// The value has a bad `%` escape, is not UTF-8 once decoded, or decodes
    /// to a control character (which would break the header).
    case invalidEncoding
    /// The decoded value starts or ends with whitespace around other characters.
    case surroundingWhitespace
    /// The scheme is Bearer and the value is not a `b64token` (RFC 6750 section 2.1).
    case notBearerToken

    public var description: String {
        switch self {
        case .duplicateParameter: return "token parameter given more than once"
        case .invalidEncoding: return "token parameter is not validly percent-encoded"
        case .surroundingWhitespace: return "token parameter has leading or trailing whitespace"
        case .notBearerToken: return "token parameter is not a valid Bearer token"
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
    ///   is empty.
    /// - An empty or blank value (`?token`, `?token=`, `?token=%20%20`: only
    ///   spaces and tabs) sends no credentials: no header is added, as if the
    ///   parameter were absent, and the parameter is still removed.
    /// - If the request already has `settings.header` (any case), that header
    ///   wins: nothing is added or replaced, the parameter is still removed
    ///   (and still validated).
    /// - No parameter: the request is returned unchanged.
    ///
    /// Throws `duplicateParameter` when the parameter appears twice (with or
    /// without values), `invalidEncoding` for a `%` not followed by two hex
    /// digits, a value that is not UTF-8 once decoded, or one that decodes
    /// to a control character (0x00-0x1F, 0x7F, U+0080-U+009F; CR, LF, NUL
    /// included; a value of only spaces and tabs is blank, not refused),
    /// `surroundingWhitespace` for a value with leading or trailing spaces or
    /// tabs around other characters, and `notBearerToken` when the scheme is
    /// `Bearer` (any case) and the value is not `1*( ALPHA / DIGIT / "-" / "."
    /// / "_" / "~" / "+" / "/" ) *"="`.
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

        let value = try credential(found.value ?? [], scheme: settings.scheme)

        var result = request
        let newQuery = QueryParameter.join(kept)
        result.target = parts.joined(query: newQuery.isEmpty ? nil : newQuery)
        if let value, !request.headers.contains(settings.header) {
            let headerValue = settings.scheme.isEmpty ? value : settings.scheme + " " + value
            result.headers.add(settings.header, headerValue)
        }
        return result
    }

    /// The decoded, checked value; nil when it is blank (no credentials).
    static func credential(_ raw: ArraySlice<UInt8>, scheme: String) throws(TokenRewriteError) -> String? {
        let isBlank: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 }
        guard let bytes = PercentDecoding.decode(raw) else { throw .invalidEncoding }
        if bytes.allSatisfy(isBlank) { return nil }
        let value = try decodedValue(raw)
        if isBlank(bytes.first!) || isBlank(bytes.last!) { throw .surroundingWhitespace }
        if scheme.asciiCaseInsensitiveEquals("Bearer") && !isB64Token(bytes) { throw .notBearerToken }
        return value
    }

    /// b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    static func isB64Token(_ bytes: [UInt8]) -> Bool {
        var i = 0
        while i < bytes.count {
            switch bytes[i] {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
                 UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "+"), UInt8(ascii: "/"):
                i += 1
                continue
            default:
                break
            }
            break
        }
        guard i > 0 else { return false }
        return bytes[i...].allSatisfy { $0 == UInt8(ascii: "=") }
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
