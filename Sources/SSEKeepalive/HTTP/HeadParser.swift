/// Stateless, strict HTTP/1.x head parser (RFC 9112 sections 2-5 and 11).
///
/// It is called with the whole buffered prefix of a connection each time more
/// bytes arrive. One validating pass finds the end of the head without
/// allocating; only a complete, valid head is then turned into values.
/// Invalid input fails as soon as the invalid byte is in the buffer, without
/// waiting for the rest of the head.

public enum HTTPParseError: Error, Equatable, Sendable {
    /// -> 431
    case headersTooLarge
    /// -> 505
    case unsupportedVersion
    /// -> 400; the string is a short reason for logs.
    case malformed(String)
}

public enum HeadParseResult<Head> {
    case incomplete
    /// `headLength` counts the bytes up to and including the blank line.
    case complete(Head, headLength: Int)
    case failed(HTTPParseError)
}

extension HeadParseResult: Equatable where Head: Equatable {}
extension HeadParseResult: Sendable where Head: Sendable {}

public enum HeadParser {
    /// Empty lines (CRLF or LF) ignored before a request-line (RFC 9112 §2.2).
    public static let maxLeadingEmptyLines = 8

    public static func parseRequest(_ bytes: UnsafeRawBufferPointer, maxHeaderBytes: Int) -> HeadParseResult<RequestHead> {
        switch scan(bytes, kind: .request, maxHeaderBytes: maxHeaderBytes) {
        case .incomplete: return .incomplete
        case .failed(let error): return .failed(error)
        case .complete(let layout): return .complete(buildRequest(bytes, layout), headLength: layout.headLength)
        }
    }

    public static func parseResponse(_ bytes: UnsafeRawBufferPointer, maxHeaderBytes: Int) -> HeadParseResult<ResponseHead> {
        switch scan(bytes, kind: .response, maxHeaderBytes: maxHeaderBytes) {
        case .incomplete: return .incomplete
        case .failed(let error): return .failed(error)
        case .complete(let layout): return .complete(buildResponse(bytes, layout), headLength: layout.headLength)
        }
    }

    public static func parseRequest(_ bytes: [UInt8], maxHeaderBytes: Int) -> HeadParseResult<RequestHead> {
        bytes.withUnsafeBytes { parseRequest($0, maxHeaderBytes: maxHeaderBytes) }
    }

    public static func parseResponse(_ bytes: [UInt8], maxHeaderBytes: Int) -> HeadParseResult<ResponseHead> {
        bytes.withUnsafeBytes { parseResponse($0, maxHeaderBytes: maxHeaderBytes) }
    }
}

// MARK: - Validating scan (no allocation)

extension HeadParser {
    enum Kind { case request, response }

    struct Layout {
        /// Start-line content, without its line end.
        var startLine: Range<Int>
        /// First byte after the start-line's line end.
        var fieldsStart: Int
        var fieldCount: Int
        var version: HTTPVersion
        var headLength: Int
    }

    enum ScanResult {
        case incomplete
        case complete(Layout)
        case failed(HTTPParseError)
    }

    static func scan(_ p: UnsafeRawBufferPointer, kind: Kind, maxHeaderBytes: Int) -> ScanResult {
        let limit = min(p.count, max(0, maxHeaderBytes))
        var pos = 0
        var emptyLines = 0
        var startLine: Range<Int>? = nil
        var fieldsStart = 0
        var version = HTTPVersion.http11
        var fieldCount = 0
        var hostCount = 0

        while true {
            // Find the line end; reject a CR that is followed by anything but LF.
            var i = pos
            var lineEnd = -1
            while i < limit {
                let b = p[i]
                if b == HTTPBytes.lf { lineEnd = i; break }
                if b == HTTPBytes.cr, i + 1 < limit, p[i + 1] != HTTPBytes.lf {
                    return .failed(.malformed("bare CR"))
                }
                i += 1
            }
            let complete = lineEnd >= 0
            var contentEnd = complete ? lineEnd : limit
            if contentEnd > pos && p[contentEnd - 1] == HTTPBytes.cr { contentEnd -= 1 }

            if startLine == nil {
                if complete && contentEnd == pos {
                    if kind == .request && emptyLines < maxLeadingEmptyLines {
                        emptyLines += 1
                        pos = lineEnd + 1
                        continue
                    }
                    return .failed(.malformed(kind == .request ? "too many empty lines before request-line" : "empty status-line"))
                }
                let checked = kind == .request
                    ? checkRequestLine(p, pos, contentEnd, complete: complete)
                    : checkStatusLine(p, pos, contentEnd, complete: complete)
                switch checked {
                case .failure(let error): return .failed(error)
                case .success(let v):
                    guard complete, let v else { return incomplete(p, maxHeaderBytes) }
                    version = v
                }
                startLine = pos..<contentEnd
                pos = lineEnd + 1
                fieldsStart = pos
                continue
            }

            if complete && contentEnd == pos {
                // The blank line: end of head.
                if kind == .request {
                    if hostCount == 0 && version == .http11 { return .failed(.malformed("missing Host header")) }
                }
                return .complete(Layout(startLine: startLine!, fieldsStart: fieldsStart, fieldCount: fieldCount,
                                        version: version, headLength: lineEnd + 1))
            }
            switch checkFieldLine(p, pos, contentEnd, complete: complete, utf8Values: kind == .request) {
            case .failure(let error): return .failed(error)
            case .success(let isHost):
                guard complete else { return incomplete(p, maxHeaderBytes) }
                fieldCount += 1
                if isHost && kind == .request {
                    hostCount += 1
                    if hostCount > 1 { return .failed(.malformed("multiple Host headers")) }
                }
            }
            pos = lineEnd + 1
        }
    }

    @inline(__always)
    private static func incomplete(_ p: UnsafeRawBufferPointer, _ maxHeaderBytes: Int) -> ScanResult {
        p.count > maxHeaderBytes ? .failed(.headersTooLarge) : .incomplete
    }

    /// `HTTP/` DIGIT `.` DIGIT, checked over the first `n` (<= 8) bytes.
    private static func matchesVersionPattern(_ p: UnsafeRawBufferPointer, _ s: Int, count n: Int) -> Bool {
        for k in 0..<min(n, 8) {
            let b = p[s + k]
            let ok: Bool
            switch k {
            case 0: ok = b == 0x48 // H
            case 1, 2: ok = b == 0x54 // T
            case 3: ok = b == 0x50 // P
            case 4: ok = b == 0x2F // /
            case 6: ok = b == 0x2E // .
            default: ok = HTTPBytes.isDigit(b)
            }
            if !ok { return false }
        }
        return true
    }

    /// Classifies a well-formed `HTTP/d.d` at `s`.
    private static func classifyVersion(_ p: UnsafeRawBufferPointer, _ s: Int) -> Result<HTTPVersion, HTTPParseError> {
        let major = Int(p[s + 5] &- 0x30), minor = Int(p[s + 7] &- 0x30)
        guard major == 1, minor == 0 || minor == 1 else { return .failure(.unsupportedVersion) }
        return .success(HTTPVersion(major: major, minor: minor))
    }

    /// request-line = method SP request-target SP HTTP-version.
    /// Returns the version once the line is complete, nil for a valid prefix.
    static func checkRequestLine(_ p: UnsafeRawBufferPointer, _ s: Int, _ e: Int, complete: Bool) -> Result<HTTPVersion?, HTTPParseError> {
        var i = s
        while i < e && HTTPBytes.isTchar(p[i]) { i += 1 }
        if i == e { return complete ? .failure(.malformed("incomplete request-line")) : .success(nil) }
        if p[i] != HTTPBytes.sp { return .failure(.malformed("invalid character \(HTTPBytes.describe(p[i])) in method")) }
        if i == s { return .failure(.malformed("empty method")) }
        i += 1
        let targetStart = i
        while i < e && HTTPBytes.isVisibleASCII(p[i]) { i += 1 }
        if i == e { return complete ? .failure(.malformed("missing HTTP version in request-line")) : .success(nil) }
        if p[i] != HTTPBytes.sp { return .failure(.malformed("invalid character \(HTTPBytes.describe(p[i])) in request-target")) }
        if i == targetStart { return .failure(.malformed("empty request-target or extra space in request-line")) }
        i += 1
        let n = e - i
        if !matchesVersionPattern(p, i, count: n) || n > 8 { return .failure(.malformed("invalid HTTP version in request-line")) }
        guard complete else { return .success(nil) }
        if n != 8 { return .failure(.malformed("invalid HTTP version in request-line")) }
        return classifyVersion(p, i).map { $0 }
    }

    /// status-line = HTTP-version SP 3DIGIT [ SP reason-phrase ].
    static func checkStatusLine(_ p: UnsafeRawBufferPointer, _ s: Int, _ e: Int, complete: Bool) -> Result<HTTPVersion?, HTTPParseError> {
        let notYet: Result<HTTPVersion?, HTTPParseError> = .success(nil)
        if !matchesVersionPattern(p, s, count: e - s) { return .failure(.malformed("invalid HTTP version in status-line")) }
        var i = s + 8
        if i > e { return complete ? .failure(.malformed("invalid HTTP version in status-line")) : notYet }
        if i == e { return complete ? .failure(.malformed("missing status code")) : notYet }
        if p[i] != HTTPBytes.sp { return .failure(.malformed("invalid HTTP version in status-line")) }
        i += 1
        for k in 0..<3 {
            if i + k == e { return complete ? .failure(.malformed("status code must be three digits")) : notYet }
            let b = p[i + k]
            if !HTTPBytes.isDigit(b) || (k == 0 && b == 0x30) {
                return .failure(.malformed("status code must be three digits 100-999"))
            }
        }
        i += 3
        if i < e {
            if p[i] != HTTPBytes.sp { return .failure(.malformed("status code must be three digits")) }
            i += 1
            while i < e {
                if !HTTPBytes.isFieldValueByte(p[i]) {
                    return .failure(.malformed("invalid character \(HTTPBytes.describe(p[i])) in reason phrase"))
                }
                i += 1
            }
        }
        guard complete else { return notYet }
        return classifyVersion(p, s).map { $0 }
    }

    /// field-line = field-name ":" OWS field-value OWS. Returns whether the
    /// name is `Host` (only meaningful once complete). With `utf8Values`
    /// (requests), bytes above 0x7F must form UTF-8: header values are kept as
    /// strings, and other bytes could not be forwarded unchanged.
    static func checkFieldLine(_ p: UnsafeRawBufferPointer, _ s: Int, _ e: Int, complete: Bool,
                               utf8Values: Bool = false) -> Result<Bool, HTTPParseError> {
        guard s < e else { return .success(false) }
        if HTTPBytes.isOWS(p[s]) { return .failure(.malformed("obs-fold or whitespace at start of header line")) }
        var i = s
        while i < e && HTTPBytes.isTchar(p[i]) { i += 1 }
        if i == e { return complete ? .failure(.malformed("missing colon in header line")) : .success(false) }
        let b = p[i]
        if b != HTTPBytes.colon {
            if HTTPBytes.isOWS(b) { return .failure(.malformed("whitespace before colon in header name")) }
            return .failure(.malformed("invalid character \(HTTPBytes.describe(b)) in header name"))
        }
        if i == s { return .failure(.malformed("empty header name")) }
        let isHost = i - s == 4 && (p[s] | 0x20) == 0x68 && (p[s + 1] | 0x20) == 0x6F
            && (p[s + 2] | 0x20) == 0x73 && (p[s + 3] | 0x20) == 0x74
        var j = i + 1
        var utf8 = UTF8Check()
        while j < e {
            let v = p[j]
            if !HTTPBytes.isFieldValueByte(v) {
                return .failure(.malformed("invalid character \(HTTPBytes.describe(v)) in header value"))
            }
            if utf8Values && !utf8.accept(v) { return .failure(.malformed("header value is not UTF-8")) }
            j += 1
        }
        if utf8Values && complete && !utf8.isComplete { return .failure(.malformed("header value is not UTF-8")) }
        return .success(isHost)
    }
}

// MARK: - Building values from a validated head

extension HeadParser {
    @inline(__always)
    private static func string(_ p: UnsafeRawBufferPointer, _ range: Range<Int>) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: p[range]), as: UTF8.self)
    }

    private static func buildFields(_ p: UnsafeRawBufferPointer, _ layout: Layout) -> HTTPHeaders {
        var fields: [HTTPHeaders.Field] = []
        fields.reserveCapacity(layout.fieldCount)
        var pos = layout.fieldsStart
        let end = layout.headLength
        while pos < end {
            var lineEnd = pos
            while p[lineEnd] != HTTPBytes.lf { lineEnd += 1 }
            var e = lineEnd
            if e > pos && p[e - 1] == HTTPBytes.cr { e -= 1 }
            if e == pos { break } // the blank line
            var colon = pos
            while p[colon] != HTTPBytes.colon { colon += 1 }
            var vs = colon + 1, ve = e
            while vs < ve && HTTPBytes.isOWS(p[vs]) { vs += 1 }
            while ve > vs && HTTPBytes.isOWS(p[ve - 1]) { ve -= 1 }
            fields.append(HTTPHeaders.Field(name: string(p, pos..<colon), value: string(p, vs..<ve)))
            pos = lineEnd + 1
        }
        return HTTPHeaders(fields)
    }

    static func buildRequest(_ p: UnsafeRawBufferPointer, _ layout: Layout) -> RequestHead {
        let line = layout.startLine
        var sp1 = line.lowerBound
        while p[sp1] != HTTPBytes.sp { sp1 += 1 }
        var sp2 = sp1 + 1
        while p[sp2] != HTTPBytes.sp { sp2 += 1 }
        return RequestHead(method: string(p, line.lowerBound..<sp1), target: string(p, sp1 + 1..<sp2),
                           version: layout.version, headers: buildFields(p, layout))
    }

    static func buildResponse(_ p: UnsafeRawBufferPointer, _ layout: Layout) -> ResponseHead {
        let s = layout.startLine.lowerBound, e = layout.startLine.upperBound
        let status = Int(p[s + 9] &- 0x30) * 100 + Int(p[s + 10] &- 0x30) * 10 + Int(p[s + 11] &- 0x30)
        let reason = s + 13 <= e ? string(p, s + 13..<e) : ""
        return ResponseHead(version: layout.version, status: status, reason: reason, headers: buildFields(p, layout))
    }
}
