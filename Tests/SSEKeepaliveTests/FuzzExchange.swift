// The `exchange` fuzz target's model and properties (see FuzzRegressionTests.swift
// for how the file serves both `swift test` and scripts/fuzz). One client
// connection through the real ExchangeMachine (Support/ExchangeHarness.swift)
// with 1-3 pipelined requests, scripted upstream answers, and a random
// interleaving of client bytes, upstream bytes, connects, timer fires,
// client reads and stalls, closes and resets.

#if !SSE_FUZZ
import Foundation
@testable import SSEKeepalive
#endif

enum FuzzExchange {
    /// One request and the upstream's scripted answer to it.
    struct Script {
        var method: String
        var request: [UInt8]
        var requestBody: [UInt8]
        var status: Int
        var eventStream: Bool
        var upstreamFraming: BodyFraming
        var interim: Bool
        var payload: [UInt8]
        var response: [UInt8] = []

        var closesUpstream: Bool { upstreamFraming == .closeDelimited }
    }

    /// Input: flags f, seed s, then payload material split among the responses.
    /// f & 1: heartbeat.blank_line false; f & 2: heartbeats off; f & 4: HTTP/1.0
    /// client; f & 8: a pooled upstream connection is idle (and may be stale);
    /// (f >> 4) & 3: pipelined requests - 1; f & 64: stream_buffer 64 bytes;
    /// f & 128: faults (random closes, resets and timer fires of every kind).
    static func check(_ input: [UInt8]) throws(FuzzPropertyFailure) {
        let f = input.count > 0 ? input[0] : 0
        let s = input.count > 1 ? input[1] : 0
        let material = Array(input.dropFirst(2))
        var rng = FuzzRNG(seed: UInt64(f) << 8 | UInt64(s) | UInt64(material.count) << 16)

        var config = Config()
        config.heartbeat = HeartbeatSettings(interval: f & 2 != 0 ? nil : .seconds(1), comment: "hb", blankLine: f & 1 == 0)
        config.streamBuffer = f & 64 != 0 ? 64 : 256 * 1024
        config.maxHeaderBytes = 4096
        // The seed turns on the stream features: first comment (padded), retry hints, stream lifetimes.
        config.heartbeat.onOpen = s & 1 != 0
        config.heartbeat.padding = s & 2 != 0 ? 40 : 0
        if s & 4 != 0 { config.retry = JitteredSpan(base: .seconds(1), jitter: .seconds(1)) }
        let lifetimes = s & 8 != 0
        if lifetimes { config.maxStreamDuration = JitteredSpan(base: .seconds(2), jitter: .seconds(1)) }
        let http10 = f & 4 != 0
        // Faults, and stream ends the proxy decides itself (shutdown, max duration), may leave requests unanswered.
        let faults = f & 128 != 0 || lifetimes
        let count = http10 ? 1 : Int((f >> 4) & 3) % 3 + 1

        // The scripts: payload material split evenly.
        var scripts: [Script] = []
        let share = material.count / count
        for i in 0..<count {
            let payload = Array(material[(i * share)..<(i == count - 1 ? material.count : (i + 1) * share)])
            scripts.append(makeScript(i, payload: payload, http10: http10, last: i == count - 1, &rng))
        }

        let h = ExchangeHarness(config: config)
        h.poolIdle = f & 8 != 0 ? 1 : 0
        h.start()
        var clientScript = scripts.flatMap { $0.request + $0.requestBody }
        var upstreamScript: [UInt8] = []
        var servedConnection = -1
        var closedConnection = -1
        var staleDone = false

        // The schedule: bounded in steps; the last phase delivers everything with no faults.
        let steps = 40 + rng.below(200)
        for step in 0..<(steps + 400) {
            let calm = step >= steps
            if h.closed { break }
            // The upstream side: answer the request that reached the current connection.
            let conn = h.upstreamConnections.count - 1
            // (An upstream answers once it has the whole request, body included.)
            if h.upstream == .connected, conn != servedConnection, let index = requestIndex(h.upstreamConnections[conn].received),
               h.upstreamConnections[conn].received.count >= scripts[index].request.count + scripts[index].requestBody.count {
                if h.upstreamConnections[conn].pooled && !staleDone && scripts[index].method == "GET" && rng.below(2) == 0 {
                    // The pooled connection was stale: closed before any response byte.
                    staleDone = true
                    h.upstreamFails(rng.below(2) == 0 ? .eof : .vanished(errno: 104))
                    continue
                }
                servedConnection = conn
                upstreamScript = scripts[index].response
            }
            if calm {
                // Deliver everything, let the client read; heartbeats may still fire.
                if !clientScript.isEmpty {
                    h.clientSends(clientScript)
                    clientScript.removeAll()
                } else if h.upstream == .connecting {
                    h.upstreamConnects()
                } else if h.upstream == .connected && !upstreamScript.isEmpty {
                    h.upstreamSends(upstreamScript)
                    upstreamScript.removeAll()
                } else if h.clientWindow != Int.max || !h.clientOut.isEmpty {
                    h.clientReads()
                } else if h.upstream == .connected && servedConnection == conn && closedConnection != conn
                            && upstreamScriptEndsByClose(h, scripts, conn) {
                    closedConnection = conn
                    h.upstreamCloses()
                } else if h.machine.timer == .heartbeat && rng.below(4) == 0 {
                    h.fireTimer()
                } else if !h.clientSocket.isEmpty || !h.upstreamSocket.isEmpty || h.upstreamSentEOF {
                    h.deliverClient()
                    h.deliverUpstream()
                } else {
                    break
                }
            } else {
                switch rng.below(faults ? 12 : 8) {
                case 0, 1:
                    if !clientScript.isEmpty {
                        let k = rng.segment(max: clientScript.count)
                        h.clientSends(Array(clientScript.prefix(k)))
                        clientScript.removeFirst(k)
                    }
                case 2:
                    h.upstreamConnects()
                case 3, 4:
                    if h.upstream == .connected && !upstreamScript.isEmpty {
                        let k = rng.segment(max: upstreamScript.count)
                        h.upstreamSends(Array(upstreamScript.prefix(k)))
                        upstreamScript.removeFirst(k)
                    } else {
                        h.deliverUpstream()
                    }
                case 5:
                    if h.machine.timer == .heartbeat { h.fireTimer() }
                case 6:
                    if rng.below(3) == 0 { h.clientWindow = 0 } else { h.clientReads(rng.below(2) == 0 ? Int.max : rng.below(256)) }
                case 7:
                    h.deliverClient()
                    h.deliverUpstream()
                case 8:
                    if faults { h.fireTimer() } else if h.machine.timer == .heartbeat { h.fireTimer() }
                    if lifetimes && h.machine.timer == .streamEnd { h.fireTimer() }
                case 9:
                    if rng.below(2) == 0 { h.clientCloses() } else { h.clientFails(.vanished(errno: 104)) }
                case 10:
                    switch rng.below(4) {
                    case 0: h.upstreamCloses()
                    case 1: h.upstreamFails(.failed(errno: 110))
                    case 2: h.drain()
                    default: h.shutdownGraceOver()
                    }
                default:
                    h.kernelQueue = rng.below(2) == 0 ? 0 : rng.below(1000)
                }
            }
            try fuzzCheck(h.violation == nil, "runtime misuse at step \(step): \(h.violation ?? "")")
        }
        #if !SSE_FUZZ
        if ProcessInfo.processInfo.environment["FUZZ_TRACE"] != nil {
            print("scripts:", scripts.map { ($0.method, $0.status, $0.upstreamFraming, $0.eventStream) })
            for a in h.actions { print(a) }
            print("state:", h.machine.state, "timer:", h.machine.timer, "reading:", h.reading, "upstream:", h.upstream,
                  "socket:", h.clientSocket.count, h.upstreamSocket.count, "in:", h.clientIn.count, h.upstreamIn.count)
        }
        #endif
        try checkClient(h, scripts, faults: faults, http10: http10, heartbeats: config.heartbeat)
        try checkUpstreams(h, scripts)
    }

    static func makeScript(_ i: Int, payload: [UInt8], http10: Bool, last: Bool, _ rng: inout FuzzRNG) -> Script {
        let kind = rng.below(6)
        let post = kind == 5
        let body: [UInt8] = post ? Array(payload.prefix(rng.below(40))) : []
        let version = http10 ? "HTTP/1.0" : "HTTP/1.1"
        var head = "\(post ? "POST" : "GET") /r\(i) \(version)\r\nHost: fuzz\r\n"
        if kind <= 2 { head += "Accept: text/event-stream\r\n" }
        if post { head += "Content-Length: \(body.count)\r\n" }
        head += "\r\n"
        var script = Script(method: post ? "POST" : "GET", request: Array(head.utf8), requestBody: body, status: 200,
                            eventStream: kind <= 2, upstreamFraming: .chunked, interim: kind == 4, payload: payload)
        // A close-delimited answer ends the connection: only the last request may get one.
        switch kind {
        case 0: script.upstreamFraming = last ? .closeDelimited : .chunked
        case 1, 4: script.upstreamFraming = .chunked
        case 2, 5: script.upstreamFraming = .contentLength(payload.count)
        default:
            script.status = 204
            script.upstreamFraming = .none
            script.payload = []
        }
        var response = script.interim ? Array("HTTP/1.1 100 Continue\r\n\r\n".utf8) : []
        response += Array("HTTP/1.1 \(script.status) \(script.status == 204 ? "No Content" : "OK")\r\n".utf8)
        if script.eventStream { response += Array("Content-Type: text/event-stream\r\n".utf8) }
        switch script.upstreamFraming {
        case .chunked:
            response += Array("Transfer-Encoding: chunked\r\n\r\n".utf8)
            var at = 0
            while at < script.payload.count {
                let k = rng.segment(max: script.payload.count - at)
                response += ChunkedEncoding.chunkHeader(k) + script.payload[at..<at + k] + ChunkedEncoding.chunkEnd
                at += k
            }
            response += ChunkedEncoding.lastChunk
        case .contentLength(let n):
            response += Array("Content-Length: \(n)\r\n\r\n".utf8) + script.payload
        case .closeDelimited, .none:
            response += Array("\r\n".utf8) + script.payload
        }
        script.response = response
        return script
    }

    /// The index of the request whose head `received` holds (targets are /r<i>).
    static func requestIndex(_ received: [UInt8]) -> Int? {
        guard case .complete(let head, _) = HeadParser.parseRequest(received, maxHeaderBytes: 1 << 16),
              head.target.hasPrefix("/r"), let i = Int(head.target.dropFirst(2)) else { return nil }
        return i
    }

    static func upstreamScriptEndsByClose(_ h: ExchangeHarness, _ scripts: [Script], _ conn: Int) -> Bool {
        guard let i = requestIndex(h.upstreamConnections[conn].received) else { return false }
        return scripts[i].closesUpstream
    }

    static let proxyStatuses: Set<Int> = [400, 408, 431, 502, 503, 504, 505]

    /// The client got, in order, for each request either the upstream's answer
    /// (payload a prefix of the scripted one, complete unless something failed;
    /// heartbeats only in event streams and only after an LF) or the proxy's own
    /// error page, and valid framing throughout.
    static func checkClient(_ h: ExchangeHarness, _ scripts: [Script], faults: Bool, http10: Bool,
                            heartbeats: HeartbeatSettings) throws(FuzzPropertyFailure) {
        let responses: [ClientResponse]
        do {
            responses = try ClientWireReader.read(h.clientWire, tags: h.clientWireTags, methods: scripts.map(\.method))
        } catch {
            throw FuzzPropertyFailure(description: "the client cannot read its bytes: \(error) (wire \(fuzzHex(h.clientWire)))")
        }
        var index = 0
        for response in responses {
            let status = response.head.status
            if status == 100 {
                try fuzzCheck(!http10 && index < scripts.count && scripts[index].interim, "an unexpected 100")
                continue
            }
            try fuzzCheck(index < scripts.count, "more responses than requests")
            let script = scripts[index]
            index += 1
            if proxyStatuses.contains(status) && status != script.status {
                try fuzzCheck(response.tags.allSatisfy { $0 != 0 }, "an error page carries upstream bytes")
                continue
            }
            try fuzzCheck(status == script.status, "response \(index - 1) has status \(status), the upstream sent \(script.status)")
            var payload: [UInt8] = []
            var previous: UInt8 = 0x0A
            var i = 0
            while i < response.body.count {
                let tag = response.tags[i]
                var j = i + 1
                while j < response.tags.count && response.tags[j] == tag { j += 1 }
                let run = Array(response.body[i..<j])
                // The proxy's own bytes in a body: heartbeats (the first maybe padded), `retry:` hints,
                // or (at most 3) leading payload bytes the BOM gate held.
                if tag != 0 && (isHeartbeat(run) || isRetryHint(run)) {
                    try fuzzCheck(script.eventStream, "proxy lines in a response that is no event stream")
                    try fuzzCheck(previous == 0x0A, "proxy lines not after an LF in response \(index - 1)")
                    try fuzzCheck(!isRetryHint(run) || lastByteBeforeIsBoundary(response.body, i),
                                  "a retry hint inside an event in response \(index - 1)")
                } else {
                    try fuzzCheck(tag == 0 || (script.eventStream && run.count <= 3 && payload.isEmpty),
                                  "proxy bytes \(fuzzHex(run)) in the body of response \(index - 1)")
                    payload += run
                }
                previous = run.last ?? previous
                i = j
            }
            if response.complete && script.eventStream && ending(h, index - 1).map({ $0 == .shutdown || $0 == .maxDuration }) == true {
                // Ended by the proxy itself: at an event boundary (or cut when the shutdown grace was over).
                var position = SSECursor.Position.eventBoundary
                for b in response.body { position = SSECursor.step(position, b) }
                try fuzzCheck(position == .eventBoundary || h.logs.contains { $0.event == .endedForShutdown },
                              "response \(index - 1) ended by the proxy mid-event: \(fuzzHex(response.body.suffix(40)))")
            }
            try fuzzCheck(script.payload.starts(with: payload) || script.payload.starts(with: LeadingBOM.bytes + payload),
                          "response \(index - 1): the client got \(fuzzHex(payload)), the upstream sent \(fuzzHex(script.payload))")
            let endedByProxy = ending(h, index - 1).map { $0 == .shutdown || $0 == .maxDuration } == true
            if response.complete && script.upstreamFraming != .closeDelimited && !endedByProxy {
                try fuzzCheck(payload.count == script.payload.count || payload.count == script.payload.count - 3,
                              "response \(index - 1) is complete but short: \(fuzzHex(payload)) of \(fuzzHex(script.payload))")
            }
        }
        if !faults {
            // Nothing went wrong: every request was answered in full (a close-delimited answer ends with the connection).
            let lastDone = responses.last.map { $0.complete || h.closed } ?? false
            try fuzzCheck(index == scripts.count && lastDone,
                          "only \(index) of \(scripts.count) requests answered (wire \(fuzzHex(h.clientWire)))")
        }
    }

    static func isHeartbeat(_ run: [UInt8]) -> Bool {
        guard run.starts(with: Array(":hb".utf8)), run.last == 0x0A else { return false }
        let line = run.prefix { $0 != 0x0A }
        return line.dropFirst(3).allSatisfy { $0 == 0x20 } && (run.count == line.count + 1 || run.count == line.count + 2)
            && run.dropFirst(line.count).allSatisfy { $0 == 0x0A }
    }

    static func isRetryHint(_ run: [UInt8]) -> Bool {
        let text = String(decoding: run, as: UTF8.self)
        guard text.hasPrefix("retry: "), text.hasSuffix("\n\n") else { return false }
        let digits = text.dropFirst(7).dropLast(2)
        return !digits.isEmpty && digits.allSatisfy(\.isNumber)
    }

    static func lastByteBeforeIsBoundary(_ body: [UInt8], _ at: Int) -> Bool {
        var position = SSECursor.Position.eventBoundary
        for b in body[..<at] { position = SSECursor.step(position, b) }
        return position == .eventBoundary
    }

    /// How exchange `i` ended, from the access log (in the order exchanges ended).
    static func ending(_ h: ExchangeHarness, _ i: Int) -> ExchangeEnding? {
        i < h.accessLog.count ? h.accessLog[i].ending : nil
    }

    /// Each upstream connection received whole requests with their bodies, never another exchange's bytes.
    static func checkUpstreams(_ h: ExchangeHarness, _ scripts: [Script]) throws(FuzzPropertyFailure) {
        for connection in h.upstreamConnections {
            var rest = connection.received[...]
            while !rest.isEmpty {
                guard case .complete(let head, let length) = HeadParser.parseRequest(Array(rest), maxHeaderBytes: 1 << 16) else {
                    // A request the proxy gave up on may be cut short.
                    try fuzzCheck(h.closed || rest.count < 64 * 1024, "upstream received garbage: \(fuzzHex(rest))")
                    break
                }
                guard let i = requestIndex(Array(rest)) else {
                    throw FuzzPropertyFailure(description: "upstream received a request the client never sent: \(head.target)")
                }
                rest = rest.dropFirst(length)
                let body = scripts[i].requestBody
                let got = Array(rest.prefix(body.count))
                try fuzzCheck(body.starts(with: got), "upstream got body \(fuzzHex(got)) for request \(i), the client sent \(fuzzHex(body))")
                rest = rest.dropFirst(got.count)
            }
        }
    }
}
