/// How a probe ended.
public enum ProbeEnd: Equatable, Sendable {
    /// The stream was still open when --duration ran out.
    case durationReached
    /// SIGINT/SIGTERM before --duration ran out.
    case interrupted
    /// The body's framing ended (last chunk, or Content-Length bytes).
    case responseComplete
    /// EOF from the server.
    case serverClosed
    /// ECONNRESET from the server side.
    case reset
    /// The head is one EventSource rejects (status, media type, framing): the
    /// probe stops there, as EventSource does.
    case notAStream
    case connectFailed(String)
    /// A socket error or a malformed response.
    case failed(String)

    /// Stable name for --json.
    public var code: String {
        switch self {
        case .durationReached: "duration_reached"
        case .interrupted: "interrupted"
        case .responseComplete: "response_complete"
        case .serverClosed: "server_closed"
        case .reset: "reset"
        case .notAStream: "not_a_stream"
        case .connectFailed: "connect_failed"
        case .failed: "failed"
        }
    }

    /// The server or something on the path ended the stream.
    public var isServerSide: Bool {
        switch self {
        case .responseComplete, .serverClosed, .reset: true
        default: false
        }
    }

    public var description: String {
        switch self {
        case .durationReached: "probe duration reached, stream still open"
        case .interrupted: "interrupted"
        case .responseComplete: "the server ended the response"
        case .serverClosed: "the server closed the connection"
        case .reset: "the connection was reset"
        case .notAStream: "not an event stream; stopped after the head"
        case .connectFailed(let why): "could not connect: \(why)"
        case .failed(let why): why
        }
    }
}

/// Everything the probe observed, as plain values. Times are ProbeTime
/// (ns since the probe started).
public struct ProbeRecord: Sendable {
    /// The URL as probed, and its request-target.
    public var url: String
    public var target: String
    public var durationLimit: ProbeTime
    public var connectedAt: ProbeTime? = nil
    /// First byte of the response.
    public var firstByteAt: ProbeTime? = nil
    /// The response head complete.
    public var headAt: ProbeTime? = nil
    public var head: ProbeHeadAnalysis? = nil
    public var firstPayloadAt: ProbeTime? = nil
    public var lastByteAt: ProbeTime? = nil
    /// Longest time without a byte, between connecting and the last read.
    public var longestReadGap: ProbeTime = 0
    public var reads = 0
    public var bytesReceived = 0
    public var payloadBytes = 0
    /// Events and comments in arrival order, at most `messageLimit`.
    public var messages: [ProbeMessage] = []
    public var eventCount = 0
    public var commentCount = 0
    /// Whether the payload was parsed as SSE (content-coded payloads only
    /// when the probe could decode them).
    public var payloadParsed = false
    /// The coding undone before parsing ("gzip", "deflate"), and how many
    /// bytes it gave.
    public var decodedCoding: String? = nil
    public var decodedBytes = 0
    /// Why decoding stopped, if it failed.
    public var decodeError: String? = nil
    /// Each read: when, and how many bytes (at most `readLimit`).
    public var readLog: [ProbeRead] = []
    /// The TLS session, for https.
    public var tls: ProbeTLSInfo? = nil
    public var retry: Int? = nil
    public var retryAt: ProbeTime? = nil
    public var end: ProbeEnd? = nil
    public var endAt: ProbeTime? = nil
    /// More about the end, e.g. "EOF inside the chunked body".
    public var endDetail: String? = nil

    public static let messageLimit = 100_000
    public static let readLimit = 100_000

    public init(url: ProbeURL, durationLimit: ProbeTime) {
        self.url = url.description
        self.target = url.target
        self.durationLimit = durationLimit
    }

    public var events: [ProbeMessage] { messages.filter { $0.kind == .event } }
}

/// One read from the socket (after TLS).
public struct ProbeRead: Equatable, Sendable {
    public var time: ProbeTime
    public var bytes: Int
    public init(time: ProbeTime, bytes: Int) {
        self.time = time
        self.bytes = bytes
    }
}

/// What was negotiated for https.
public struct ProbeTLSInfo: Equatable, Sendable {
    /// "TLSv1.3".
    public var version: String
    public var cipher: String
    /// The name sent in SNI and checked against the certificate.
    public var serverName: String
    /// ALPN: the protocol the server picked from "h2, http/1.1" (nil: no ALPN).
    public var alpn: String?
    /// false with --insecure (the certificate was not checked).
    public var verified: Bool

    public init(version: String, cipher: String, serverName: String, alpn: String?, verified: Bool) {
        self.version = version
        self.cipher = cipher
        self.serverName = serverName
        self.alpn = alpn
        self.verified = verified
    }

    /// The server would speak HTTP/2 to a browser.
    public var offersH2: Bool { alpn == "h2" }
}

/// The probe's protocol logic, sans I/O: feed it the bytes read from the
/// socket with their arrival time; it parses the head (HeadParser), undoes
/// the framing (BodyDecoder) and parses the event stream, and says when the
/// probe is over.
public struct ProbeSession: Sendable {
    public private(set) var record: ProbeRecord
    private var headBuffer: [UInt8] = []
    private var decoder: BodyDecoder? = nil
    private var parser = ProbeEventParser()
    private var inflater: ProbeInflater? = nil
    /// Bytes of the body not yet consumed by the decoder.
    private var pending: [UInt8] = []

    public static let maxHeaderBytes = 64 * 1024

    public init(url: ProbeURL, durationLimit: ProbeTime) {
        record = ProbeRecord(url: url, durationLimit: durationLimit)
    }

    public var isFinished: Bool { record.end != nil }

    public mutating func tlsEstablished(_ info: ProbeTLSInfo) {
        record.tls = info
    }

    public mutating func connected(at time: ProbeTime) {
        record.connectedAt = time
    }

    /// Records the end (the first one wins).
    public mutating func finish(_ end: ProbeEnd, at time: ProbeTime, detail: String? = nil) {
        guard record.end == nil else { return }
        record.end = end
        record.endAt = time
        if let detail {
            record.endDetail = detail
        } else if end == .serverClosed || end == .reset, let decoder, !decoder.endsAtClose {
            record.endDetail = record.head?.framing == .chunked ? "inside the chunked body, before its last chunk"
                : "before Content-Length bytes arrived"
        }
    }

    public mutating func receive(_ bytes: [UInt8], at time: ProbeTime) {
        guard !isFinished, !bytes.isEmpty else { return }
        let previous = record.lastByteAt ?? record.connectedAt ?? 0
        record.longestReadGap = max(record.longestReadGap, time - previous)
        record.lastByteAt = time
        record.reads += 1
        record.bytesReceived += bytes.count
        if record.readLog.count < ProbeRecord.readLimit { record.readLog.append(ProbeRead(time: time, bytes: bytes.count)) }
        if record.firstByteAt == nil { record.firstByteAt = time }

        if decoder == nil {
            headBuffer += bytes
            while decoder == nil && !isFinished {
                switch HeadParser.parseResponse(headBuffer, maxHeaderBytes: Self.maxHeaderBytes) {
                case .incomplete:
                    return
                case .failed(let error):
                    finish(.failed("malformed response head: \(Self.describe(error))"), at: time)
                    return
                case .complete(let head, let length):
                    headBuffer.removeFirst(length)
                    if (100...199).contains(head.status) && head.status != 101 { continue } // interim response
                    startBody(head, at: time)
                }
            }
            if isFinished { return }
            pending = headBuffer
            headBuffer = []
        } else {
            pending += bytes
        }
        decodeBody(at: time)
    }

    private mutating func startBody(_ head: ResponseHead, at time: ProbeTime) {
        let analysis = ProbeHeadAnalysis(head)
        record.head = analysis
        record.headAt = time
        guard analysis.isUsableStream, let framing = analysis.framing else {
            finish(.notAStream, at: time)
            return
        }
        decoder = BodyDecoder(framing)
        if let coding = analysis.decodableCoding {
            inflater = ProbeInflater(coding)
            record.decodedCoding = coding.rawValue
        }
        record.payloadParsed = !analysis.isContentEncoded || inflater != nil
    }

    private mutating func decodeBody(at time: ProbeTime) {
        guard var decoder else { return }
        defer { self.decoder = decoder }
        var offset = 0
        loop: while !isFinished {
            let available = pending.count - offset
            let result = pending.withUnsafeBytes { p in
                Result { () throws(HTTPParseError) in
                    try decoder.next(available: available, window: UnsafeRawBufferPointer(rebasing: p[offset...]))
                }
            }
            let instruction: BodyDecoder.Instruction
            switch result {
            case .success(let i): instruction = i
            case .failure(let error):
                finish(.failed("malformed response body: \(Self.describe(error))"), at: time)
                break loop
            }
            switch instruction {
            case .payload(let n):
                payload(Array(pending[offset..<offset + n]), at: time)
                decoder.didForwardPayload(n)
                offset += n
            case .skip(let n):
                offset += n
            case .needMore:
                break loop
            case .end:
                finish(.responseComplete, at: time)
            }
        }
        pending.removeFirst(min(offset, pending.count))
    }

    private mutating func payload(_ bytes: [UInt8], at time: ProbeTime) {
        if record.firstPayloadAt == nil { record.firstPayloadAt = time }
        record.payloadBytes += bytes.count
        guard record.payloadParsed else { return }
        if let inflater {
            var decoded: [UInt8] = []
            inflater.feed(bytes) { decoded += $0 }
            if let why = inflater.error, record.decodeError == nil { record.decodeError = why }
            record.decodedBytes += decoded.count
            parse(decoded, at: time)
        } else {
            parse(bytes, at: time)
        }
    }

    private mutating func parse(_ bytes: [UInt8], at time: ProbeTime) {
        guard !bytes.isEmpty else { return }
        for item in parser.feed(bytes, at: time) {
            switch item {
            case .event(let m):
                record.eventCount += 1
                keep(m)
            case .comment(let m):
                record.commentCount += 1
                keep(m)
            case .retry(let ms, let t):
                record.retry = ms
                record.retryAt = t
            }
        }
    }

    private mutating func keep(_ message: ProbeMessage) {
        if record.messages.count < ProbeRecord.messageLimit { record.messages.append(message) }
    }

    static func describe(_ error: HTTPParseError) -> String {
        switch error {
        case .headersTooLarge: "head larger than \(maxHeaderBytes / 1024) KiB"
        case .unsupportedVersion: "unsupported HTTP version"
        case .malformed(let why): why
        }
    }
}
