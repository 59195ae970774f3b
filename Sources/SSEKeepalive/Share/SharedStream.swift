/// The fan-out half of a shared stream. The upstream half is an ordinary
/// exchange whose client is the proxy itself (an HTTP/1.0 request, so the
/// response comes back unframed, heartbeats already placed); this type reads
/// what that exchange wrote and cuts it into pieces every client can take:
/// the head once, then whole events (and comment lines) only, so a client can
/// join between any two pieces and never sees half an event. It also keeps the
/// preamble, the replay buffer and the proxy's own ids. A pure value owned by
/// the stream's runtime; one per upstream stream, whatever the number of clients.
public final class SharedStream {
    public enum Phase: Equatable, Sendable {
        case awaitingHead
        /// An event stream: pieces go to every client.
        case live
        /// Not an event stream (an error page, a 401): kept whole and given to every waiting client at its end.
        case passthrough
        /// The upstream stream ended.
        case ended
    }

    /// Bytes to append to every live client's stream.
    public struct Piece: Equatable, Sendable {
        public var bytes: [UInt8]
        /// Starts at an event boundary. False only for the rest of an event too large to hold
        /// (over the stream buffer): clients that joined during it skip it.
        public var atBoundary: Bool
        /// The proxy's heartbeats in it (each client counts them as its own).
        public var heartbeats = 0

        public init(bytes: [UInt8], atBoundary: Bool, heartbeats: Int = 0) {
            self.bytes = bytes
            self.atBoundary = atBoundary
            self.heartbeats = heartbeats
        }
    }

    public let settings: ShareSettings
    /// Unique per upstream stream in this process: the first part of the proxy's ids.
    public let tag: String
    public private(set) var phase = Phase.awaitingHead
    /// The head as the proxy's own request got it (event-stream header policy applied).
    public private(set) var head: ResponseHead?
    /// What the upstream sent before its first event (e.g. `retry:` or a padding comment).
    public private(set) var preamble: [UInt8] = []
    /// While the upstream has sent no `id:` field, `share.ids` adds one.
    public private(set) var upstreamSentIDs = false

    /// Head bytes until the head is complete; in passthrough, the whole response.
    private var held: [UInt8] = []
    private let holdLimit: Int
    private var preambleOpen = true
    /// The block in progress, not given to clients yet.
    private var pending: [UInt8] = []
    /// Part of the block in progress has gone out already (it outgrew `holdLimit`).
    private var pendingSentPart = false
    private var scan = BlockScan()
    private var bomChecked = false
    private var replayLog: [ReplayEntry] = []
    private var replayStart = 0
    private var nextID = 1

    static let maxPreamble = 64 * 1024
    static let maxHeadBytes = 64 * 1024

    /// `holdLimit`: the most the stream holds of one event (and of a passthrough response).
    public init(settings: ShareSettings, tag: String, holdLimit: Int) {
        self.settings = settings
        self.tag = tag
        self.holdLimit = max(holdLimit, 1024)
    }

    // MARK: Input

    /// Takes what the upstream exchange wrote: calls `opened` when the head is
    /// complete (the phase is then live or passthrough; clients waiting for it
    /// join before any piece), and `emit` with what goes to every live client.
    public func consume(_ bytes: UnsafeRawBufferPointer, now: Int, opened: () -> Void, emit: (Piece) -> Void) {
        var rest = bytes[...]
        if phase == .awaitingHead {
            held.append(contentsOf: rest)
            rest = bytes[bytes.endIndex...]
            switch held.withUnsafeBytes({ HeadParser.parseResponse($0, maxHeaderBytes: Self.maxHeadBytes) }) {
            case .incomplete:
                if held.count > Self.maxHeadBytes { phase = .passthrough }
                return
            case .failed:
                // The exchange wrote it, so this does not happen; keep it whole for the clients.
                phase = .passthrough
                opened()
                return
            case .complete(let parsed, let length):
                head = parsed
                guard Self.isShareable(parsed) else {
                    phase = .passthrough
                    opened()
                    return
                }
                phase = .live
                let body = Array(held[length...])
                held = []
                opened()
                body.withUnsafeBytes { scanBody($0, now: now, emit: emit) }
                return
            }
        }
        switch phase {
        case .passthrough:
            if held.count <= holdLimit { held.append(contentsOf: rest) }
        case .live:
            scanBody(UnsafeRawBufferPointer(rebasing: rest), now: now, emit: emit)
        case .awaitingHead, .ended:
            break
        }
    }

    /// The upstream exchange is over. Returns what a passthrough response's waiting
    /// clients get: the whole response, or nil when it outgrew the hold limit (they get a 502).
    public func finish() -> [UInt8]? {
        defer {
            phase = .ended
            held = []
            pending = []
        }
        guard phase == .passthrough || phase == .awaitingHead else { return [] }
        return held.isEmpty || held.count > holdLimit ? nil : held
    }

    /// A 2xx uncompressed event stream is shared; anything else is handed to its waiting clients as it is.
    static func isShareable(_ head: ResponseHead) -> Bool {
        (200..<300).contains(head.status) && head.status != 204
            && HeaderPolicy.isEventStream(contentType: head.headers["Content-Type"])
            && !HeaderPolicy.isContentEncoded(head.headers)
    }

    private func scanBody(_ input: UnsafeRawBufferPointer, now: Int, emit: (Piece) -> Void) {
        let bytes = input[...]
        if !bomChecked {
            // A leading BOM is for the first reader only; decoders drop it, so every client gets the stream without it.
            if pending.count + bytes.count < 3 && Array(pending + bytes) == Array(LeadingBOM.bytes.prefix(pending.count + bytes.count)) {
                pending.append(contentsOf: bytes)
                return
            }
            bomChecked = true
            let joined = pending + bytes
            pending = []
            let start = joined.starts(with: LeadingBOM.bytes) ? 3 : 0
            joined.withUnsafeBytes { scanBlocks($0[start...], now: now, emit: emit) }
            return
        }
        scanBlocks(bytes, now: now, emit: emit)
    }

    /// Cuts `bytes` at block ends (a blank line) and after runs of whole comment lines.
    private func scanBlocks(_ bytes: Slice<UnsafeRawBufferPointer>, now: Int, emit: (Piece) -> Void) {
        var out: [UInt8] = []
        var outAtBoundary = true
        var start = bytes.startIndex
        var i = bytes.startIndex
        while i < bytes.endIndex {
            let cut = scan.take(bytes[i])
            i += 1
            guard cut == .blockEnded || (cut == .commentLineEnded && scan.onlyComments) else { continue }
            if scan.afterCR, i < bytes.endIndex, bytes[i] == 0x0A {
                // The LF of a CRLF goes with its line when it came in the same read.
                _ = scan.take(bytes[i])
                i += 1
            }
            // pending + bytes[start..<i] is a whole block or a run of comment lines.
            pending.append(contentsOf: bytes[start..<i])
            start = i
            if out.isEmpty && pendingSentPart { outAtBoundary = false }
            out.append(contentsOf: finishBlock(now: now))
        }
        pending.append(contentsOf: bytes[start..<bytes.endIndex])
        if pending.count > holdLimit {
            // One event larger than a client may have queued: it goes out as it comes.
            if out.isEmpty && pendingSentPart { outAtBoundary = false }
            out.append(contentsOf: pending)
            pending.removeAll(keepingCapacity: false)
            pendingSentPart = true
            preambleOpen = false
        }
        if !out.isEmpty { emit(Piece(bytes: out, atBoundary: outAtBoundary)) }
    }

    /// The block (or comment run) in `pending` is complete: log it, add the proxy's id, return its bytes.
    private func finishBlock(now: Int) -> [UInt8] {
        var block = pending
        pending = []
        let sentPart = pendingSentPart
        pendingSentPart = false
        let fields = scan.blockFields
        if scan.blockEnded { scan.startBlock() } else { scan.clearCommentRun() }
        if fields.hasID { upstreamSentIDs = true }
        guard fields.hasData || fields.hasID, !sentPart else {
            if preambleOpen && !sentPart {
                if preamble.count + block.count <= Self.maxPreamble { preamble.append(contentsOf: block) } else { preambleOpen = false }
            }
            return block
        }
        preambleOpen = false
        var id = fields.id
        if settings.ids && !upstreamSentIDs && fields.hasData {
            let ours = "\(tag)-\(nextID)"
            nextID += 1
            block = Array("id: \(ours)\n".utf8) + block
            id = ours
        }
        if let bound = settings.replay {
            replayLog.append(ReplayEntry(id: id, bytes: block, at: now))
            trimReplay(bound, now: now)
        }
        return block
    }

    // MARK: Joining

    /// What a client joining now gets after the head: the preamble, then (with
    /// `Last-Event-ID` naming a kept event) the kept events after it.
    public func opening(lastEventID: String?, now: Int) -> (bytes: [UInt8], replayed: Int, unknownID: Bool) {
        var bytes = preamble
        guard let lastEventID, let bound = settings.replay else { return (bytes, 0, false) }
        trimReplay(bound, now: now)
        guard let found = replayLog[replayStart...].lastIndex(where: { $0.id == lastEventID }) else {
            return (bytes, 0, true)
        }
        let after = replayLog[(found + 1)...]
        for entry in after { bytes.append(contentsOf: entry.bytes) }
        return (bytes, after.count, false)
    }

    /// Whether the preamble sets the reconnection time (then the proxy's `retry:` hint is not sent).
    public var preambleSetsRetry: Bool {
        let retry = Array("retry:".utf8)
        return preamble.indices.contains { i in
            (i == 0 || preamble[i - 1] == 0x0A || preamble[i - 1] == 0x0D) && preamble[i...].starts(with: retry)
        }
    }

    /// Part of an event too large to hold has gone out: a client joining now skips to the next boundary.
    public var isMidEvent: Bool { pendingSentPart }

    /// Events kept for replay now.
    public var replayCount: Int { replayLog.count - replayStart }

    private func trimReplay(_ bound: ReplayBound, now: Int) {
        while replayStart < replayLog.count,
              replayLog.count - replayStart > bound.events || now - replayLog[replayStart].at > bound.age.milliseconds {
            replayStart += 1
        }
        // Compact now and then, so the log's storage stays about `events` long.
        if replayStart > 64 && replayStart * 2 > replayLog.count {
            replayLog.removeFirst(replayStart)
            replayStart = 0
        }
    }
}

private struct ReplayEntry {
    let id: String?
    let bytes: [UInt8]
    let at: Int
}

/// Where a byte stands in the event-stream grammar, as far as cutting into
/// blocks needs: line ends (CRLF, LF, CR), blank lines, comment lines, and the
/// `data` and `id` fields of the block in progress.
struct BlockScan {
    enum Cut { case none, commentLineEnded, blockEnded }

    struct Fields {
        var hasData = false
        var hasID = false
        /// The last `id` field's value (nil when it held a NUL, which the field ignores).
        var id: String?
    }

    private(set) var blockFields = Fields()
    /// The block so far is comment lines only.
    private(set) var onlyComments = true
    private(set) var blockEnded = false
    private var atLineStart = true
    private(set) var afterCR = false
    private var lineIsComment = false
    /// The field name so far (only `data` and `id` matter: 4 bytes suffice), or the `id` value.
    private var name: [UInt8] = []
    private var inValue = false
    private var lineIsID = false
    private var value: [UInt8] = []

    mutating func take(_ b: UInt8) -> Cut {
        if afterCR {
            afterCR = false
            if b == 0x0A { return .none }  // the LF of a CRLF
        }
        if b == 0x0A || b == 0x0D {
            afterCR = b == 0x0D
            if atLineStart {
                blockEnded = true
                return .blockEnded
            }
            let comment = lineIsComment
            endLine()
            return comment ? .commentLineEnded : .none
        }
        if atLineStart {
            atLineStart = false
            lineIsComment = b == 0x3A
            if !lineIsComment { onlyComments = false }
        }
        guard !lineIsComment else { return .none }
        if inValue {
            if lineIsID { value.append(b) }
        } else if b == 0x3A {
            inValue = true
            lineIsID = name == Self.idName
            if name == Self.dataName { blockFields.hasData = true }
        } else if name.count < 5 {
            name.append(b)
        }
        return .none
    }

    private mutating func endLine() {
        if !lineIsComment && !inValue {
            // A field name without a colon: the whole line is the name, the value empty.
            if name == Self.dataName { blockFields.hasData = true }
            if name == Self.idName { setID([]) }
        } else if lineIsID {
            setID(value.first == 0x20 ? Array(value.dropFirst()) : value)
        }
        atLineStart = true
        lineIsComment = false
        inValue = false
        lineIsID = false
        name.removeAll(keepingCapacity: true)
        value.removeAll(keepingCapacity: true)
    }

    private mutating func setID(_ bytes: [UInt8]) {
        blockFields.hasID = true
        blockFields.id = bytes.contains(0) ? blockFields.id : String(decoding: bytes, as: UTF8.self)
    }

    mutating func startBlock() {
        blockFields = Fields()
        onlyComments = true
        blockEnded = false
    }

    /// After a run of comment lines went out: the block starts afresh.
    mutating func clearCommentRun() {
        onlyComments = true
    }

    private static let dataName = Array("data".utf8)
    private static let idName = Array("id".utf8)
}
