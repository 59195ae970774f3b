/// Every decision about one client connection: which request is read, where it
/// goes, how its response is framed, when heartbeats go out, when the stream
/// is paused for a slow client, how it ends, what is logged and counted.
///
/// A pure value: inputs are `mutating` methods, outputs are `ExchangeAction`s
/// handed to the runtime (`ExchangeIO`) as they are decided. The runtime
/// (Runtime/Connection.swift) owns the sockets, buffers and timer and only
/// carries the actions out, so this type is what the unit tests and the
/// `exchange` fuzz target drive. Transitions that cannot happen trap.
public struct ExchangeMachine {
    public enum State {
        /// Waiting for (the rest of) a request head; the timer is the header or keep-alive clock.
        case awaitingRequest
        /// A request was read; its response is not complete yet.
        case exchanging(Exchange)
        /// After a 101: raw bytes both ways until both sides have closed.
        case tunneling(Exchange, Tunnel)
        /// A `diagnostic: true` route: the proxy answers with the diagnostic script itself.
        /// (Boxed: the machine lives in every connection, so its size is part of memory per stream.)
        indirect case answering(Exchange, DiagnosticRun)
        /// A client of a shared stream (`share` routes): the runtime delivers the
        /// stream's head and whole events; there is no upstream of its own.
        case sharing(Exchange, SharedProgress)
        /// Flushing the last bytes to the client, then closing.
        case closing
        case closed
    }

    /// What a shared-stream client needs beyond its exchange (kept in the state, so unshared streams do not pay for it).
    public struct SharedProgress: Equatable, Sendable {
        /// Joined during an event too large to hold: nothing goes out until a piece that starts at an event boundary.
        public var skipsToBoundary = false
        /// Bytes went out after the head (a piece starting with a BOM then cannot lead).
        public var bodyStarted = false
    }

    /// Which halves of a tunnel have seen EOF.
    public struct Tunnel: Equatable, Sendable {
        public var clientSentEOF = false
        public var upstreamSentEOF = false

        func sentEOF(_ side: Side) -> Bool { side == .client ? clientSentEOF : upstreamSentEOF }
    }

    /// What the connection's one timer means while it runs.
    public enum TimerRole: Equatable, Sendable {
        case none, clientHeader, keepAlive, connect, response, heartbeat
        /// An event stream's end time (shutdown, `max_stream_duration`) comes before its next heartbeat.
        case streamEnd
        /// The last bytes wait for a client that reads nothing.
        case flush
        /// The upstream is paused for a client that stopped reading.
        case drain
        /// The diagnostic script's next step is due.
        case diagnostic
    }

    public private(set) var state = State.awaitingRequest
    public private(set) var timer = TimerRole.none
    /// The settings new requests start under; replaced on reload.
    private var table: RouteTable
    /// Stop accepting requests: the process is shutting down.
    private var draining = false
    /// Bytes on their way to the client when the drain or flush clock last started.
    private var pendingAtDrainCheck = 0

    public init(table: RouteTable) {
        self.table = table
    }

    private var config: Config { table.config }

    // MARK: Connection lifecycle

    public mutating func start(_ io: some ExchangeIO) {
        io.perform(.setLowWatermark(.client, config.streamBuffer / 2))
        io.perform(.setReading(.client, true))
        arm(.clientHeader, config.clientHeaderTimeout, io)
        io.perform(.log(.trace, .accepted))
    }

    /// The proxy's own exchange with a shared upstream lost its last client: it ends quietly.
    public mutating func abandon(_ io: some ExchangeIO) {
        endExchange(.clientClosed, io)
        close(io)
    }

    /// Answers with an error page before any request is read (too many connections).
    public mutating func reject(status: Int, reason: String, _ io: some ExchangeIO) {
        io.perform(.log(.warning, .refused(reason: reason)))
        respondWithError(status: status, message: reason, ending: .error, io)
    }

    // MARK: Client input

    public mutating func clientReadable(_ io: some ExchangeIO) {
        switch state {
        case .awaitingRequest:
            readRequestHead(io)
        case .exchanging(let exchange):
            if case .sendingBody = exchange.request {
                forwardRequestBody(exchange, io)
            } else if io.inputCount(.client) > max(config.maxHeaderBytes * 2, 64 * 1024) {
                // Pipelined requests wait for this response; bound what a client can pile up.
                io.perform(.setReading(.client, false))
            }
        case .tunneling(let exchange, _):
            relay(from: .client, exchange, io)
        case .answering, .sharing:
            // Nothing more is read from a client on a diagnostic or shared stream (it closes after).
            io.perform(.discard(.client, count: io.inputCount(.client)))
        case .closing:
            io.perform(.discard(.client, count: io.inputCount(.client)))
        case .closed:
            preconditionFailure("client input after close")
        }
    }

    private mutating func readRequestHead(_ io: some ExchangeIO) {
        guard io.inputCount(.client) > 0 else { return }
        if timer == .keepAlive { arm(.clientHeader, config.clientHeaderTimeout, io) }
        let limit = config.maxHeaderBytes
        let result = io.withInputPrefix(.client, limit: limit + 1) { HeadParser.parseRequest($0, maxHeaderBytes: limit) }
        switch result {
        case .incomplete:
            return
        case .failed(let error):
            refuse(error, io)
        case .complete(let head, let headLength):
            io.perform(.discard(.client, count: headLength))
            startExchange(head, io)
        }
    }

    /// A request the proxy never forwards (CONNECT): its page, then close.
    private mutating func answerItself(_ answer: ProxyAnswer, method: String, _ io: some ExchangeIO) {
        io.perform(.log(.debug, .refused(reason: answer.message)))
        let page = answer.page
        if config.accessLog {
            io.perform(.accessLog(AccessLogEntry(client: "",
                method: method, target: "-", status: answer.status, bytesSent: page.count, durationMs: 0,
                route: "-", heartbeats: 0, ending: .error)))
        }
        io.perform(.write(.client, page))
        closeAfterFlush(io)
    }

    /// A request the proxy answers itself with an error page.
    private mutating func refuse(_ error: HTTPParseError, _ io: some ExchangeIO) {
        io.perform(.log(.debug, .badRequest(error)))
        let status = ErrorPage.status(for: error)
        let message = Self.describe(error)
        if config.accessLog {
            let page = ErrorPage.response(status: status, message: message)
            io.perform(.accessLog(AccessLogEntry(client: "",
                method: "-", target: "-", status: status, bytesSent: page.count, durationMs: 0,
                route: "-", heartbeats: 0, ending: .error)))
        }
        respondWithError(status: status, message: message, ending: .error, io)
    }

    private mutating func startExchange(_ request: RequestHead, _ io: some ExchangeIO) {
        if let answer = RequestPlan.answeredByProxy(request) {
            answerItself(answer, method: request.method, io)
            return
        }
        // The route is picked on the normalised path (the one sent upstream); a target
        // that cannot be normalised is refused by the plan below.
        let target = RequestTarget.parse(request)
        let route = table.route(for: (try? target.get()).map { Substring($0.path) } ?? request.path)
        let plan: RequestPlan
        do {
            plan = try RequestPlan.make(request, route: route.config, target: target)
        } catch {
            refuse(error, io)
            return
        }
        if !plan.droppedHeaderNames.isEmpty {
            io.perform(.log(.debug, .headerFieldsDropped(plan.droppedHeaderNames)))
            io.perform(.count(.requestHeadersDropped(route: route.name, count: plan.droppedHeaderNames.count)))
        }
        let exchange = Exchange(table: table, route: route, request: request, plan: plan, startedAt: io.now())
        state = .exchanging(exchange)
        io.perform(.log(.debug, .request(method: request.method, path: request.path, route: route.name)))
        if route.config.diagnostic {
            startDiagnostic(exchange, request, io)
            return
        }
        if let share = route.config.share, !draining, SharedJoin.qualifies(request, plan: plan) {
            exchange.request = .complete
            state = .sharing(exchange, SharedProgress())
            disarm(io)
            io.perform(.joinSharedStream(SharedJoin(key: ShareKey(route: route, upstreamHead: plan.upstreamHead, settings: share),
                                                    request: request)))
            return
        }
        guard openUpstream(exchange, head: plan.upstreamHead.serialized(), pooled: true, io) else { return }
        forwardRequestBody(exchange, io)
    }

    /// Sends the upstream head on a pooled connection, or on a new one.
    /// False when the upstream cannot be reached (the client got its 502).
    private mutating func openUpstream(_ exchange: Exchange, head: [UInt8], pooled: Bool, _ io: some ExchangeIO) -> Bool {
        switch io.openUpstream(exchange.startRoute.upstream, pooled: pooled) {
        case .failed(let code):
            upstreamUnreachable(exchange, errno: code, io)
            return false
        case .pooled:
            // A pooled connection may turn out stale: keep the head to retry once.
            exchange.link = .connected(reused: true, retryHead: exchange.retryable ? head : nil)
            // Nothing to connect; the response clock starts once the request is out.
            disarm(io)
        case .connecting:
            exchange.link = .connecting
            io.perform(.setReading(.upstream, true))
            arm(.connect, config.connectTimeout, io)
        }
        io.perform(.setLowWatermark(.upstream, config.streamBuffer / 2))
        io.perform(.write(.upstream, head))
        return true
    }

    /// Moves the request body from the client to the upstream, re-framed as planned.
    private mutating func forwardRequestBody(_ exchange: Exchange, _ io: some ExchangeIO) {
        guard case .sendingBody(var body, let chunked) = exchange.request else { return }
        while true {
            let available = io.inputCount(.client)
            let step = io.withFirstInputExtent(.client) { window in
                Result { () throws(HTTPParseError) in try body.next(available: available, window: window) }
            }
            switch step {
            case .failure(let error):
                io.perform(.log(.debug, .badRequestBody(error)))
                respondWithError(status: 400, message: "malformed request body", ending: .error, io)
                return
            case .success(.payload(let n)):
                if chunked { io.perform(.writeChunkHeader(.upstream, count: n)) }
                io.perform(.splice(from: .client, count: n))
                if chunked { io.perform(.write(.upstream, ChunkedEncoding.chunkEnd)) }
                body.didForwardPayload(n)
            case .success(.skip(let n)):
                io.perform(.discard(.client, count: n))
            case .success(.needMore):
                exchange.request = .sendingBody(body, chunked: chunked)
                io.perform(.flush(.upstream))
                if io.outputCount(.upstream) > config.streamBuffer {
                    // Backpressure: the upstream reads slower than the client sends.
                    io.perform(.setReading(.client, false))
                }
                return
            case .success(.end):
                if chunked { io.perform(.write(.upstream, ChunkedEncoding.lastChunk)) }
                exchange.request = .complete
                // The response clock starts once the whole request is out (uploads may be slow).
                if exchange.link.isConnected, case .awaitingHead = exchange.response {
                    arm(.response, config.responseTimeout, io)
                }
                return
            }
        }
    }

    /// The client's output fell to its low watermark.
    public mutating func clientDrained(_ io: some ExchangeIO) {
        switch state {
        case .closing:
            if io.outputCount(.client) == 0 { close(io) }
        case .exchanging(let exchange):
            // The client drained: resume reading the upstream that was paused for it.
            guard io.outputCount(.client) <= config.streamBuffer / 2 else { return }
            io.perform(.setReading(.upstream, true))
            if timer == .drain { rearmHeartbeat(exchange, io) }
        case .tunneling(_, let tunnel):
            tunnelDrained(.client, tunnel, io)
        case .answering, .sharing, .awaitingRequest, .closed:
            break
        }
    }

    public mutating func clientClosed(_ end: SocketEnd, _ io: some ExchangeIO) {
        if case .tunneling(let exchange, var tunnel) = state, end == .eof {
            tunnel.clientSentEOF = true
            state = .tunneling(exchange, tunnel)
            tunnelHalfClosed(io)
            return
        }
        let inExchange = hasExchange
        if end == .eof {
            io.perform(.log(.debug, .clientClosed))
            if inExchange { io.perform(.count(.clientDisconnected(.eof))) }
        } else {
            logDisconnect(.client, end, io)
            if inExchange { io.perform(.count(.clientDisconnected(.reset))) }
        }
        // A client that closes (or half-closes) mid-exchange has gone: nginx does the same.
        endExchange(.clientClosed, io)
        close(io)
    }

    // MARK: Upstream input

    public mutating func upstreamConnected(_ io: some ExchangeIO) {
        guard case .exchanging(let exchange) = state, case .connecting = exchange.link else {
            preconditionFailure("upstream connected without a connect in progress")
        }
        exchange.link = .connected(reused: false, retryHead: nil)
        if case .complete = exchange.request { arm(.response, config.responseTimeout, io) } else { disarm(io) }
    }

    public mutating func upstreamReadable(_ io: some ExchangeIO) {
        switch state {
        case .tunneling(let exchange, _):
            relay(from: .upstream, exchange, io)
        case .exchanging(let exchange):
            if case .awaitingHead = exchange.response { readResponseHead(exchange, io) }
            if case .exchanging(let current) = state, current === exchange, case .streaming = exchange.response {
                forwardResponseBody(exchange, io)
            }
        case .answering, .sharing, .awaitingRequest, .closing, .closed:
            preconditionFailure("upstream input without an upstream")
        }
    }

    public mutating func upstreamClosed(_ end: SocketEnd, _ io: some ExchangeIO) {
        if case .tunneling(let exchange, var tunnel) = state {
            if end == .eof {
                tunnel.upstreamSentEOF = true
                state = .tunneling(exchange, tunnel)
                tunnelHalfClosed(io)
            } else {
                logDisconnect(.upstream, end, io)
                endExchange(.upstreamClosed, io)
                close(io)
            }
            return
        }
        guard case .exchanging(let exchange) = state else {
            preconditionFailure("upstream closed without an upstream")
        }
        guard case .streaming = exchange.response else {
            upstreamClosedBeforeResponse(exchange, end, io)
            return
        }
        // Deliver anything still buffered, then decide whether the body ended cleanly.
        forwardResponseBody(exchange, io)
        guard case .exchanging(let current) = state, current === exchange,
              case .streaming(let stream) = exchange.response else { return }
        if stream.body.endsAtClose && end == .eof {
            finishResponse(exchange, io)
        } else {
            if end == .eof { io.perform(.log(.debug, .upstreamClosedMidBody)) } else { logDisconnect(.upstream, end, io) }
            io.perform(.count(.upstreamError(route: exchange.routeName, kind: .reset)))
            abort(.upstreamClosed, io)
        }
    }

    private mutating func upstreamClosedBeforeResponse(_ exchange: Exchange, _ end: SocketEnd, _ io: some ExchangeIO) {
        switch exchange.link {
        case .connected(reused: true, retryHead: let head?):
            // A pooled connection the upstream had closed: once more on a new one.
            io.perform(.log(.debug, .staleUpstreamRetried))
            io.perform(.releaseUpstream(pool: nil))
            exchange.link = .none
            _ = openUpstream(exchange, head: head, pooled: false, io)
        case .connecting:
            upstreamUnreachable(exchange, errno: end.errno, io)
        case .connected:
            io.perform(.log(.error, .upstreamClosedBeforeResponse(exchange.startRoute.upstream, end)))
            io.perform(.count(.upstreamError(route: exchange.routeName, kind: end == .eof ? .malformed : .reset)))
            respondWithError(status: 502, message: "upstream \(exchange.startRoute.upstream) closed the connection without a response",
                             ending: .upstreamClosed, io)
        case .none:
            preconditionFailure("upstream closed without an upstream")
        }
    }

    private mutating func upstreamUnreachable(_ exchange: Exchange, errno code: Int32?, _ io: some ExchangeIO) {
        let address = exchange.startRoute.upstream
        io.perform(.log(.error, .upstreamUnreachable(address, errno: code)))
        io.perform(.count(.upstreamError(route: exchange.routeName, kind: .connect)))
        let cause = code.map { io.describe(errno: $0) } ?? "connection failed"
        respondWithError(status: 502, message: "upstream \(address) unreachable: \(cause)", ending: .error, io)
    }

    public mutating func upstreamDrained(_ io: some ExchangeIO) {
        switch state {
        case .tunneling(_, let tunnel):
            tunnelDrained(.upstream, tunnel, io)
        case .exchanging(let exchange):
            // The upstream took the request body so far: read more of it from the client.
            if case .sendingBody = exchange.request { io.perform(.setReading(.client, true)) }
        case .answering, .sharing, .awaitingRequest, .closing, .closed:
            break
        }
    }

    private mutating func readResponseHead(_ exchange: Exchange, _ io: some ExchangeIO) {
        while case .awaitingHead = exchange.response, io.inputCount(.upstream) > 0 {
            let limit = config.maxHeaderBytes
            let result = io.withInputPrefix(.upstream, limit: limit + 1) { HeadParser.parseResponse($0, maxHeaderBytes: limit) }
            let head: ResponseHead
            switch result {
            case .incomplete:
                return
            case .failed(let error):
                upstreamMalformed(exchange, error, io)
                return
            case .complete(let parsed, let headLength):
                io.perform(.discard(.upstream, count: headLength))
                head = parsed
            }
            if head.status >= 100 && head.status < 200 && head.status != 101 {
                // Interim responses go to HTTP/1.1 clients only (RFC 9110 15.2).
                if !exchange.isHTTP10 { send(HeaderPolicy.interimResponse(head).serialized(), exchange, io) }
                continue
            }
            let plan: ResponsePlan
            do {
                plan = try ResponsePlan.make(
                    response: head, request: exchange.requestLine, clientKeepAlive: exchange.clientKeepAlive,
                    heartbeatInterval: exchange.route.heartbeatInterval, upgradeRequested: exchange.upgradeRequested)
            } catch {
                upstreamMalformed(exchange, error, io)
                return
            }
            if plan.isCompressedEventStream {
                io.perform(.log(.warning, .compressedEventStream(route: exchange.route.name)))
            }
            if case .connected(let reused, _) = exchange.link {
                exchange.link = .connected(reused: reused, retryHead: nil)
            }
            exchange.status = Int32(head.status)
            let stream = ResponseStream(plan: plan, lastWriteAt: io.now())
            exchange.response = .streaming(stream)
            send(HeaderPolicy.clientResponse(head, plan: plan).serialized(), exchange, io)
            if plan.isEventStream { io.perform(.count(.streamOpened(route: exchange.routeName))) }
            if plan.isTunnel {
                startTunnel(exchange, io)
            } else {
                armStreamClock(stream, exchange, justWrote: true, io)
            }
        }
    }

    private mutating func upstreamMalformed(_ exchange: Exchange, _ error: HTTPParseError, _ io: some ExchangeIO) {
        let address = exchange.startRoute.upstream
        io.perform(.log(.error, .upstreamMalformedHead(address, error)))
        io.perform(.count(.upstreamError(route: exchange.routeName, kind: .malformed)))
        respondWithError(status: 502, message: "upstream \(address) sent a malformed response", ending: .error, io)
    }

    // MARK: Response body

    private enum BodyProgress {
        case needMore(wrote: Bool)
        case ended
        case malformed(HTTPParseError)
    }

    /// Moves response payload to the client in this same loop turn, re-framed as planned.
    private mutating func forwardResponseBody(_ exchange: Exchange, _ io: some ExchangeIO) {
        guard case .streaming(var stream) = exchange.response else { return }
        // Taken out while it moves bytes, so its storage is not shared; put back before acting on the result.
        exchange.response = .awaitingHead
        let progress = pump(&stream, exchange, io)
        exchange.response = .streaming(stream)
        switch progress {
        case .malformed(let error):
            io.perform(.log(.error, .upstreamMalformedBody(exchange.startRoute.upstream, error)))
            io.perform(.count(.upstreamError(route: exchange.routeName, kind: .malformed)))
            abort(.error, io)
        case .ended:
            finishResponse(exchange, io)
        case .needMore(let wrote):
            if wrote && stream.endPassed && stream.atEventBoundary {
                // Past its end time, and now at an event boundary: end here.
                endStream(exchange, io)
                return
            }
            // Every write restarts the idle clock.
            if wrote { armStreamClock(stream, exchange, justWrote: true, io) }
            io.perform(.flush(.client))
            if io.outputCount(.client) > config.streamBuffer {
                // Backpressure: stop reading the upstream until the client drains.
                io.perform(.setReading(.upstream, false))
                armDrainClock(.drain, io)
            }
        }
    }

    private func pump(_ stream: inout ResponseStream, _ exchange: Exchange, _ io: some ExchangeIO) -> BodyProgress {
        var wrote = false
        while true {
            let available = io.inputCount(.upstream)
            let step = io.withFirstInputExtent(.upstream) { window in
                Result { () throws(HTTPParseError) in try stream.body.next(available: available, window: window) }
            }
            switch step {
            case .failure(let error):
                return .malformed(error)
            case .success(.payload(let n)):
                if !stream.opened && open(&stream, exchange, firstPayload: n, io) { wrote = true }
                stream.body.didForwardPayload(n)
                let gated = stream.bomGate.wants(n)
                if gated > 0 {
                    let outcome = io.withInputPrefix(.upstream, limit: gated) { stream.bomGate.take($0) }
                    io.perform(.discard(.upstream, count: gated))
                    if case .release(let bytes) = outcome { writeReleased(bytes, &stream, exchange, io) }
                }
                if n > gated {
                    movePayload(n - gated, &stream, exchange, io)
                    stream.bomGate.payloadForwarded()
                }
                wrote = true
            case .success(.skip(let n)):
                io.perform(.discard(.upstream, count: n))
            case .success(.end):
                stream.opened = true
                return .ended
            case .success(.needMore):
                if !stream.opened && open(&stream, exchange, firstPayload: 0, io) { wrote = true }
                if wrote && stream.isEventStream { stream.lastWriteAt = io.now() }
                return .needMore(wrote: wrote)
            }
        }
    }

    /// What an event stream gets right after its head, before any payload: a
    /// `retry:` hint (unless the upstream's first bytes set one), and when no
    /// payload came with the head, one comment so every hop forwards the head
    /// and EventSource fires `open`. Also picks the stream's end time. True when it wrote.
    private func open(_ stream: inout ResponseStream, _ exchange: Exchange, firstPayload n: Int, _ io: some ExchangeIO) -> Bool {
        stream.opened = true
        guard stream.tracksEvents else { return false }
        let route = exchange.route.config
        var wrote = false
        if let retry = route.retry {
            let upstreamSetsRetry = n >= 6 && io.withInputPrefix(.upstream, limit: 6) { $0.elementsEqual("retry:".utf8) }
            if !upstreamSetsRetry {
                writeOwn(Self.retryHint(retry, io), &stream, exchange, io)
                wrote = true
            }
        }
        if n == 0, route.heartbeat.onOpen, stream.heartbeats, let heartbeat = exchange.route.heartbeat,
           let form = stream.cursor.safeHeartbeat {
            writePayload(heartbeat.bytes(form, paddedTo: route.heartbeat.padding), stream, exchange, io)
            stream.cursor.didWriteHeartbeat(form, blankLine: heartbeat.blankLine)
            exchange.heartbeats += 1
            io.perform(.count(.heartbeat(route: exchange.routeName)))
            wrote = true
        }
        // The proxy's bytes came first: a leading BOM would no longer lead.
        if wrote { stream.bomGate.heartbeatWritten() }
        let now = io.now()
        if let limit = route.maxStreamDuration {
            stream.scheduleEnd(at: now + limit.drawn { io.random(below: $0) }.milliseconds, reason: .maxDuration)
        }
        if draining { stream.scheduleEnd(at: now + io.random(below: config.shutdownGrace.milliseconds + 1), reason: .shutdown) }
        return wrote
    }

    /// `retry: <ms>` and a blank line (which dispatches nothing), the value drawn per stream.
    private static func retryHint(_ retry: JitteredSpan, _ io: some ExchangeIO) -> [UInt8] {
        Array("retry: \(retry.drawn { io.random(below: $0) }.milliseconds)\n\n".utf8)
    }

    /// Proxy bytes that are part of the event stream (a `retry:` hint), framed and followed by the cursor.
    private func writeOwn(_ bytes: [UInt8], _ stream: inout ResponseStream, _ exchange: Exchange, _ io: some ExchangeIO) {
        stream.cursor.advance(bytes)
        writePayload(bytes, stream, exchange, io)
    }

    /// Splices `n` payload bytes from the upstream's input to the client (no copy).
    private func movePayload(_ n: Int, _ stream: inout ResponseStream, _ exchange: Exchange, _ io: some ExchangeIO) {
        if stream.tracksEvents {
            // Only the last bytes decide where the stream stands.
            io.inputTail(.upstream, endingAt: n).withBytes { stream.cursor.advance($0) }
        }
        let chunked = stream.chunked
        if chunked { io.perform(.writeChunkHeader(.client, count: n)) }
        io.perform(.splice(from: .upstream, count: n))
        if chunked { io.perform(.write(.client, ChunkedEncoding.chunkEnd)) }
        exchange.bytesSent += chunked ? ChunkedEncoding.framedSize(n) : n
    }

    /// Payload the proxy writes itself (held BOM candidates, heartbeats), framed for the client.
    private func writePayload(_ bytes: [UInt8], _ stream: ResponseStream, _ exchange: Exchange, _ io: some ExchangeIO) {
        guard !bytes.isEmpty else { return }
        let chunked = stream.chunked
        if chunked { io.perform(.writeChunkHeader(.client, count: bytes.count)) }
        io.perform(.write(.client, bytes))
        if chunked { io.perform(.write(.client, ChunkedEncoding.chunkEnd)) }
        exchange.bytesSent += chunked ? ChunkedEncoding.framedSize(bytes.count) : bytes.count
    }

    private func writeReleased(_ bytes: [UInt8], _ stream: inout ResponseStream, _ exchange: Exchange, _ io: some ExchangeIO) {
        guard !bytes.isEmpty else { return }
        stream.cursor.advance(bytes)
        writePayload(bytes, stream, exchange, io)
    }

    private mutating func finishResponse(_ exchange: Exchange, _ io: some ExchangeIO) {
        guard case .streaming(var stream) = exchange.response else { preconditionFailure("finishing a response without a head") }
        if case .release(let bytes) = stream.bomGate.finish() { writeReleased(bytes, &stream, exchange, io) }
        exchange.response = .streaming(stream)
        if stream.chunked { send(ChunkedEncoding.lastChunk, exchange, io) }
        keepOrReleaseUpstream(exchange, reusable: stream.upstreamReusable, io)
        endExchange(.complete, io)
        guard stream.keepAlive, case .complete = exchange.request, !draining else {
            closeAfterFlush(io)
            return
        }
        state = .awaitingRequest
        io.perform(.setReading(.client, true))
        arm(.keepAlive, config.keepaliveTimeout, io)
        // A pipelined request may already be waiting.
        readRequestHead(io)
    }

    /// A connection whose response was read to its end goes back to the pool.
    private func keepOrReleaseUpstream(_ exchange: Exchange, reusable upstreamReusable: Bool, _ io: some ExchangeIO) {
        io.perform(.flush(.upstream))
        let reusable = upstreamReusable && !draining && exchange.request.isComplete
            && io.inputCount(.upstream) == 0 && io.outputCount(.upstream) == 0
        io.perform(.releaseUpstream(pool: reusable ? exchange.startRoute.upstream : nil))
        exchange.link = .none
    }

    // MARK: Heartbeats

    private mutating func sendHeartbeat(_ exchange: Exchange, _ io: some ExchangeIO) {
        guard case .streaming(var stream) = exchange.response, stream.heartbeats,
              let heartbeat = exchange.route.heartbeat else { return }
        // Not at a safe point (mid-line, after CR): the next upstream write restarts the clock.
        // Bytes the BOM gate holds are not written yet, so the cursor still tells where the output stands.
        guard let form = stream.cursor.safeHeartbeat else {
            io.perform(.count(.heartbeatDeferred(route: exchange.routeName)))
            io.perform(.log(.debug, .heartbeatDeferred(route: exchange.route.name,
                                                       idle: TimeSpan(milliseconds: io.now() - stream.lastWriteAt))))
            return
        }
        writePayload(heartbeat.bytes(form), stream, exchange, io)
        stream.cursor.didWriteHeartbeat(form, blankLine: heartbeat.blankLine)
        stream.bomGate.heartbeatWritten()
        stream.lastWriteAt = io.now()
        exchange.response = .streaming(stream)
        exchange.heartbeats += 1
        io.perform(.count(.heartbeat(route: exchange.routeName)))
        io.perform(.log(.trace, .heartbeat(route: exchange.route.name)))
        if stream.endPassed && stream.atEventBoundary {
            endStream(exchange, io)
            return
        }
        armStreamClock(stream, exchange, justWrote: true, io)
    }

    /// Back to the stream's clock after a drain, if this response has one.
    private mutating func rearmHeartbeat(_ exchange: Exchange, _ io: some ExchangeIO) {
        if case .streaming(let stream) = exchange.response {
            armStreamClock(stream, exchange, justWrote: false, io)
        } else {
            disarm(io)
        }
    }

    /// An event stream's one clock: its next heartbeat (due at its last write
    /// plus the interval) or its end time, whichever comes first.
    private mutating func armStreamClock(_ stream: ResponseStream, _ exchange: Exchange, justWrote: Bool, _ io: some ExchangeIO) {
        let interval = stream.heartbeats ? exchange.route.heartbeatInterval : nil
        guard stream.endAt != nil || !justWrote else {
            // The common case: a full interval from this write, on the shared timeout.
            if let interval { arm(.heartbeat, interval, io) } else { disarm(io) }
            return
        }
        let now = io.now()
        let heartbeatDue = interval.map { stream.lastWriteAt + $0.milliseconds }
        if let endAt = stream.endAt, !stream.endPassed, heartbeatDue.map({ endAt < $0 }) ?? true {
            arm(.streamEnd, TimeSpan(milliseconds: max(0, endAt - now)), common: false, io)
        } else if let heartbeatDue {
            arm(.heartbeat, TimeSpan(milliseconds: max(0, heartbeatDue - now)), common: false, io)
        } else {
            disarm(io)
        }
    }

    /// The end time came: end at once if the stream stands at an event boundary, else at the next one.
    private mutating func streamEndTime(_ exchange: Exchange, _ io: some ExchangeIO) {
        guard case .streaming(var stream) = exchange.response else { preconditionFailure("an end time without a stream") }
        stream.endPassed = true
        exchange.response = .streaming(stream)
        if stream.atEventBoundary {
            endStream(exchange, io)
        } else {
            armStreamClock(stream, exchange, justWrote: false, io)
        }
    }

    /// Ends an event stream cleanly at an event boundary (a `retry:` hint first
    /// when the route has one), so the client reconnects without losing an event.
    private mutating func endStream(_ exchange: Exchange, _ io: some ExchangeIO) {
        guard case .streaming(var stream) = exchange.response, let reason = stream.endReason else {
            preconditionFailure("ending a stream that has no end reason")
        }
        if let retry = exchange.route.config.retry { writeOwn(Self.retryHint(retry, io), &stream, exchange, io) }
        exchange.response = .streaming(stream)
        if stream.chunked { send(ChunkedEncoding.lastChunk, exchange, io) }
        io.perform(.log(.debug, .streamEnded(reason)))
        endExchange(reason, io)
        closeAfterFlush(io)
    }

    // MARK: Shared stream (client side)

    /// The shared stream this client joined is live: its head as this client
    /// gets it, then `opening` (preamble and replayed events), then whole events.
    public mutating func sharedStreamOpened(head: ResponseHead, opening: [UInt8], replayed: Int, unknownID: Bool,
                                            preambleSetsRetry: Bool, _ io: some ExchangeIO) {
        guard case .sharing(let exchange, var progress) = state, case .awaitingHead = exchange.response else { return }
        let plan: ResponsePlan
        do {
            // Heartbeats come from the shared stream's clock, not from one per client.
            plan = try ResponsePlan.make(response: head, request: exchange.requestLine, clientKeepAlive: false,
                                         heartbeatInterval: nil)
        } catch {
            respondWithError(status: 502, message: "upstream \(exchange.startRoute.upstream) sent a malformed response",
                             ending: .error, io)
            return
        }
        exchange.status = Int32(head.status)
        var stream = ResponseStream(plan: plan, lastWriteAt: io.now())
        stream.opened = true
        send(HeaderPolicy.clientResponse(head, plan: plan).serialized(), exchange, io)
        io.perform(.count(.streamOpened(route: exchange.routeName)))
        io.perform(.count(.sharedClients(route: exchange.routeName, delta: 1)))
        io.perform(.log(.debug, .sharedJoined(route: exchange.routeName, replayed: replayed)))
        if unknownID { io.perform(.log(.debug, .lastEventIDUnknown(route: exchange.routeName))) }
        if replayed > 0 { io.perform(.count(.eventsReplayed(route: exchange.routeName, count: replayed))) }
        let route = exchange.route.config
        var wrote = false
        if let retry = route.retry, !preambleSetsRetry {
            writeOwn(Self.retryHint(retry, io), &stream, exchange, io)
            wrote = true
        }
        progress.bodyStarted = wrote
        if !opening.isEmpty {
            writeSharedBody(opening, &progress, stream, exchange, io)
            wrote = true
        }
        if !wrote, route.heartbeat.onOpen, let heartbeat = exchange.route.heartbeat {
            writePayload(heartbeat.bytes(.boundary, paddedTo: route.heartbeat.padding), stream, exchange, io)
            exchange.heartbeats += 1
            io.perform(.count(.heartbeat(route: exchange.routeName)))
            progress.bodyStarted = true
        }
        state = .sharing(exchange, progress)
        let now = io.now()
        if let limit = route.maxStreamDuration {
            stream.scheduleEnd(at: now + limit.drawn { io.random(below: $0) }.milliseconds, reason: .maxDuration)
        }
        if draining { stream.scheduleEnd(at: now + io.random(below: config.shutdownGrace.milliseconds + 1), reason: .shutdown) }
        exchange.response = .streaming(stream)
        armStreamClock(stream, exchange, justWrote: true, io)
        io.perform(.flush(.client))
    }

    /// A piece of the shared stream (whole events, comment lines, heartbeats).
    /// A client that is behind is dropped: its stream is ended and closed at
    /// once (what it had not read is discarded), and nobody waits for it.
    public mutating func sharedPiece(_ piece: SharedStream.Piece, _ io: some ExchangeIO) {
        guard case .sharing(let exchange, var progress) = state, case .streaming(let stream) = exchange.response else { return }
        if progress.skipsToBoundary {
            guard piece.atBoundary else { return }
            progress.skipsToBoundary = false
            state = .sharing(exchange, progress)
        }
        // Behind means more than `limits.stream_buffer` still queued from earlier pieces: the
        // piece itself may be large (one read of the upstream, or one event larger than the buffer).
        let queued = io.outputCount(.client)
        if queued > config.streamBuffer {
            io.perform(.log(.debug, .sharedClientDropped(route: exchange.routeName, queued: queued)))
            io.perform(.count(.sharedClientDropped(route: exchange.routeName)))
            if stream.chunked { send(ChunkedEncoding.lastChunk, exchange, io) }
            endExchange(.fellBehind, io)
            io.perform(.flush(.client))
            close(io)
            return
        }
        if !progress.bodyStarted {
            writeSharedBody(piece.bytes, &progress, stream, exchange, io)
            state = .sharing(exchange, progress)
        } else {
            writePayload(piece.bytes, stream, exchange, io)
        }
        if piece.heartbeats > 0 {
            exchange.heartbeats += Int32(piece.heartbeats)
            for _ in 0..<piece.heartbeats { io.perform(.count(.heartbeat(route: exchange.routeName))) }
        }
        io.perform(.flush(.client))
    }

    /// Shared-stream bytes for this client. The others read a BOM at the start of
    /// these bytes as part of a field name; as this client's first body bytes its
    /// parser would drop it, so an empty line (which dispatches nothing) goes first.
    private func writeSharedBody(_ bytes: [UInt8], _ progress: inout SharedProgress, _ stream: ResponseStream,
                                 _ exchange: Exchange, _ io: some ExchangeIO) {
        if !progress.bodyStarted && bytes.starts(with: LeadingBOM.bytes) { writePayload([0x0A], stream, exchange, io) }
        progress.bodyStarted = true
        writePayload(bytes, stream, exchange, io)
    }

    /// The shared stream joined mid-way through an event too large to hold: skip to the next boundary.
    public mutating func sharedJoinedMidEvent(_ io: some ExchangeIO) {
        guard case .sharing(let exchange, var progress) = state, case .streaming = exchange.response else { return }
        progress.skipsToBoundary = true
        state = .sharing(exchange, progress)
    }

    /// The upstream stream ended: this client's stream ends at the same event.
    public mutating func sharedStreamEnded(_ io: some ExchangeIO) {
        guard case .sharing(let exchange, _) = state else { return }
        guard case .streaming(let stream) = exchange.response else {
            respondWithError(status: 502, message: "upstream \(exchange.startRoute.upstream) closed the connection without a response",
                             ending: .upstreamClosed, io)
            return
        }
        if stream.chunked { send(ChunkedEncoding.lastChunk, exchange, io) }
        endExchange(.complete, io)
        closeAfterFlush(io)
    }

    /// The upstream did not answer with an event stream (an error page, a
    /// redirect): every waiting client gets that response as it is, or a 502
    /// (nil) when it was too large to hold.
    public mutating func sharedStreamAnswered(_ response: [UInt8]?, _ io: some ExchangeIO) {
        guard case .sharing(let exchange, _) = state, case .awaitingHead = exchange.response else { return }
        guard let response else {
            respondWithError(status: 502, message: "upstream \(exchange.startRoute.upstream) sent a response too large to share",
                             ending: .error, io)
            return
        }
        let status = response.withUnsafeBytes { bytes -> Int in
            if case .complete(let head, _) = HeadParser.parseResponse(bytes, maxHeaderBytes: bytes.count) { return head.status }
            return 502
        }
        exchange.status = Int32(status)
        send(response, exchange, io)
        endExchange(.complete, io)
        closeAfterFlush(io)
    }

    // MARK: Diagnostic stream

    /// A `diagnostic: true` route: answered here, never forwarded (DiagnosticScript).
    private mutating func startDiagnostic(_ exchange: Exchange, _ request: RequestHead, _ io: some ExchangeIO) {
        let query = request.target.firstIndex(of: "?").map { String(request.target[request.target.index(after: $0)...]) }
        let answer = DiagnosticAnswer.decide(method: request.method, version: request.version,
                                             query: query.map { String($0.prefix { $0 != "#" }) }) { io.diagnosticAdmit() }
        // The request line is all it takes; a body is not read.
        exchange.request = .complete
        switch answer {
        case .error(let status, let page):
            exchange.status = Int32(status)
            send(page, exchange, io)
            endExchange(.error, io)
            closeAfterFlush(io)
        case .stream(let head, let chunked, let script):
            exchange.status = 200
            send(head, exchange, io)
            io.perform(.log(.debug, .diagnosticStream(route: exchange.routeName, seconds: script.parameters.duration / 1000)))
            state = .answering(exchange, DiagnosticRun(script: script, chunked: chunked))
            advanceDiagnostic(io)
        }
    }

    /// Writes the script's steps up to its next wait (arming the timer for
    /// it); at its end, the end of the response and of the connection.
    private mutating func advanceDiagnostic(_ io: some ExchangeIO) {
        guard case .answering(let exchange, var run) = state else { preconditionFailure("diagnostic step without a diagnostic stream") }
        while run.next < run.script.steps.count {
            let step = run.script.steps[run.next]
            run.next += 1
            switch step {
            case .write(let bytes):
                if run.chunked { io.perform(.writeChunkHeader(.client, count: bytes.count)) }
                io.perform(.write(.client, bytes))
                if run.chunked { io.perform(.write(.client, ChunkedEncoding.chunkEnd)) }
                exchange.bytesSent += run.chunked ? ChunkedEncoding.framedSize(bytes.count) : bytes.count
            case .wait(let ms):
                state = .answering(exchange, run)
                io.perform(.flush(.client))
                arm(.diagnostic, TimeSpan(milliseconds: ms), common: false, io)
                return
            }
        }
        if run.chunked { send(ChunkedEncoding.lastChunk, exchange, io) }
        endExchange(.complete, io)
        closeAfterFlush(io)
    }

    // MARK: Reload and shutdown

    /// A reload happened: new requests use `table`; an open event stream takes
    /// its route's new heartbeat, with its idle clock still counting from its
    /// last write (a reload never pushes a due heartbeat back).
    public mutating func settingsChanged(_ table: RouteTable, _ io: some ExchangeIO) {
        self.table = table
        guard case .exchanging(let exchange) = state, case .streaming(var stream) = exchange.response,
              stream.tracksEvents else { return }
        exchange.route = table.route(for: Substring(RequestTarget.routingPath(exchange.target) ?? String(exchange.requestLine.path)))
        stream.heartbeats = exchange.route.heartbeatInterval != nil
        exchange.response = .streaming(stream)
        // A drain or flush clock keeps running; it re-arms the stream's clock when it ends.
        guard timer == .heartbeat || timer == .none || timer == .streamEnd else { return }
        armStreamClock(stream, exchange, justWrote: false, io)
    }

    /// Draining: a connection with no request in progress closes now, the
    /// others after their exchange. An open event stream picks its own end
    /// time within `shutdown.grace` and ends at the first event boundary after
    /// it, so clients do not all reconnect at once and none loses half an event.
    public mutating func drainStarted(_ io: some ExchangeIO) {
        draining = true
        switch state {
        case .awaitingRequest:
            if io.inputCount(.client) == 0 { close(io) }
        case .exchanging(let exchange), .sharing(let exchange, _):
            guard case .streaming(var stream) = exchange.response, stream.opened, stream.tracksEvents else { return }
            stream.scheduleEnd(at: io.now() + io.random(below: config.shutdownGrace.milliseconds + 1), reason: .shutdown)
            exchange.response = .streaming(stream)
            if timer == .heartbeat || timer == .none || timer == .streamEnd { armStreamClock(stream, exchange, justWrote: false, io) }
        case .tunneling, .answering, .closing, .closed:
            break
        }
    }

    /// The shutdown grace is over: event streams end cleanly, anything else is cut.
    public mutating func shutdownGraceOver(_ io: some ExchangeIO) {
        switch state {
        case .exchanging(let exchange), .sharing(let exchange, _):
            guard case .streaming(let stream) = exchange.response, stream.isEventStream else {
                abort(.error, io)
                return
            }
            // Grace is over: a stream still mid-event is cut here.
            if stream.chunked { send(ChunkedEncoding.lastChunk, exchange, io) }
            io.perform(.log(.debug, .endedForShutdown))
            endExchange(.shutdown, io)
            closeAfterFlush(io)
        case .answering(let exchange, let run):
            // Like an event stream: it ends cleanly.
            if run.chunked { send(ChunkedEncoding.lastChunk, exchange, io) }
            io.perform(.log(.debug, .endedForShutdown))
            endExchange(.complete, io)
            closeAfterFlush(io)
        case .tunneling:
            abort(.error, io)
        case .awaitingRequest:
            close(io)
        case .closing, .closed:
            break
        }
    }

    // MARK: Tunnel (Upgrade)

    private mutating func startTunnel(_ exchange: Exchange, _ io: some ExchangeIO) {
        state = .tunneling(exchange, Tunnel())
        disarm(io)
        io.perform(.log(.debug, .tunnelOpen))
        // Empty-output reports drive half-closes and backpressure from here on.
        io.perform(.setLowWatermark(.client, 0))
        io.perform(.setLowWatermark(.upstream, 0))
        io.perform(.setReading(.client, true))
        relay(from: .upstream, exchange, io)
        relay(from: .client, exchange, io)
    }

    /// Moves everything readable from `source` to the other side, pausing `source` while that side is full.
    private func relay(from source: Side, _ exchange: Exchange, _ io: some ExchangeIO) {
        let n = io.inputCount(source)
        if n > 0 {
            io.perform(.splice(from: source, count: n))
            if source == .upstream { exchange.bytesSent += n }
        }
        io.perform(.flush(source.other))
        if io.outputCount(source.other) > config.streamBuffer { io.perform(.setReading(source, false)) }
    }

    /// `destination`'s output emptied: resume its source, or pass on the source's EOF.
    private func tunnelDrained(_ destination: Side, _ tunnel: Tunnel, _ io: some ExchangeIO) {
        let source = destination.other
        if tunnel.sentEOF(source) {
            io.perform(.shutdownWrite(destination))
        } else {
            io.perform(.setReading(source, true))
        }
    }

    private mutating func tunnelHalfClosed(_ io: some ExchangeIO) {
        guard case .tunneling(_, let tunnel) = state else { return }
        if tunnel.clientSentEOF && tunnel.upstreamSentEOF {
            endExchange(.complete, io)
            closeAfterFlush(io)
            return
        }
        for side in [Side.client, .upstream] where tunnel.sentEOF(side) {
            io.perform(.setReading(side, false))
            io.perform(.flush(side.other))
            if io.outputCount(side.other) == 0 { io.perform(.shutdownWrite(side.other)) }
        }
    }

    // MARK: Timer

    public mutating func timerFired(_ io: some ExchangeIO) {
        let role = timer
        timer = .none
        switch role {
        case .none:
            return
        case .clientHeader:
            io.perform(.log(.debug, .requestHeadTimeout(config.clientHeaderTimeout)))
            if io.inputCount(.client) > 0 {
                respondWithError(status: 408, message: "request head not received in time", ending: .timeout, io)
            } else {
                close(io)
            }
        case .keepAlive:
            io.perform(.log(.trace, .keepAliveIdleClosed))
            close(io)
        case .connect, .response:
            guard case .exchanging(let exchange) = state else { preconditionFailure("upstream clock without an exchange") }
            let phase: ExchangeLogEvent.UpstreamWait = role == .connect ? .connect : .response
            let span = role == .connect ? config.connectTimeout : config.responseTimeout
            let address = exchange.startRoute.upstream
            if role == .connect { io.perform(.upstreamConnectTimedOut) }
            io.perform(.log(.error, .upstreamTimeout(address, phase: phase, span)))
            io.perform(.count(.upstreamError(route: exchange.routeName, kind: .timeout)))
            respondWithError(status: 504, message: "upstream \(address) \(ExchangeLogEvent.timeoutText(phase, span))",
                             ending: .timeout, io)
        case .heartbeat:
            guard case .exchanging(let exchange) = state else { preconditionFailure("heartbeat clock without an exchange") }
            sendHeartbeat(exchange, io)
        case .streamEnd:
            switch state {
            case .exchanging(let exchange), .sharing(let exchange, _): streamEndTime(exchange, io)
            default: preconditionFailure("stream end clock without an exchange")
            }

        case .diagnostic:
            advanceDiagnostic(io)
        case .flush, .drain:
            let pending = io.clientPendingBytes()
            if pending < pendingAtDrainCheck {
                // Slow but reading: only a client that reads nothing for the whole timeout is cut.
                armDrainClock(role, io)
                return
            }
            io.perform(.log(.debug, .slowClient(idle: config.keepaliveTimeout, pendingBytes: pending)))
            io.perform(.count(.clientDisconnected(.timeout)))
            endExchange(.timeout, io)
            close(io)
        }
    }

    private mutating func armDrainClock(_ role: TimerRole, _ io: some ExchangeIO) {
        pendingAtDrainCheck = io.clientPendingBytes()
        arm(role, config.keepaliveTimeout, io)
    }

    private mutating func arm(_ role: TimerRole, _ span: TimeSpan, common: Bool = true, _ io: some ExchangeIO) {
        timer = role
        io.perform(.armTimer(span, common: common))
    }

    private mutating func disarm(_ io: some ExchangeIO) {
        guard timer != .none else { return }
        timer = .none
        io.perform(.disarmTimer)
    }

    // MARK: Endings

    private var hasExchange: Bool {
        switch state {
        case .exchanging, .tunneling, .answering, .sharing: return true
        case .awaitingRequest, .closing, .closed: return false
        }
    }

    /// Ends the exchange in flight, once: its upstream, metrics and access-log
    /// line. The state moves to `.closing`; the caller moves it on from there.
    private mutating func endExchange(_ ending: ExchangeEnding, _ io: some ExchangeIO) {
        let exchange: Exchange
        switch state {
        case .exchanging(let current), .tunneling(let current, _): exchange = current
        case .answering(let current, _):
            exchange = current
            io.diagnosticEnded()
        case .sharing(let current, _):
            exchange = current
            io.perform(.leaveSharedStream)
            if case .streaming = current.response { io.perform(.count(.sharedClients(route: current.routeName, delta: -1))) }
        case .awaitingRequest, .closing, .closed: return
        }
        state = .closing
        if exchange.link.isAttached {
            io.perform(.releaseUpstream(pool: nil))
            exchange.link = .none
        }
        if exchange.isEventStream {
            io.perform(.count(.streamClosed(route: exchange.routeName)))
            if ending == .shutdown || ending == .maxDuration {
                io.perform(.count(.streamEnded(route: exchange.routeName, reason: ending)))
            }
        }
        // nginx's convention: 499 when the client left before any response head.
        let status = exchange.status != 0 ? Int(exchange.status) : (ending == .clientClosed ? 499 : 502)
        io.perform(.count(.requestFinished(route: exchange.routeName, code: status)))
        guard exchange.table.config.accessLog else { return }
        io.perform(.accessLog(AccessLogEntry(client: "",
            method: exchange.method, target: exchange.table.redactor.redact(target: exchange.target),
            status: status, bytesSent: exchange.bytesSent, durationMs: io.now() - exchange.startedAt,
            route: exchange.routeName, heartbeats: Int(exchange.heartbeats), ending: ending)))
    }

    private mutating func respondWithError(status: Int, message: String, ending: ExchangeEnding, _ io: some ExchangeIO) {
        switch state {
        case .exchanging(let exchange), .sharing(let exchange, _):
            if case .streaming = exchange.response {
                // The head is already out: all we can do is cut the stream.
                abort(ending, io)
                return
            }
            let page = ErrorPage.response(status: status, message: message)
            exchange.status = Int32(status)
            send(page, exchange, io)
            endExchange(ending, io)
        case .tunneling, .answering:
            abort(ending, io)
            return
        case .awaitingRequest:
            io.perform(.write(.client, ErrorPage.response(status: status, message: message)))
        case .closing, .closed:
            return
        }
        closeAfterFlush(io)
    }

    /// Ends the exchange without a proper end of body, so the client sees the truncation.
    private mutating func abort(_ ending: ExchangeEnding, _ io: some ExchangeIO) {
        endExchange(ending, io)
        closeAfterFlush(io)
    }

    /// The exchange (if any) has ended: flush what is queued for the client, then close.
    private mutating func closeAfterFlush(_ io: some ExchangeIO) {
        precondition(!hasExchange, "closing with an exchange in flight")
        if case .closed = state { return }
        state = .closing
        io.perform(.setReading(.client, false))
        io.perform(.discard(.client, count: io.inputCount(.client)))
        io.perform(.flush(.client))
        if io.outputCount(.client) == 0 {
            close(io)
            return
        }
        // `clientDrained` comes once the output is empty; a client that never reads is cut after keepalive.
        io.perform(.setLowWatermark(.client, 0))
        armDrainClock(.flush, io)
    }

    /// Frees everything this connection holds, exactly once.
    private mutating func close(_ io: some ExchangeIO) {
        if case .closed = state { return }
        endExchange(.clientClosed, io)
        state = .closed
        timer = .none
        io.perform(.close)
    }

    private func send(_ bytes: [UInt8], _ exchange: Exchange, _ io: some ExchangeIO) {
        io.perform(.write(.client, bytes))
        exchange.bytesSent += bytes.count
    }

    private func logDisconnect(_ side: Side, _ end: SocketEnd, _ io: some ExchangeIO) {
        if case .failed = end {
            io.perform(.log(.warning, .disconnected(side, end)))
        } else {
            io.perform(.log(.debug, .disconnected(side, end)))
        }
    }

    static func describe(_ error: HTTPParseError) -> String {
        switch error {
        case .headersTooLarge: return "request header fields too large"
        case .unsupportedVersion: return "HTTP version not supported"
        case .malformed(let reason): return "malformed request: \(reason)"
        }
    }
}
