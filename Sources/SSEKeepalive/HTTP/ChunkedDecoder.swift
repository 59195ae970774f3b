/// Incremental decoder of the chunked transfer coding (RFC 9112 §7.1).
///
/// It reads framing byte by byte and never copies payload: chunk data is
/// reported as a count, so the caller can move those bytes on (zero-copy) and
/// then report them with `consumePayload`. A typical driver:
///
///     while !input.isEmpty {
///         if decoder.payloadRemaining > 0 {
///             let n = min(decoder.payloadRemaining, input.count)
///             forward(input.prefix(n)); decoder.consumePayload(n); input.removeFirst(n)
///         } else {
///             let (used, step) = try decoder.consumeFraming(input)
///             input.removeFirst(used)
///             if step == .done { break }   // bytes after the message stay in `input`
///         }
///     }
public struct ChunkedDecoder: Sendable {
    public enum Step: Equatable, Sendable {
        /// Every input byte was consumed as framing; feed more.
        case needMore
        /// The next n input bytes (after `consumed`) are chunk data;
        /// n = payloadRemaining, which may exceed what the caller has.
        case payload(Int)
        /// The message (last-chunk + trailers + final CRLF) ended after `consumed`.
        case done
    }

    enum State: Sendable {
        case sizeStart, size, sizeOWS
        case extStart, extName, extAfterName, extValueStart, extToken, extQuoted, extQuotedPair, extAfterValue, extValueOWS
        case sizeLF
        case data, dataCR, dataLF
        case trailerLineStart, trailerName, trailerValue, trailerLF, finalLF
        case done, failed
    }

    /// Most hex digits in a chunk-size (15 digits = 60 bits).
    public static let maxSizeDigits = 15

    /// > 0 while inside chunk data.
    public private(set) var payloadRemaining: Int = 0
    var size = 0
    // Counters and limits are 32-bit and ordered by size: every open chunked
    // stream carries one decoder, so its size is part of memory per stream.
    private let lineLimit: Int32
    private let trailerLimit: Int32
    var lineBytes: Int32 = 0
    var trailerBytes: Int32 = 0
    var state: State = .sizeStart
    var sizeDigits: UInt8 = 0

    public var maxLineBytes: Int { Int(lineLimit) }
    public var maxTrailerBytes: Int { Int(trailerLimit) }

    public init(maxLineBytes: Int = 4096, maxTrailerBytes: Int = 16384) {
        self.lineLimit = Int32(clamping: maxLineBytes)
        self.trailerLimit = Int32(clamping: maxTrailerBytes)
    }

    public var isDone: Bool { state == .done }

    /// Reads framing bytes (chunk-size line with extensions, CRLF after data,
    /// last-chunk, trailer fields, final CRLF) from the start of `bytes`.
    /// Precondition: payloadRemaining == 0.
    public mutating func consumeFraming(_ bytes: UnsafeRawBufferPointer) throws(HTTPParseError) -> (consumed: Int, step: Step) {
        precondition(payloadRemaining == 0, "consumeFraming called inside chunk data")
        if state == .done { return (0, .done) }
        if state == .failed { throw .malformed("chunked decoder used after an error") }
        var i = 0
        let n = bytes.count
        while i < n {
            let b = bytes[i]
            i += 1
            switch state {
            // chunk-size line
            case .sizeStart, .size, .sizeOWS, .extStart, .extName, .extAfterName,
                 .extValueStart, .extToken, .extQuoted, .extQuotedPair, .extAfterValue, .extValueOWS:
                if b == HTTPBytes.cr && state != .extQuoted && state != .extQuotedPair {
                    try endSizeLine()
                    continue
                }
                lineBytes += 1
                if lineBytes > lineLimit { try fail("chunk size line too long") }
                try sizeLineByte(b)
            case .sizeLF:
                guard b == HTTPBytes.lf else { try fail("bare CR in chunk size line") }
                if size == 0 {
                    state = .trailerLineStart
                } else {
                    payloadRemaining = size
                    state = .data
                    return (i, .payload(size))
                }
            case .data:
                preconditionFailure("unreachable: payloadRemaining > 0")
            case .dataCR:
                guard b == HTTPBytes.cr else { try fail("missing CRLF after chunk data") }
                state = .dataLF
            case .dataLF:
                guard b == HTTPBytes.lf else { try fail("missing CRLF after chunk data") }
                startSizeLine()
            // trailer section
            case .trailerLineStart, .trailerName, .trailerValue, .trailerLF, .finalLF:
                trailerBytes += 1
                if trailerBytes > trailerLimit { try fail("trailer section too large") }
                if try trailerByte(b) { return (i, .done) }
            case .done, .failed:
                preconditionFailure("unreachable")
            }
        }
        return (n, .needMore)
    }

    public mutating func consumeFraming(_ bytes: [UInt8]) throws(HTTPParseError) -> (consumed: Int, step: Step) {
        let result = bytes.withUnsafeBytes { p in
            Result { () throws(HTTPParseError) in try consumeFraming(p) }
        }
        return try result.get()
    }

    /// The caller forwarded `count` bytes of chunk data (count <= payloadRemaining).
    public mutating func consumePayload(_ count: Int) {
        precondition(count >= 0 && count <= payloadRemaining, "consumePayload beyond the chunk")
        payloadRemaining -= count
        if payloadRemaining == 0 && state == .data { state = .dataCR }
    }

    // MARK: - Internals

    private mutating func fail(_ reason: String) throws(HTTPParseError) -> Never {
        state = .failed
        throw .malformed(reason)
    }

    private mutating func startSizeLine() {
        state = .sizeStart
        size = 0
        sizeDigits = 0
        lineBytes = 0
    }

    /// A CR outside a quoted string ends the chunk-size line.
    private mutating func endSizeLine() throws(HTTPParseError) {
        switch state {
        case .size, .extName, .extToken, .extAfterValue: state = .sizeLF
        case .sizeStart: try fail("missing chunk size")
        case .sizeOWS, .extAfterName, .extValueOWS: try fail("whitespace before end of chunk size line")
        default: try fail("incomplete chunk extension")
        }
    }

    private mutating func sizeLineByte(_ b: UInt8) throws(HTTPParseError) {
        if b == HTTPBytes.lf { try fail("bare LF in chunked framing") }
        switch state {
        case .sizeStart, .size:
            if let v = HTTPBytes.hexValue(b) {
                sizeDigits += 1
                if sizeDigits > Self.maxSizeDigits { try fail("chunk size overflow") }
                size = size << 4 | v
                state = .size
            } else if state == .sizeStart {
                try fail("invalid chunk size")
            } else if b == 0x3B {
                state = .extStart
            } else if HTTPBytes.isOWS(b) {
                state = .sizeOWS
            } else {
                try fail("invalid character \(HTTPBytes.describe(b)) in chunk size")
            }
        case .sizeOWS:
            if b == 0x3B { state = .extStart } else if !HTTPBytes.isOWS(b) { try fail("invalid chunk size line") }
        case .extStart:
            if HTTPBytes.isTchar(b) { state = .extName } else if !HTTPBytes.isOWS(b) { try fail("invalid chunk extension name") }
        case .extName:
            if HTTPBytes.isTchar(b) { break }
            if b == 0x3D { state = .extValueStart } else if b == 0x3B { state = .extStart }
            else if HTTPBytes.isOWS(b) { state = .extAfterName } else { try fail("invalid chunk extension") }
        case .extAfterName:
            if b == 0x3D { state = .extValueStart } else if b == 0x3B { state = .extStart }
            else if !HTTPBytes.isOWS(b) { try fail("invalid chunk extension") }
        case .extValueStart:
            if b == 0x22 { state = .extQuoted } else if HTTPBytes.isTchar(b) { state = .extToken }
            else if !HTTPBytes.isOWS(b) { try fail("invalid chunk extension value") }
        case .extToken:
            if HTTPBytes.isTchar(b) { break }
            if b == 0x3B { state = .extStart } else if HTTPBytes.isOWS(b) { state = .extValueOWS }
            else { try fail("invalid chunk extension value") }
        case .extQuoted:
            // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
            if b == 0x22 { state = .extAfterValue } else if b == 0x5C { state = .extQuotedPair }
            else if !HTTPBytes.isFieldValueByte(b) { try fail("invalid character \(HTTPBytes.describe(b)) in chunk extension") }
        case .extQuotedPair:
            if !HTTPBytes.isFieldValueByte(b) { try fail("invalid character \(HTTPBytes.describe(b)) in chunk extension") }
            state = .extQuoted
        case .extAfterValue, .extValueOWS:
            // chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ): whitespace only before ';'.
            if b == 0x3B { state = .extStart } else if HTTPBytes.isOWS(b) { state = .extValueOWS }
            else { try fail("invalid chunk extension") }
        default:
            preconditionFailure("unreachable")
        }
    }

    /// Returns true when the final CRLF has been read.
    private mutating func trailerByte(_ b: UInt8) throws(HTTPParseError) -> Bool {
        switch state {
        case .trailerLineStart:
            if b == HTTPBytes.cr { state = .finalLF }
            else if HTTPBytes.isTchar(b) { state = .trailerName }
            else if b == HTTPBytes.lf { try fail("bare LF in chunked framing") }
            else if HTTPBytes.isOWS(b) { try fail("obs-fold or whitespace at start of trailer line") }
            else if b == HTTPBytes.colon { try fail("empty trailer field name") }
            else { try fail("invalid character \(HTTPBytes.describe(b)) in trailer field name") }
        case .trailerName:
            if b == HTTPBytes.colon { state = .trailerValue }
            else if HTTPBytes.isTchar(b) { break }
            else if HTTPBytes.isOWS(b) { try fail("whitespace before colon in trailer field name") }
            else { try fail("invalid character \(HTTPBytes.describe(b)) in trailer field name") }
        case .trailerValue:
            if b == HTTPBytes.cr { state = .trailerLF }
            else if !HTTPBytes.isFieldValueByte(b) { try fail("invalid character \(HTTPBytes.describe(b)) in trailer field value") }
        case .trailerLF:
            guard b == HTTPBytes.lf else { try fail("bare CR in trailer section") }
            state = .trailerLineStart
        case .finalLF:
            guard b == HTTPBytes.lf else { try fail("bare CR in trailer section") }
            state = .done
            return true
        default:
            preconditionFailure("unreachable")
        }
        return false
    }
}

/// Chunked framing written by the proxy.
public enum ChunkedEncoding {
    /// Lowercase hex length + CRLF, e.g. "1a\r\n".
    public static func chunkHeader(_ length: Int) -> [UInt8] {
        withChunkHeader(length) { Array($0) }
    }

    /// The chunk header for `length` in a stack buffer (no allocation on the hot path).
    public static func withChunkHeader<R>(_ length: Int, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        precondition(length >= 0)
        // 16 hex digits at most, plus CRLF.
        var storage: (UInt64, UInt64, UInt64) = (0, 0, 0)
        return withUnsafeMutableBytes(of: &storage) { out in
            var count = 0
            var shift = length == 0 ? 0 : (Int.bitWidth - length.leadingZeroBitCount - 1) / 4 * 4
            while shift >= 0 {
                let nibble = UInt8((length >> shift) & 0xF)
                out[count] = nibble < 10 ? 0x30 + nibble : 0x61 + nibble - 10
                count += 1
                shift -= 4
            }
            out[count] = HTTPBytes.cr
            out[count + 1] = HTTPBytes.lf
            return body(UnsafeRawBufferPointer(rebasing: out[0..<(count + 2)]))
        }
    }

    /// Bytes on the wire for one chunk of `length` payload bytes: size line, payload, CRLF.
    public static func framedSize(_ length: Int) -> Int {
        let digits = length == 0 ? 1 : (Int.bitWidth - length.leadingZeroBitCount + 3) / 4
        return digits + 2 + length + 2
    }

    /// "\r\n" after chunk data.
    public static let chunkEnd: [UInt8] = [0x0D, 0x0A]
    /// "0\r\n\r\n": the last chunk with no trailers.
    public static let lastChunk: [UInt8] = [0x30, 0x0D, 0x0A, 0x0D, 0x0A]
}
