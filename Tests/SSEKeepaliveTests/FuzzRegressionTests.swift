// Property checks of the libFuzzer targets, and their regression test.
//
// This one file serves two builds:
// - `swift test`: FuzzRegressionTests (at the end) runs every committed input
//   in Fuzz/corpus/<target>/ through the same checks, so an input the fuzzer
//   found stays a regression test.
// - `scripts/fuzz`: compiled with `-D SSE_FUZZ` together with the pure
//   sources (Sources/SSEKeepalive/HTTP, EventStream, Proxy, Exchange, the
//   config model), the in-memory runtime (Support/ExchangeHarness.swift),
//   the reference SSE parser (Support/WHATWGEventParser.swift) and an entry point
//   Fuzz/entry.swift, into one module (one binary for every target). Everything outside the
//   `#if !SSE_FUZZ` blocks therefore uses only the Swift stdlib and the pure
//   code: no XCTest, no Foundation, no libevent.
//
// Top-level names start with `Fuzz` so they never collide with test helpers.

#if !SSE_FUZZ
import XCTest
@testable import SSEKeepalive
#endif

// MARK: - Targets

enum FuzzTarget: String, CaseIterable {
    case requestHead = "request_head"
    case responseChunked = "response_chunked"
    case sseHeartbeat = "sse_heartbeat"
    case exchange
    case pathNormalise = "path_normalise"
    case sharedStream = "shared_stream"

    /// Throws the first property that does not hold; a bug in the code under
    /// test may also trap (precondition, bounds, overflow).
    func check(_ input: [UInt8]) throws(FuzzPropertyFailure) {
        switch self {
        case .requestHead: try FuzzRequestHead.check(input)
        case .responseChunked: try FuzzResponseChunked.check(input)
        case .sseHeartbeat: try FuzzSSEHeartbeat.check(input)
        case .exchange: try FuzzExchange.check(input)
        case .pathNormalise: try FuzzPathNormalise.check(input)
        case .sharedStream: try FuzzSharedStream.check(input)
        }
    }
}

struct FuzzPropertyFailure: Error, CustomStringConvertible {
    var description: String
}

@inline(__always)
func fuzzCheck(_ condition: Bool, _ message: @autoclosure () -> String) throws(FuzzPropertyFailure) {
    if !condition { throw FuzzPropertyFailure(description: message()) }
}

/// Hex of at most 96 bytes, for failure messages.
func fuzzHex<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    for b in bytes.prefix(96) { out += [digits[Int(b >> 4)], digits[Int(b & 15)]] }
    return String(decoding: out, as: UTF8.self) + (bytes.count > 96 ? "...(\(bytes.count) bytes)" : "")
}

/// SplitMix64: small, seeded, reproducible. The test suite's one generator
/// (`SeededRNG` elsewhere); it lives here because the fuzz build compiles
/// this file without the rest of the tests. Here it derives split points and
/// window sizes from a control byte.
struct FuzzRNG: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// 0 ..< n (n > 0).
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    /// A segment length in 1...max: mostly tiny (framing and cursor edges), sometimes large.
    mutating func segment(max: Int) -> Int {
        guard max > 1 else { return 1 }
        switch below(8) {
        case 0, 1, 2, 3: return 1 + below(min(max, 3))
        case 4, 5, 6: return 1 + below(min(max, 24))
        default: return 1 + below(max)
        }
    }
}

// MARK: - Heads (request_head, and the head part of response_chunked)

enum FuzzHead {
    /// Checks shared by request and response heads; returns the parsed head
    /// when the whole input holds a complete one.
    /// - complete(head, len): 1 <= len <= count, the head ends with LF, and
    ///   re-parsing `serialized()` gives the same head (and its whole length);
    /// - prefixes: the results for growing prefixes are `.incomplete` until the
    ///   first other result, and from then on always that same result (a
    ///   valid head is never rejected early, a rejection never turns into
    ///   another status);
    /// - maxHeaderBytes = m over the whole input behaves like the prefix of
    ///   length m, with `.incomplete` becoming `.headersTooLarge`.
    static func check<Head: Equatable>(
        _ input: [UInt8],
        parse: ([UInt8], Int) -> HeadParseResult<Head>,
        serialize: (Head) -> [UInt8]
    ) throws(FuzzPropertyFailure) -> (head: Head, length: Int)? {
        let n = input.count
        let full = parse(input, Int.max)
        var complete: (head: Head, length: Int)? = nil
        if case .complete(let head, let length) = full {
            try fuzzCheck(length >= 1 && length <= n, "headLength \(length) outside 1...\(n)")
            try fuzzCheck(input[length - 1] == 0x0A, "head does not end with LF at \(length)")
            let s = serialize(head)
            let again = parse(s, Int.max)
            try fuzzCheck(again == .complete(head, headLength: s.count),
                          "re-parsing the serialized head gives \(again), expected \(head) (serialized \(fuzzHex(s)))")
            complete = (head, length)
        }

        var settled: (length: Int, result: HeadParseResult<Head>)? = nil
        for k in prefixLengths(input, headLength: complete?.length) {
            let r = k == n ? full : parse(Array(input[0..<k]), Int.max)
            if let settled {
                try fuzzCheck(sameOutcome(r, settled.result),
                              "prefix \(k) gives \(r), but prefix \(settled.length) already gave \(settled.result)")
            } else if !isIncomplete(r) {
                settled = (k, r)
            }
            let limited = parse(input, k)
            let expected: HeadParseResult<Head> = isIncomplete(r) ? (n > k ? .failed(.headersTooLarge) : .incomplete) : r
            try fuzzCheck(sameOutcome(limited, expected), "maxHeaderBytes \(k) gives \(limited), expected \(expected)")
        }
        return complete
    }

    /// Equal heads, or failures of the same class (status code). The reason
    /// may change as the buffer grows: the line scan rejects a bare CR
    /// anywhere in the line before the line's content is validated.
    static func sameOutcome<Head: Equatable>(_ a: HeadParseResult<Head>, _ b: HeadParseResult<Head>) -> Bool {
        switch (a, b) {
        case (.failed(.malformed), .failed(.malformed)): return true
        default: return a == b
        }
    }

    static func isIncomplete<Head>(_ r: HeadParseResult<Head>) -> Bool {
        if case .incomplete = r { return true }
        return false
    }

    /// Every prefix length of a short input; for longer ones the interesting
    /// lengths (ends, around each of the first LFs, around the head end) and
    /// a few pseudo-random ones, ascending, always including the whole input.
    static func prefixLengths(_ input: [UInt8], headLength: Int?) -> [Int] {
        let n = input.count
        if n <= 96 { return Array(0...n) }
        var ks: Set<Int> = [0, 1, 2, 3, n - 2, n - 1, n]
        if let h = headLength { ks.formUnion([h - 2, h - 1, h, h + 1]) }
        var lfs = 0
        for (i, b) in input.enumerated() where b == 0x0A || b == 0x0D {
            ks.formUnion([i, i + 1, i + 2])
            lfs += 1
            if lfs == 24 { break }
        }
        var rng = FuzzRNG(seed: UInt64(n) &* 0x1_0000_0001 ^ UInt64(input[n / 2]))
        for _ in 0..<16 { ks.insert(rng.below(n + 1)) }
        return ks.filter { $0 >= 0 && $0 <= n }.sorted()
    }
}

enum FuzzRequestHead {
    /// Input: the bytes a client sent.
    static func check(_ input: [UInt8]) throws(FuzzPropertyFailure) {
        let parsed = try FuzzHead.check(input,
                                        parse: { HeadParser.parseRequest($0, maxHeaderBytes: $1) },
                                        serialize: { $0.serialized() })
        guard let (head, _) = parsed else { return }
        _ = head.path
        let framing: BodyFraming
        do { framing = try BodyFraming.request(head) } catch { return }   // a 400: fine
        switch framing {
        case .none:
            try fuzzCheck(!head.headers.contains("Content-Length") && !head.headers.contains("Transfer-Encoding"),
                          "request framing .none despite Content-Length or Transfer-Encoding")
        case .contentLength(let length):
            try fuzzCheck(length >= 0 && length <= BodyFraming.maxContentLength, "Content-Length \(length) out of range")
            try fuzzCheck(!head.headers.contains("Transfer-Encoding"), "Content-Length framing despite Transfer-Encoding")
        case .chunked:
            try fuzzCheck(head.version == .http11, "chunked request in \(head.version)")
            try fuzzCheck(!head.headers.contains("Content-Length"), "chunked framing despite Content-Length")
        case .closeDelimited:
            throw FuzzPropertyFailure(description: "a request body can never be close-delimited")
        }
    }
}

// MARK: - Bodies (response_chunked)

/// What a body decoder made of a byte sequence.
struct FuzzBodyOutcome: Equatable {
    enum End: Equatable {
        /// The body ended after `consumed` bytes (the rest is the next message).
        case end(consumed: Int)
        case failed(HTTPParseError)
        /// Every byte was used and more are needed.
        case needMore
    }
    var payload: [UInt8] = []
    var end: End = .needMore
    var endsAtClose = false
}

enum FuzzResponseChunked {
    /// Input: control byte c, then either (c & 0x80) a bare chunked body, or a
    /// response head and its body. c & 0x60 selects the request method
    /// (GET, HEAD, CONNECT, GET), c & 0x3F seeds the split points.
    static func check(_ input: [UInt8]) throws(FuzzPropertyFailure) {
        let c = input.first ?? 0
        let rest = Array(input.dropFirst())
        let framing: BodyFraming
        let body: [UInt8]
        if c & 0x80 != 0 {
            framing = .chunked
            body = rest
        } else {
            let parsed = try FuzzHead.check(rest,
                                            parse: { HeadParser.parseResponse($0, maxHeaderBytes: $1) },
                                            serialize: { $0.serialized() })
            guard let (head, length) = parsed else { return }
            let method = ["GET", "HEAD", "CONNECT", "GET"][Int(c >> 5) & 3]
            do { framing = try BodyFraming.response(head, requestMethod: method) } catch { return }   // a 502: fine
            if case .contentLength(let n) = framing {
                try fuzzCheck(n >= 0 && n <= BodyFraming.maxContentLength, "Content-Length \(n) out of range")
            }
            body = Array(rest[length...])
        }
        var rng = FuzzRNG(seed: UInt64(c & 0x3F) &+ 0xC0FFEE)

        // The same bytes, three ways: one read, one byte per read, random reads
        // with random contiguous windows (like evbuffer chains).
        let whole = try decode(framing, body, reads: body.isEmpty ? [] : [body.count], rng: nil)
        let bytewise = try decode(framing, body, reads: Array(repeating: 1, count: body.count), rng: nil)
        try fuzzCheck(bytewise == whole, "byte-by-byte decoding \(bytewise) differs from one read \(whole), framing \(framing)")
        var reads: [Int] = []
        var left = body.count
        while left > 0 {
            let k = rng.segment(max: left)
            reads.append(k)
            left -= k
        }
        let split = try decode(framing, body, reads: reads, rng: &rng)
        try fuzzCheck(split == whole, "decoding in reads \(reads) gives \(split), one read \(whole), framing \(framing)")

        if framing == .chunked {
            let direct = try decodeChunkedDirectly(body)
            try fuzzCheck(direct == whole, "ChunkedDecoder driven directly gives \(direct), BodyDecoder \(whole)")
            try roundTrip(whole.payload, &rng)
            try chunkHeaderRoundTrip(body)
        }
    }

    /// Drives a BodyDecoder the way the runtime does: `reads` are the sizes of
    /// successive socket reads; with an rng the window is a random non-empty
    /// prefix of the buffered bytes, else all of them.
    static func decode(_ framing: BodyFraming, _ body: [UInt8], reads: [Int],
                       rng: UnsafeMutablePointer<FuzzRNG>?) throws(FuzzPropertyFailure) -> FuzzBodyOutcome {
        var decoder = BodyDecoder(framing)
        var out = FuzzBodyOutcome()
        var arrived = 0, consumed = 0, nextRead = 0, steps = 0
        while true {
            steps += 1
            try fuzzCheck(steps <= 3 * body.count + reads.count + 8, "body decoder makes no progress (\(framing))")
            let available = arrived - consumed
            let window = available == 0 ? 0 : (rng.map { 1 + $0.pointee.below(available) } ?? available)
            let result = body.withUnsafeBytes { p in
                Result { () throws(HTTPParseError) in
                    try decoder.next(available: available,
                                     window: UnsafeRawBufferPointer(rebasing: p[consumed..<consumed + window]))
                }
            }
            let instruction: BodyDecoder.Instruction
            switch result {
            case .success(let i): instruction = i
            case .failure(let error):
                out.end = .failed(error)
                out.endsAtClose = decoder.endsAtClose
                return out
            }
            switch instruction {
            case .payload(let k):
                try fuzzCheck(k > 0 && k <= available, ".payload(\(k)) with \(available) bytes available")
                out.payload += body[consumed..<consumed + k]
                consumed += k
                decoder.didForwardPayload(k)
            case .skip(let k):
                try fuzzCheck(k > 0 && k <= window, ".skip(\(k)) with a window of \(window)")
                consumed += k
            case .needMore:
                try fuzzCheck(available == 0, ".needMore with \(available) bytes available: the proxy would stall")
                if nextRead == reads.count {
                    out.end = .needMore
                    out.endsAtClose = decoder.endsAtClose
                    return out
                }
                arrived += reads[nextRead]
                nextRead += 1
            case .end:
                out.end = .end(consumed: consumed)
                out.endsAtClose = decoder.endsAtClose
                try fuzzCheck(out.endsAtClose, "body ended but endsAtClose is false")
                return out
            }
        }
    }

    /// The driver from ChunkedDecoder's documentation, over one buffer.
    static func decodeChunkedDirectly(_ body: [UInt8]) throws(FuzzPropertyFailure) -> FuzzBodyOutcome {
        var decoder = ChunkedDecoder()
        var out = FuzzBodyOutcome()
        var at = 0
        while true {
            if decoder.payloadRemaining > 0 {
                let k = min(decoder.payloadRemaining, body.count - at)
                if k == 0 { break }
                out.payload += body[at..<at + k]
                decoder.consumePayload(k)
                at += k
                continue
            }
            if at == body.count { break }
            let start = at
            let result = body.withUnsafeBytes { p in
                Result { () throws(HTTPParseError) in try decoder.consumeFraming(UnsafeRawBufferPointer(rebasing: p[start...])) }
            }
            switch result {
            case .failure(let error):
                out.end = .failed(error)
                out.endsAtClose = decoder.isDone
                return out
            case .success(let (used, step)):
                try fuzzCheck(used > 0 && used <= body.count - at, "consumeFraming used \(used) of \(body.count - at)")
                at += used
                switch step {
                case .needMore:
                    try fuzzCheck(at == body.count, ".needMore before the end of the input")
                case .payload(let k):
                    try fuzzCheck(k > 0 && k == decoder.payloadRemaining, ".payload(\(k)) but payloadRemaining \(decoder.payloadRemaining)")
                case .done:
                    try fuzzCheck(decoder.isDone, ".done but not isDone")
                    out.end = .end(consumed: at)
                    out.endsAtClose = true
                    return out
                }
            }
        }
        out.endsAtClose = decoder.isDone
        return out
    }

    /// The proxy's own chunked framing of a payload decodes to that payload,
    /// ending exactly at the last chunk.
    static func roundTrip(_ payload: [UInt8], _ rng: inout FuzzRNG) throws(FuzzPropertyFailure) {
        var encoded: [UInt8] = []
        var at = 0
        while at < payload.count {
            let k = rng.segment(max: payload.count - at)
            encoded += ChunkedEncoding.chunkHeader(k)
            encoded += payload[at..<at + k]
            encoded += ChunkedEncoding.chunkEnd
            at += k
        }
        encoded += ChunkedEncoding.lastChunk
        let next: [UInt8] = Array("HTTP/1.1 200 OK\r\n".utf8)
        let decoded = try decode(.chunked, encoded + next, reads: [encoded.count + next.count], rng: nil)
        let expected = FuzzBodyOutcome(payload: payload, end: .end(consumed: encoded.count), endsAtClose: true)
        try fuzzCheck(decoded == expected, "re-encoded payload decodes to \(decoded) (encoded \(fuzzHex(encoded)))")
    }

    /// chunkHeader(n) for an n taken from the input is read back as n.
    static func chunkHeaderRoundTrip(_ body: [UInt8]) throws(FuzzPropertyFailure) {
        var v = 0
        for b in body.prefix(8) { v = v << 8 | Int(b) }
        let n = v & ((1 << 60) - 1)
        guard n > 0 else { return }
        var decoder = ChunkedDecoder()
        let header = ChunkedEncoding.chunkHeader(n)
        let result = header.withUnsafeBytes { p in
            Result { () throws(HTTPParseError) in try decoder.consumeFraming(p) }
        }
        guard case .success(let (used, step)) = result, used == header.count, step == .payload(n) else {
            throw FuzzPropertyFailure(description: "chunkHeader(\(n)) = \(fuzzHex(header)) reads back as \(result)")
        }
    }
}

// MARK: - SSE heartbeats (sse_heartbeat)

/// One event stream through the real `ExchangeMachine` (Support/ExchangeHarness.swift):
/// upstream reads, idle timeouts, and after every step the machine's cursor
/// is compared with one stepped over every byte the client got.
enum FuzzSSEHeartbeat {
    static let comments = ["heartbeat", "", "data: x", "a\rb\nc"]

    /// Input: flags f, seed s, then the upstream payload.
    /// f & 1: heartbeat.blank_line false; f & 2: idle before the first byte;
    /// (f >> 2) & 3: the comment; f & 16: the upstream sends chunks (else
    /// close-delimited); f and s seed the read sizes and how often the idle
    /// timer fires between reads (0-2 times, also after the last).
    static func check(_ input: [UInt8]) throws(FuzzPropertyFailure) {
        let f = input.count > 0 ? input[0] : 0
        let s = input.count > 1 ? input[1] : 0
        let payload = Array(input.dropFirst(2))
        let heartbeat = HeartbeatBytes(comment: comments[Int(f >> 2) & 3], blankLine: f & 1 == 0)
        let early = f & 2 != 0
        let chunked = f & 16 != 0
        let expectedEvents = WHATWGEventParser.parseAll(payload)
        let expectedHTTPX = heartbeat.blankLine ? nil : HTTPXStyleEventParser.parseAll(payload)

        // Random reads, 0-2 idle timeouts after each.
        var rng = FuzzRNG(seed: UInt64(f) << 8 | UInt64(s))
        let stream = EventStreamDriver(heartbeat: heartbeat, upstreamChunked: chunked)
        if early { try idle(stream) }
        var at = 0
        while at < payload.count {
            let k = rng.segment(max: payload.count - at)
            try read(stream, payload[at..<at + k])
            at += k
            for _ in 0..<rng.below(3) { try idle(stream) }
        }
        stream.endOfStream()
        try checkStream(payload, early: early, stream, expectedEvents, expectedHTTPX, "reads")

        // One byte per read, the timer firing before every byte and after the last.
        let bytewise = EventStreamDriver(heartbeat: heartbeat, upstreamChunked: chunked)
        for (i, b) in payload.enumerated() {
            if i > 0 || early { try idle(bytewise) }
            try read(bytewise, [b])
        }
        try idle(bytewise)
        bytewise.endOfStream()
        try checkStream(payload, early: early, bytewise, expectedEvents, expectedHTTPX, "byte by byte")
    }

    static func read<C: Collection>(_ stream: EventStreamDriver, _ bytes: C) throws(FuzzPropertyFailure) where C.Element == UInt8 {
        stream.upstream(Array(bytes))
        try checkCursor(stream, "after a read")
    }

    static func idle(_ stream: EventStreamDriver) throws(FuzzPropertyFailure) {
        let form = stream.idle()
        if let form {
            let bytes = stream.heartbeat.bytes(form)
            try fuzzCheck(bytes.first == 0x3A && bytes.last == 0x0A && !bytes.contains(0x0D)
                          && bytes.dropLast(form == .boundary && stream.heartbeat.blankLine ? 2 : 1).allSatisfy { $0 != 0x0A },
                          "heartbeat \(fuzzHex(bytes)) is not one comment line (+ blank line)")
        }
        try checkCursor(stream, "after a \(form.map { "\($0)" } ?? "deferred") heartbeat")
    }

    /// The machine's cursor agrees with the bytes the client got, stepped one by one.
    static func checkCursor(_ stream: EventStreamDriver, _ when: String) throws(FuzzPropertyFailure) {
        try fuzzCheck(stream.harness.violation == nil, "runtime misuse: \(stream.harness.violation ?? "")")
        try fuzzCheck(stream.readError == nil, "\(when) the client cannot read its bytes: \(stream.readError ?? "")")
        guard let cursor = stream.cursor else { return }
        _ = stream.output
        try fuzzCheck(cursor.position == stream.reference,
                      "\(when) the cursor says \(cursor.position), the bytes say \(stream.reference) (output \(fuzzHex(stream.output)))")
    }

    static func checkStream(_ payload: [UInt8], early: Bool, _ stream: EventStreamDriver, _ expectedEvents: SSEParseResult,
                            _ expectedHTTPX: SSEParseResult?, _ mode: String) throws(FuzzPropertyFailure) {
        let output = stream.output
        let context = "(\(mode), blank_line \(stream.heartbeat.blankLine), output \(fuzzHex(output)))"
        try fuzzCheck(stream.harness.violation == nil, "runtime misuse: \(stream.harness.violation ?? "") \(context)")
        try fuzzCheck(stream.ended, "the stream did not end cleanly \(context)")
        let stripped = stream.bomStripped
        try fuzzCheck(!stripped || (early && payload.starts(with: LeadingBOM.bytes)),
                      "stripped a BOM the payload does not start with, or with no heartbeat first \(context)")
        let expectedBytes = stripped ? Array(payload.dropFirst(3)) : payload
        try fuzzCheck(stream.outputWithoutHeartbeats == expectedBytes,
                      "output without heartbeats \(fuzzHex(stream.outputWithoutHeartbeats)) is not the payload \(context)")
        for r in stream.heartbeatRanges where r.lowerBound > 0 {
            try fuzzCheck(output[r.lowerBound - 1] == 0x0A, "heartbeat at \(r.lowerBound) not after an LF \(context)")
        }
        let events = WHATWGEventParser.parseAll(output)
        try fuzzCheck(events == expectedEvents, "WHATWG parser reads \(events) through the proxy, \(expectedEvents) directly \(context)")
        if let expectedHTTPX {
            let httpx = HTTPXStyleEventParser.parseAll(output)
            try fuzzCheck(httpx == expectedHTTPX,
                          "httpx-style parser reads \(httpx) through the proxy, \(expectedHTTPX) directly \(context)")
        }
    }
}

// MARK: - path_normalise

/// `RequestTarget`: the path routing and the upstream share. The input is
/// taken as a path after a leading `/`, and as a whole request-target.
enum FuzzPathNormalise {
    static let slash = UInt8(ascii: "/"), dot = UInt8(ascii: "."), percent = UInt8(ascii: "%")

    static func check(_ input: [UInt8]) throws(FuzzPropertyFailure) {
        let path = [slash] + input
        let got: [UInt8]?
        do {
            got = Array(try RequestTarget.normalisePath(path[...]).utf8)
        } catch {
            got = nil
        }
        let expected = reference(path)
        try fuzzCheck((got == nil) == (expected == nil),
                      "accepted \(got != nil), reference \(expected != nil) for \(fuzzHex(path))")
        if let got, let expected {
            try shape(got, path)
            try fuzzCheck(decodeAll(got) == expected,
                          "\(fuzzHex(path)) -> \(fuzzHex(got)), reference \(fuzzHex(expected))")
            let again = try? RequestTarget.normalisePath(got[...])
            try fuzzCheck(again.map { Array($0.utf8) } == got, "not a fixed point: \(fuzzHex(got))")
        }
        // The router's shortcut: a path it calls normal is one normalisePath leaves as it is.
        let asString = String(decoding: path, as: UTF8.self)
        if RequestTarget.isNormalPath(asString) {
            try fuzzCheck(got == Array(asString.utf8), "isNormalPath but normalised to something else: \(fuzzHex(path))")
        }

        // The whole input as a request-target: what routing picks is what is sent.
        let target = String(decoding: input, as: UTF8.self)
        if let t = try? RequestTarget(target, method: "GET", host: "a") {
            try fuzzCheck(RequestTarget.routingPath(t.originForm) == t.path, "origin-form routes elsewhere: \(fuzzHex(input))")
            try fuzzCheck(RequestTarget.routingPath(t.path) == t.path, "path not idempotent: \(fuzzHex(input))")
            try fuzzCheck(RequestTarget.routingPath(target) == t.path, "routingPath differs: \(fuzzHex(input))")
            // On bytes: a combining mark after `?` would hide it from a Character search.
            let bytes = Array(target.utf8)
            let q = bytes.firstIndex(of: UInt8(ascii: "?")), hash = bytes.firstIndex(of: UInt8(ascii: "#"))
            if let q, hash.map({ $0 > q }) ?? true {
                let rawQuery = bytes[(q + 1)...].prefix { $0 != UInt8(ascii: "#") }
                try fuzzCheck(t.query.map { Array($0.utf8) } == Array(rawQuery), "query changed: \(fuzzHex(input))")
            } else {
                try fuzzCheck(t.query == nil, "query without '?': \(fuzzHex(input))")
            }
            try fuzzCheck(RequestTarget.isNormalPath(t.path) || t.path.utf8.contains(percent),
                          "normalised path not recognised as normal: \(fuzzHex(input))")
        }
    }

    /// No `//`, `/./`, `/../`, no trailing dot segment, visible ASCII only, only escapes of reserved bytes.
    static func shape(_ out: [UInt8], _ input: [UInt8]) throws(FuzzPropertyFailure) {
        let context = "\(fuzzHex(input)) -> \(fuzzHex(out))"
        try fuzzCheck(out.first == slash, "no leading slash: \(context)")
        let segments = out.split(separator: slash, omittingEmptySubsequences: false).dropFirst()
        for (i, segment) in segments.enumerated() {
            try fuzzCheck(!segment.isEmpty || i == segments.count - 1, "empty segment: \(context)")
            try fuzzCheck(!segment.elementsEqual([dot]) && !segment.elementsEqual([dot, dot]), "dot segment: \(context)")
        }
        var i = 0
        while i < out.count {
            let b = out[i]
            try fuzzCheck(b > 0x20 && b < 0x7F && b != UInt8(ascii: "\\"), "byte \(b) in output: \(context)")
            if b == percent {
                try fuzzCheck(i + 2 < out.count, "cut escape: \(context)")
                let hex = Array("0123456789ABCDEF".utf8)
                try fuzzCheck(hex.contains(out[i + 1]) && hex.contains(out[i + 2]), "escape not upper-case hex: \(context)")
                let v = UInt8(hex.firstIndex(of: out[i + 1])! << 4 | hex.firstIndex(of: out[i + 2])!)
                try fuzzCheck(!RequestTarget.isUnreserved(v) && v != slash && v != UInt8(ascii: "\\"),
                              "escape of \(v) left in output: \(context)")
                i += 3
            } else {
                i += 1
            }
        }
    }

    static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case 0x30...0x39: return b - 0x30
        case 0x41...0x46: return b - 0x41 + 10
        case 0x61...0x66: return b - 0x61 + 10
        default: return nil
        }
    }

    static func decodeAll(_ bytes: [UInt8]) -> [UInt8]? {
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            if bytes[i] == percent {
                guard i + 2 < bytes.count, let hi = hexValue(bytes[i + 1]), let lo = hexValue(bytes[i + 2]) else { return nil }
                out.append(hi << 4 | lo)
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return out
    }

    /// The decoded normalised path, by a different route: decode everything,
    /// refuse what is ambiguous, then resolve segments on a stack.
    static func reference(_ path: [UInt8]) -> [UInt8]? {
        var decoded: [UInt8] = []
        var i = 1
        while i < path.count {
            let b = path[i]
            if b == percent {
                guard i + 2 < path.count, let hi = hexValue(path[i + 1]), let lo = hexValue(path[i + 2]) else { return nil }
                let v = hi << 4 | lo
                if v == slash || v == UInt8(ascii: "\\") || v < 0x20 || v == 0x7F { return nil }
                decoded.append(v)
                i += 3
            } else {
                if b == UInt8(ascii: "\\") || b <= 0x20 || b >= 0x7F { return nil }
                decoded.append(b)
                i += 1
            }
        }
        guard String(validating: decoded, as: UTF8.self) != nil else { return nil }
        let segments = decoded.split(separator: slash, omittingEmptySubsequences: false)
        var stack: [ArraySlice<UInt8>] = []
        for segment in segments {
            if segment.isEmpty || segment.elementsEqual([dot]) { continue }
            if segment.elementsEqual([dot, dot]) {
                if stack.isEmpty { return nil }
                stack.removeLast()
                continue
            }
            stack.append(segment)
        }
        let last = segments.last ?? []
        let trailing = last.isEmpty || last.elementsEqual([dot]) || last.elementsEqual([dot, dot])
        var out: [UInt8] = [slash]
        for (n, s) in stack.enumerated() {
            if n > 0 { out.append(slash) }
            out += s
        }
        if trailing && !stack.isEmpty { out.append(slash) }
        return out
    }
}

// MARK: - libFuzzer entry support

#if SSE_FUZZ
/// Called by Fuzz/entry.swift's LLVMFuzzerTestOneInput for the target it was started for.
func fuzzRun(_ target: FuzzTarget, _ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    do {
        try target.check(input)
    } catch {
        fatalError("\(target.rawValue): \(error)\ninput: \(fuzzHex(input))")
    }
    return 0
}
#endif

// MARK: - Regression test over the committed corpus

#if !SSE_FUZZ
final class FuzzRegressionTests: XCTestCase {
    /// <repo>/Fuzz/corpus
    static let corpus = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/corpus")

    func runCorpus(_ target: FuzzTarget) throws {
        let dir = Self.corpus.appendingPathComponent(target.rawValue)
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path)
            .filter { !$0.hasPrefix(".") }.sorted()
        XCTAssertFalse(names.isEmpty, "no corpus in \(dir.path)")
        for name in names {
            let input = [UInt8](try Data(contentsOf: dir.appendingPathComponent(name)))
            do {
                try target.check(input)
            } catch {
                XCTFail("Fuzz/corpus/\(target.rawValue)/\(name): \(error)")
            }
        }
    }

    func testRequestHeadCorpus() throws { try runCorpus(.requestHead) }
    func testResponseChunkedCorpus() throws { try runCorpus(.responseChunked) }
    func testSSEHeartbeatCorpus() throws { try runCorpus(.sseHeartbeat) }
    func testExchangeCorpus() throws { try runCorpus(.exchange) }
    func testPathNormaliseCorpus() throws { try runCorpus(.pathNormalise) }
    func testSharedStreamCorpus() throws { try runCorpus(.sharedStream) }
}
#endif
