/// How a message body is delimited (RFC 9112 §6). Strict: any ambiguity that
/// could let two hops disagree about where a message ends is an error.
public enum BodyFraming: Equatable, Sendable {
    case none
    case contentLength(Int)
    case chunked
    case closeDelimited
}

extension BodyFraming {
    /// Largest Content-Length accepted (2^62).
    public static let maxContentLength = 1 << 62

    /// Framing of a request body; `.none` when neither Transfer-Encoding nor
    /// Content-Length is present (any method).
    public static func request(_ head: RequestHead) throws(HTTPParseError) -> BodyFraming {
        let hasTE = head.headers.contains("Transfer-Encoding")
        let hasCL = head.headers.contains("Content-Length")
        if hasTE {
            if hasCL { throw .malformed("both Transfer-Encoding and Content-Length") }
            if head.version == .http10 { throw .malformed("Transfer-Encoding in HTTP/1.0 request") }
            let codings = try transferCodings(head.headers)
            guard codings.count == 1, codings[0] == "chunked" else {
                throw .malformed("unsupported Transfer-Encoding in request")
            }
            return .chunked
        }
        if hasCL {
            // RFC 9110 8.6 lets a recipient reject a repeated value: no client
            // sends one, and a hop in front may have read it differently.
            if head.headers.values("Content-Length").count > 1 || head.headers["Content-Length"]!.contains(",") {
                throw .malformed("Content-Length given more than once")
            }
            return .contentLength(try contentLength(head.headers))
        }
        return .none
    }

    /// Framing of a response body to a request made with `requestMethod`.
    public static func response(_ head: ResponseHead, requestMethod: String) throws(HTTPParseError) -> BodyFraming {
        if (100...199).contains(head.status) || head.status == 204 || head.status == 304
            || requestMethod == "HEAD" {
            return .none
        }
        // A successful CONNECT turns the connection into a tunnel (RFC 9112 §6.3 rule 2).
        if (200...299).contains(head.status) && requestMethod == "CONNECT" {
            return .none
        }
        let hasTE = head.headers.contains("Transfer-Encoding")
        let hasCL = head.headers.contains("Content-Length")
        if hasTE {
            if hasCL { throw .malformed("both Transfer-Encoding and Content-Length in response") }
            let codings = try transferCodings(head.headers)
            let chunkedCount = codings.count(where: { $0 == "chunked" })
            if chunkedCount > 1 { throw .malformed("chunked applied more than once") }
            // Transfer-Encoding is hop-by-hop: the proxy undoes chunked and cannot
            // carry any other coding to the client (nginx answers 502 as well).
            guard codings == ["chunked"] else { throw .malformed("unsupported Transfer-Encoding in response") }
            return .chunked
        }
        if hasCL { return .contentLength(try contentLength(head.headers)) }
        return .closeDelimited
    }

    /// The lowercased transfer codings of every Transfer-Encoding field, in
    /// order (empty list elements skipped, as RFC 9110 §5.6.1 asks).
    static func transferCodings(_ headers: HTTPHeaders) throws(HTTPParseError) -> [String] {
        let codings = headers.tokens("Transfer-Encoding")
        if codings.isEmpty { throw .malformed("empty Transfer-Encoding") }
        return codings
    }

    /// Content-Length: every field and every comma-separated member must be
    /// the same 1*DIGIT (RFC 9110 §8.6); the value must not exceed 2^62.
    static func contentLength(_ headers: HTTPHeaders) throws(HTTPParseError) -> Int {
        var first: Substring? = nil
        for field in headers where field.name.asciiCaseInsensitiveEquals("Content-Length") {
            for member in field.value.split(separator: ",", omittingEmptySubsequences: false) {
                let m = member.trimmingOWS()
                if m.isEmpty || !m.utf8.allSatisfy(HTTPBytes.isDigit) {
                    throw .malformed("invalid Content-Length")
                }
                if let first {
                    if first != m { throw .malformed("conflicting Content-Length values") }
                } else {
                    first = m
                }
            }
        }
        guard let first else { throw .malformed("invalid Content-Length") }
        var value = 0
        for digit in first.utf8 {
            let d = Int(digit &- 0x30)
            if value > (maxContentLength - d) / 10 { throw .malformed("Content-Length too large") }
            value = value * 10 + d
        }
        return value
    }
}
