// The `shared_stream` fuzz target's properties (see FuzzRegressionTests.swift
// for how the file serves both `swift test` and scripts/fuzz): an upstream
// event stream, read in random pieces, through `SharedStream`, the cutter that
// fans one stream out to many clients.

#if !SSE_FUZZ
@testable import SSEKeepalive
#endif

enum FuzzSharedStream {
    static let head = Array("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n".utf8)

    /// Input: flags byte (bit 0 `share.ids`, bit 1 a 64-byte hold limit, bit 2 replay of 4 events,
    /// bit 3 a 256-byte stream buffer for the client), seed byte (read sizes, join point, client
    /// behaviour), then the upstream's payload.
    static func check(_ input: [UInt8]) throws(FuzzPropertyFailure) {
        guard input.count >= 2 else { return }
        let flags = input[0]
        var rng = FuzzRNG(seed: UInt64(input[1]) &+ 1)
        let payload = Array(input[2...].prefix(4096))
        var settings = ShareSettings()
        settings.ids = flags & 1 != 0
        if flags & 4 != 0 { settings.replay = ReplayBound(events: 4, age: .seconds(60)) }
        let holdLimit = flags & 2 != 0 ? 64 : 1 << 20
        let stream = SharedStream(settings: settings, tag: "s", holdLimit: holdLimit)
        var pieces: [SharedStream.Piece] = []
        var opened = 0
        var bytes = head + payload
        var at = 0
        while at < bytes.count {
            let n = rng.segment(max: bytes.count - at)
            bytes[at..<(at + n)].withUnsafeBytes { raw in
                stream.consume(raw, now: 0, opened: { opened += 1 }, emit: { pieces.append($0) })
            }
            at += n
        }
        bytes = []
        try fuzzCheck(opened == 1 && stream.phase == .live, "the head opened the stream \(opened) times")
        let emitted = pieces.flatMap(\.bytes)
        let body = payload.starts(with: LeadingBOM.bytes) ? Array(payload.dropFirst(3)) : payload
        // As a parser reading the upstream directly sees it (it drops one leading BOM), and as
        // a client of the shared stream does (the machine puts an empty line before a leading one).
        let upstreamEvents = WHATWGEventParser.parse(payload)
        let clientEvents = WHATWGEventParser.parse(clientBody(emitted))
        if !settings.ids {
            try fuzzCheck(body.starts(with: emitted), "the pieces are not the upstream's bytes: \(fuzzHex(emitted))")
            try fuzzCheck(clientEvents == upstreamEvents,
                          "events differ: \(clientEvents.prefix(3)) vs \(upstreamEvents.prefix(3))")
        } else {
            try fuzzCheck(clientEvents.map(\.data) == upstreamEvents.map(\.data), "ids changed the events' data")
            if !stream.upstreamSentIDs {
                try fuzzCheck(clientEvents.allSatisfy { !$0.lastEventId.isEmpty }, "an event without the proxy's id")
            }
        }
        try fuzzCheck(emitted.starts(with: stream.preamble), "the preamble is not where the stream starts")
        // A client joining before any piece that starts at a boundary gets whole events only:
        // the events the others get from there on.
        var before: [UInt8] = []
        for (k, piece) in pieces.enumerated().prefix(48) {
            defer { before += piece.bytes }
            guard piece.atBoundary else { continue }
            let joiner = WHATWGEventParser.parse(clientBody(Array(pieces[k...].flatMap(\.bytes))))
            let seen = WHATWGEventParser.parse(clientBody(before)).count
            let expected = Array(clientEvents.dropFirst(seen))
            try fuzzCheck(joiner.map(\.data) == expected.map(\.data) && joiner.map(\.type) == expected.map(\.type),
                          "a client joining before piece \(k) gets \(joiner.prefix(2)), the others \(expected.prefix(2))")
        }
        try checkClient(stream, pieces, flags: flags, &rng)
        // Replay after a kept id: the events after (its latest occurrence), in order: a suffix of the stream's events.
        if settings.replay != nil, holdLimit > 64, let id = clientEvents.dropLast().last(where: { !$0.lastEventId.isEmpty })?.lastEventId {
            let opening = stream.opening(lastEventID: id, now: 0)
            try fuzzCheck(opening.bytes.starts(with: stream.preamble), "a replay that does not start with the preamble")
            // Read as it stands in a client's stream: a BOM starting it is not a leading one.
            let replayed = WHATWGEventParser.parse(clientBody(Array(opening.bytes.dropFirst(stream.preamble.count)))).map(\.data)
            try fuzzCheck(replayed.count <= 4 && clientEvents.map(\.data).suffix(replayed.count) == replayed[...],
                          "replay after \(id) gave \(replayed.prefix(2)), not the latest events")
        }
    }

    /// What a client's body is for these stream bytes (the machine's rule, `writeSharedBody`):
    /// an empty line before a BOM that would otherwise lead.
    static func clientBody(_ bytes: [UInt8]) -> [UInt8] {
        bytes.starts(with: LeadingBOM.bytes) ? [0x0A] + bytes : bytes
    }

    /// One client on the shared route through the real `ExchangeMachine`: it joins before a random
    /// piece, reads or stalls, its clock fires, the process may drain, and the stream ends. Its
    /// wire is one valid response whose body is the opening and the pieces from its join on (a
    /// prefix when the proxy ended it early), and it leaves the stream exactly once.
    static func checkClient(_ stream: SharedStream, _ pieces: [SharedStream.Piece], flags: UInt8,
                            _ rng: inout FuzzRNG) throws(FuzzPropertyFailure) {
        guard let head = stream.head else { return }
        var config = Config()
        config.heartbeat.onOpen = false
        if flags & 8 != 0 { config.streamBuffer = 256 }
        var route = RouteConfig(path: "/feed", heartbeat: config.heartbeat)
        route.share = stream.settings
        config.routes = [route]
        let h = ExchangeHarness(config: config)
        h.start()
        h.clientSends("GET /feed HTTP/1.1\r\nHost: a\r\n\r\n")
        try fuzzCheck(h.sharedJoins.count == 1, "a GET on a shared route did not join")
        let join = pieces.isEmpty ? 0 : rng.below(pieces.count + 1)
        let opening = stream.opening(lastEventID: nil, now: 0).bytes
        let midEvent = join > 0 && !pieces[join...].isEmpty && !pieces[join].atBoundary
        h.sharedStreamOpened(head: head, opening: opening, midEvent: midEvent)
        var expected = opening
        var skipping = midEvent
        for piece in pieces[join...] {
            if skipping && !piece.atBoundary { continue }
            skipping = false
            expected += piece.bytes
        }
        expected = clientBody(expected)
        for piece in pieces[join...] where !h.closed {
            switch rng.below(8) {
            case 0: h.clientWindow = 0
            case 1: h.clientReads()
            case 2: _ = h.fireTimer()
            case 3 where rng.below(8) == 0: h.drain()
            default: break
            }
            h.sharedPiece(piece)
            try fuzzCheck(h.violation == nil, "runtime violation: \(h.violation ?? "")")
        }
        h.clientReads()
        h.sharedStreamEnded()
        try fuzzCheck(h.violation == nil, "runtime violation: \(h.violation ?? "")")
        try fuzzCheck(h.sharedLeaves == 1, "left the stream \(h.sharedLeaves) times")
        try fuzzCheck(h.closed, "the stream ended but the connection stays")
        let responses: [ClientResponse]
        do {
            responses = try ClientWireReader.read(h.clientWire, tags: h.clientWireTags, methods: ["GET"])
        } catch {
            throw FuzzPropertyFailure(description: "the client's wire does not parse: \(error)")
        }
        try fuzzCheck(responses.count == 1, "\(responses.count) responses on one shared stream")
        let body = responses[0].body
        let ending = h.accessLog.last?.ending
        if ending == .complete {
            try fuzzCheck(responses[0].complete && body == expected, "the body is not the opening and the pieces: \(fuzzHex(body))")
        } else {
            try fuzzCheck(expected.starts(with: body), "an early end (\(String(describing: ending))) that is not a prefix: \(fuzzHex(body))")
        }
    }
}
