import CLibevent
#if canImport(Glibc)
import Glibc
#endif
import Logging

/// One client connection: its client channel, at most one upstream channel,
/// one timer. It feeds bytes to the pure parsers and plans and carries out
/// what they decide; it decides nothing about HTTP or SSE itself.
final class Connection {
    private unowned let worker: Worker
    /// "<worker>.<n>", for logs.
    let id: String
    let peer: PeerAddress
    /// Set once in init (after `self` exists, since the channel reports to it).
    private var client: Channel!
    private var upstream: Channel?
    private let timer: OpaquePointer

    private enum Phase {
        /// Waiting for (the rest of) a request head.
        case awaitingRequest
        /// A request was parsed; its response is not complete yet.
        case exchanging
        /// After a 101: raw bytes both ways until both sides have closed.
        case tunneling
        /// Flushing the last bytes to the client, then closing.
        case closing
        case closed
    }

    private enum TimerRole {
        case none, clientHeader, keepAlive, connect, response, heartbeat
        /// Waiting for the client to read the last bytes before closing.
        case flush
        /// The client stopped reading and the upstream is paused for it (SPEC 4).
        case drain
    }

    private var phase = Phase.awaitingRequest
    private var timerRole = TimerRole.none
    /// Bytes on their way to the client when the drain or flush clock last started.
    private var pendingAtDrainCheck = 0
    /// Settings of the config in force when the current request started.
    private var settings: ProxySettings
    private var exchange: Exchange?

    private var clientInput: EvBuffer { client.input }
    private var clientOutput: EvBuffer { client.output }
    private var config: Config { settings.config }
    private var logger: Logger { worker.logger }

    init?(worker: Worker, fd: Int32, id: String, peer: PeerAddress) {
        guard let timer = event_new(worker.base, -1, 0, timerCallback, nil) else { return nil }
        self.worker = worker
        self.id = id
        self.peer = peer
        self.timer = timer
        self.settings = worker.settings
        guard let client = Channel.accepted(fd: fd, base: worker.base, delegate: self) else {
            event_free(timer)
            return nil
        }
        self.client = client
        let context = Unmanaged.passUnretained(self).toOpaque()
        event_assign(timer, worker.base, -1, 0, timerCallback, context)
        Self.setNoDelay(fd)
        client.lowWatermark = config.streamBuffer / 2
    }

    func start() {
        client.setReading(true)
        arm(.clientHeader, config.clientHeaderTimeout)
        logger.trace("conn \(id): accepted from \(peer)")
    }

    /// Answers with an error page and closes (used before any request is read).
    func reject(status: Int, message: String) {
        logger.warning("conn \(id): \(message); refusing \(peer)")
        respondWithError(status: status, message: message, ending: .error)
    }

    // MARK: Requests

    fileprivate func clientReadable() {
        switch phase {
        case .awaitingRequest: readRequestHead()
        case .exchanging:
            if exchange?.requestComplete == false {
                forwardRequestBody()
            } else if clientInput.count > max(config.maxHeaderBytes * 2, 64 * 1024) {
                // Pipelined requests wait for this response; bound what a client can pile up.
                client.setReading(false)
            }
        case .tunneling: if let upstream { relay(from: client, to: upstream) }
        case .closing, .closed: clientInput.drain(clientInput.count)
        }
    }

    private func readRequestHead() {
        guard clientInput.count > 0 else { return }
        if timerRole == .keepAlive { arm(.clientHeader, config.clientHeaderTimeout) }
        let result = clientInput.pullup(config.maxHeaderBytes + 1) {
            HeadParser.parseRequest($0, maxHeaderBytes: config.maxHeaderBytes)
        }
        switch result {
        case .incomplete:
            return
        case .failed(let error):
            refuse(error)
        case .complete(let head, let headLength):
            clientInput.drain(headLength)
            startExchange(head)
        }
    }

    private func refuse(_ error: HTTPParseError) {
        logger.debug("conn \(id): bad request from \(peer): \(error)")
        let status = ErrorPage.status(for: error)
        if config.accessLog, exchange == nil {
            AccessLogEntry(client: "\(peer)", method: "-", target: "-", status: status, bytesSent: 0, durationMs: 0,
                           route: "-", heartbeats: 0, ending: .error).log(to: logger, format: config.logFormat)
        }
        respondWithError(status: status, message: Self.describe(error), ending: .error)
    }

    private func startExchange(_ request: RequestHead) {
        settings = worker.settings
        let route = settings.route(for: request.path)
        let plan: RequestPlan
        do {
            plan = try RequestPlan.make(request, token: route.config.token)
        } catch {
            refuse(error)
            return
        }
        phase = .exchanging
        let exchange = Exchange(route: route, request: request, requestPlan: plan)
        let head = plan.upstreamHead.serialized()
        self.exchange = exchange
        logger.debug("conn \(id): \(request.method) \(request.path) route=\(route.name)")

        guard openUpstream(exchange, head: head, pooled: true) else { return }
        forwardRequestBody()
    }

    /// Sends the upstream head on a pooled connection to the route's upstream, or on a new one.
    /// False when the upstream cannot be reached (the client got its 502).
    private func openUpstream(_ exchange: Exchange, head: [UInt8], pooled: Bool) -> Bool {
        let address = exchange.startRoute.upstream
        if pooled, let channel = worker.upstreamPool.take(address.spec) {
            channel.delegate = self
            upstream = channel
            exchange.reusedUpstream = true
            exchange.upstreamConnected = true
            if exchange.retryable { exchange.retryHead = head }
            // No connect to wait for; the response clock starts once the request is out.
            disarm()
        } else {
            guard let channel = Channel.connect(to: address, base: worker.base, delegate: self) else {
                upstreamUnreachable(code: sse_errno())
                return false
            }
            upstream = channel
            channel.setReading(true)
            arm(.connect, config.connectTimeout)
        }
        upstream?.lowWatermark = config.streamBuffer / 2
        upstream?.output.add(head)
        worker.metrics.bytesClientToUpstream += head.count
        return true
    }

    /// Moves the request body from the client to the upstream, re-framed as planned.
    private func forwardRequestBody() {
        guard let exchange, let upstream, !exchange.requestComplete else { return }
        let output = upstream.output
        let chunked = exchange.requestChunked
        while true {
            let instruction: BodyDecoder.Instruction
            do {
                instruction = try clientInput.firstExtent {
                    try exchange.requestBody.next(available: clientInput.count, window: $0)
                }
            } catch {
                logger.debug("conn \(id): bad request body from \(peer): \(error)")
                respondWithError(status: 400, message: "malformed request body", ending: .error)
                return
            }
            switch instruction {
            case .payload(let n):
                if chunked { ChunkedEncoding.withChunkHeader(n) { output.add($0) } }
                clientInput.move(n, to: output)
                if chunked { output.add(ChunkedEncoding.chunkEnd) }
                exchange.requestBody.didForwardPayload(n)
                worker.metrics.bytesClientToUpstream += n
            case .skip(let n):
                clientInput.drain(n)
            case .needMore:
                upstream.flush()
                if output.count > config.streamBuffer {
                    // Backpressure: the upstream reads slower than the client sends.
                    client.setReading(false)
                }
                return
            case .end:
                if chunked { output.add(ChunkedEncoding.lastChunk) }
                exchange.requestComplete = true
                // The response clock starts once the whole request is out (uploads may be slow).
                if exchange.upstreamConnected && exchange.response == nil { arm(.response, config.responseTimeout) }
                return
            }
        }
    }

    fileprivate func clientWritable() {
        switch phase {
        case .closing:
            if clientOutput.count == 0 { close() }
        case .exchanging:
            // The client drained: resume reading the upstream that was paused for it.
            if let upstream, clientOutput.count <= config.streamBuffer / 2 {
                upstream.setReading(true)
                if timerRole == .drain { rearmHeartbeat() }
            }
        case .tunneling:
            if let upstream { tunnelDrained(client, source: upstream, sourceSentEOF: exchange?.upstreamSentEOF == true) }
        case .awaitingRequest, .closed:
            break
        }
    }

    fileprivate func clientClosed(error code: Int32) {
        let failed = code != 0
        if phase == .tunneling, !failed {
            exchange?.clientSentEOF = true
            tunnelHalfClosed()
            return
        }
        if failed {
            logDisconnect(side: "client", code: code)
            if exchange != nil { worker.metrics.clientDisconnected(.reset) }
        } else {
            logger.debug("conn \(id): client \(peer) closed the connection")
            if exchange != nil { worker.metrics.clientDisconnected(.eof) }
        }
        // A client that closes (or half-closes) mid-exchange has gone: nginx does the same.
        endExchange(.clientClosed)
        close()
    }

    // MARK: Responses

    fileprivate func upstreamConnected() {
        guard let exchange, let upstream else { return }
        exchange.upstreamConnected = true
        Self.setNoDelay(upstream.fd)
        if exchange.requestComplete { arm(.response, config.responseTimeout) } else { disarm() }
    }

    fileprivate func upstreamClosed(error code: Int32) {
        guard let exchange else { return }
        let failed = code != 0
        if phase == .tunneling {
            if failed {
                logDisconnect(side: "upstream", code: code)
                endExchange(.upstreamClosed)
                close()
            } else {
                exchange.upstreamSentEOF = true
                tunnelHalfClosed()
            }
            return
        }
        guard exchange.response != nil else {
            if exchange.reusedUpstream, let head = exchange.retryHead {
                // A pooled connection the upstream had closed: once more on a new one.
                logger.debug("conn \(id): pooled upstream connection closed before answering; retrying on a new one")
                releaseUpstream()
                exchange.reusedUpstream = false
                exchange.retryHead = nil
                exchange.upstreamConnected = false
                _ = openUpstream(exchange, head: head, pooled: false)
                return
            }
            if !exchange.upstreamConnected {
                upstreamUnreachable(code: code)
            } else {
                let cause = failed ? SocketErrors.describe(code) : "connection closed"
                logger.error("conn \(id): upstream \(exchange.route.upstream) closed before sending a response: \(cause)")
                worker.metrics.upstreamError(route: exchange.routeName, kind: failed ? .reset : .malformed)
                respondWithError(status: 502, message: "upstream \(exchange.route.upstream) closed the connection without a response",
                                 ending: .upstreamClosed)
            }
            return
        }
        // Deliver anything still buffered, then decide whether the body ended cleanly.
        forwardResponseBody()
        guard phase == .exchanging, self.exchange === exchange else { return }
        if exchange.responseBody.endsAtClose && !failed {
            finishResponse()
        } else {
            if failed { logDisconnect(side: "upstream", code: code) } else {
                logger.debug("conn \(id): upstream closed mid-body")
            }
            worker.metrics.upstreamError(route: exchange.routeName, kind: .reset)
            abort(.upstreamClosed)
        }
    }

    private func upstreamUnreachable(code: Int32) {
        guard let exchange else { return }
        let cause = code == 0 ? "connection failed" : SocketErrors.describe(code)
        logger.error("conn \(id): cannot reach upstream \(exchange.route.upstream): \(cause)")
        worker.metrics.upstreamError(route: exchange.routeName, kind: .connect)
        respondWithError(status: 502, message: "upstream \(exchange.route.upstream) unreachable: \(cause)", ending: .error)
    }

    fileprivate func upstreamReadable() {
        guard let upstream else { return }
        switch phase {
        case .tunneling:
            relay(from: upstream, to: client)
        case .exchanging:
            if exchange?.response == nil { readResponseHead(upstream.input) }
            if phase == .exchanging, exchange?.response != nil { forwardResponseBody() }
        case .awaitingRequest, .closing, .closed:
            break
        }
    }

    fileprivate func upstreamWritable() {
        if phase == .tunneling, let upstream {
            tunnelDrained(upstream, source: client, sourceSentEOF: exchange?.clientSentEOF == true)
            return
        }
        // The upstream drained the request body: read more of it from the client.
        if phase == .exchanging, exchange?.requestComplete == false {
            client.setReading(true)
        }
    }

    private func readResponseHead(_ input: EvBuffer) {
        while let exchange, exchange.response == nil, input.count > 0 {
            let result = input.pullup(config.maxHeaderBytes + 1) {
                HeadParser.parseResponse($0, maxHeaderBytes: config.maxHeaderBytes)
            }
            let head: ResponseHead
            switch result {
            case .incomplete:
                return
            case .failed(let error):
                upstreamMalformed(error)
                return
            case .complete(let parsed, let headLength):
                input.drain(headLength)
                head = parsed
            }
            if head.status >= 100 && head.status < 200 && head.status != 101 {
                // Interim responses go to HTTP/1.1 clients only (RFC 9110 15.2).
                if !exchange.isHTTP10 { sendToClient(head.serialized()) }
                continue
            }
            let plan: ResponsePlan
            do {
                plan = try ResponsePlan.make(
                    response: head, request: exchange.requestLine,
                    clientKeepAlive: exchange.clientKeepAlive,
                    heartbeatInterval: exchange.route.heartbeatInterval,
                    upgradeRequested: exchange.upgradeRequested)
            } catch {
                upstreamMalformed(error)
                return
            }
            if plan.isCompressedEventStream && worker.compressedStreamWarnings.first(exchange.routeName) {
                logger.warning("route \(exchange.route.name): upstream sent a content-encoded event stream; forwarding it without heartbeats")
            }
            exchange.response = plan
            exchange.retryHead = nil
            exchange.status = Int32(head.status)
            exchange.responseBody = BodyDecoder(plan.upstreamFraming)
            sendToClient(HeaderPolicy.clientResponse(head, plan: plan).serialized())
            if plan.isEventStream { worker.metrics.streamOpened(route: exchange.routeName) }
            if plan.isTunnel {
                startTunnel()
            } else if plan.heartbeats, let interval = exchange.route.heartbeatInterval {
                arm(.heartbeat, interval)
            } else {
                disarm()
            }
        }
    }

    private func upstreamMalformed(_ error: HTTPParseError) {
        guard let exchange else { return }
        logger.error("conn \(id): upstream \(exchange.route.upstream) sent a malformed response: \(error)")
        worker.metrics.upstreamError(route: exchange.routeName, kind: .malformed)
        respondWithError(status: 502, message: "upstream \(exchange.route.upstream) sent a malformed response", ending: .error)
    }

    /// Moves response payload to the client in this same callback, re-framed as planned.
    private func forwardResponseBody() {
        guard let exchange, let upstream, let plan = exchange.response else { return }
        let input = upstream.input
        var wrote = false
        while true {
            let instruction: BodyDecoder.Instruction
            do {
                instruction = try input.firstExtent { try exchange.responseBody.next(available: input.count, window: $0) }
            } catch {
                logger.error("conn \(id): upstream \(exchange.route.upstream) sent malformed body framing: \(error)")
                worker.metrics.upstreamError(route: exchange.routeName, kind: .malformed)
                abort(.error)
                return
            }
            switch instruction {
            case .payload(let n):
                exchange.responseBody.didForwardPayload(n)
                let gated = exchange.bomGate.wants(n)
                if gated > 0 { passThroughBOMGate(exchange, from: input, count: gated, plan: plan) }
                if n > gated {
                    movePayload(exchange, from: input, count: n - gated, plan: plan)
                    exchange.bomGate.payloadForwarded()
                }
                wrote = true
            case .skip(let n):
                input.drain(n)
            case .end:
                finishResponse()
                return
            case .needMore:
                // Every write restarts the idle clock.
                if wrote, plan.heartbeats, let interval = exchange.route.heartbeatInterval { arm(.heartbeat, interval) }
                client.flush()
                if clientOutput.count > config.streamBuffer {
                    // Backpressure: stop reading the upstream until the client drains (SPEC 4).
                    upstream.setReading(false)
                    armDrainClock(.drain)
                }
                return
            }
        }
    }

    /// Splices `n` payload bytes from the upstream's input to the client (no copy).
    private func movePayload(_ exchange: Exchange, from input: EvBuffer, count n: Int, plan: ResponsePlan) {
        if plan.heartbeats {
            // Only the last bytes decide where the stream stands.
            var tail: (UInt8, UInt8, UInt8) = (0, 0, 0)
            let copied = input.copyTail(endingAt: n, into: &tail)
            withUnsafeBytes(of: &tail) { exchange.cursor.advance(UnsafeRawBufferPointer(rebasing: $0[0..<copied])) }
        }
        let chunked = plan.clientFraming == .chunked
        if chunked { ChunkedEncoding.withChunkHeader(n) { sendToClient($0) } }
        input.move(n, to: clientOutput)
        exchange.bytesSent += n
        worker.metrics.bytesUpstreamToClient += n
        if chunked { sendToClient(ChunkedEncoding.chunkEnd) }
    }

    /// Payload the proxy writes itself (held BOM candidates, heartbeats), framed for the client.
    private func writePayload(_ bytes: [UInt8], plan: ResponsePlan) {
        let chunked = plan.clientFraming == .chunked
        if chunked { ChunkedEncoding.withChunkHeader(bytes.count) { sendToClient($0) } }
        sendToClient(bytes)
        if chunked { sendToClient(ChunkedEncoding.chunkEnd) }
    }

    private func sendToClient(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { sendToClient($0) }
    }

    private func sendToClient(_ bytes: UnsafeRawBufferPointer) {
        clientOutput.add(bytes)
        exchange?.bytesSent += bytes.count
        worker.metrics.bytesUpstreamToClient += bytes.count
    }

    /// The first payload bytes after a heartbeat: a UTF-8 BOM there is dropped (SPEC 1.3).
    private func passThroughBOMGate(_ exchange: Exchange, from input: EvBuffer, count n: Int, plan: ResponsePlan) {
        let outcome = input.pullup(n) { exchange.bomGate.take($0) }
        input.drain(n)
        if case .release(let bytes) = outcome { writeReleased(bytes, exchange: exchange, plan: plan) }
    }

    private func writeReleased(_ bytes: [UInt8], exchange: Exchange, plan: ResponsePlan) {
        guard !bytes.isEmpty else { return }
        exchange.cursor.advance(bytes)
        writePayload(bytes, plan: plan)
    }

    private func finishResponse() {
        guard let exchange, let plan = exchange.response else { return }
        if case .release(let bytes) = exchange.bomGate.finish() { writeReleased(bytes, exchange: exchange, plan: plan) }
        if plan.clientFraming == .chunked { sendToClient(ChunkedEncoding.lastChunk) }
        keepOrReleaseUpstream(exchange, plan: plan)
        endExchange(.complete)
        guard plan.keepAlive, exchange.requestComplete, !worker.draining else {
            closeAfterFlush()
            return
        }
        phase = .awaitingRequest
        client.setReading(true)
        arm(.keepAlive, config.keepaliveTimeout)
        // A pipelined request may already be waiting.
        readRequestHead()
    }

    // MARK: Heartbeats

    private func sendHeartbeat() {
        guard let exchange, let plan = exchange.response, plan.heartbeats,
              let heartbeat = exchange.route.heartbeat, let interval = exchange.route.heartbeatInterval else { return }
        // Not at a safe point (mid-line, after CR): the next upstream write restarts the clock.
        guard exchange.bomGate.held.isEmpty, let form = exchange.cursor.safeHeartbeat else {
            timerRole = .none
            return
        }
        writePayload(heartbeat.bytes(form), plan: plan)
        exchange.cursor.didWriteHeartbeat(form, blankLine: heartbeat.blankLine)
        exchange.bomGate.heartbeatWritten()
        exchange.heartbeats += 1
        worker.metrics.heartbeatWritten(route: exchange.routeName)
        logger.trace("conn \(id): heartbeat on route \(exchange.route.name)")
        arm(.heartbeat, interval)
    }

    /// Back to the heartbeat clock, if this response has one.
    private func rearmHeartbeat() {
        if let exchange, exchange.response?.heartbeats == true, let interval = exchange.route.heartbeatInterval {
            arm(.heartbeat, interval)
        } else {
            disarm()
        }
    }

    // MARK: Reload and shutdown

    /// A reload happened: an open event stream takes its route's new heartbeat (SPEC 2).
    func settingsChanged() {
        guard phase == .exchanging, let exchange, let plan = exchange.response, plan.isEventStream else { return }
        exchange.route = worker.settings.route(for: exchange.requestLine.path)
        exchange.response?.heartbeats = !plan.isCompressedEventStream && exchange.route.heartbeatInterval != nil
        if timerRole == .heartbeat || timerRole == .none { rearmHeartbeat() }
    }

    /// Draining: a connection with no request in progress closes now.
    func closeIfIdle() {
        if phase == .awaitingRequest && clientInput.count == 0 { close() }
    }

    /// The shutdown grace is over: event streams end cleanly, anything else is cut.
    func endForShutdown() {
        switch phase {
        case .exchanging where exchange?.isEventStream == true:
            if exchange?.response?.clientFraming == .chunked { sendToClient(ChunkedEncoding.lastChunk) }
            logger.debug("conn \(id): event stream ended for shutdown")
            releaseUpstream()
            endExchange(.complete)
            closeAfterFlush()
        case .exchanging, .tunneling:
            abort(.error)
        case .awaitingRequest:
            close()
        case .closing, .closed:
            break
        }
    }

    // MARK: Tunnel (Upgrade)

    private func startTunnel() {
        guard let upstream else { return }
        phase = .tunneling
        disarm()
        logger.debug("conn \(id): tunnel open")
        // Empty-output callbacks drive half-closes and backpressure from here on.
        client.lowWatermark = 0
        upstream.lowWatermark = 0
        client.setReading(true)
        relay(from: upstream, to: client)
        relay(from: client, to: upstream)
    }

    /// Moves everything readable from `source` to `destination`, pausing `source` while `destination` is full.
    private func relay(from source: Channel, to destination: Channel) {
        let n = source.input.count
        source.input.move(n, to: destination.output)
        if source === client { worker.metrics.bytesClientToUpstream += n } else {
            worker.metrics.bytesUpstreamToClient += n
            exchange?.bytesSent += n
        }
        destination.flush()
        if destination.output.count > config.streamBuffer { source.setReading(false) }
    }

    /// `destination`'s output emptied: resume its source, or pass on the source's EOF.
    private func tunnelDrained(_ destination: Channel, source: Channel, sourceSentEOF: Bool) {
        if sourceSentEOF {
            destination.shutdownWrite()
        } else {
            source.setReading(true)
        }
    }

    private func tunnelHalfClosed() {
        guard let exchange, let upstream else { return }
        if exchange.clientSentEOF && exchange.upstreamSentEOF {
            endExchange(.complete)
            closeAfterFlush()
            return
        }
        if exchange.clientSentEOF {
            client.setReading(false)
            upstream.flush()
            if upstream.output.count == 0 { upstream.shutdownWrite() }
        }
        if exchange.upstreamSentEOF {
            upstream.setReading(false)
            client.flush()
            if clientOutput.count == 0 { client.shutdownWrite() }
        }
    }

    // MARK: Timer

    fileprivate func timerFired() {
        let role = timerRole
        timerRole = .none
        switch role {
        case .none:
            return
        case .clientHeader:
            logger.debug("conn \(id): client \(peer) sent no complete request head in \(config.clientHeaderTimeout)")
            if clientInput.count > 0 {
                respondWithError(status: 408, message: "request head not received in time", ending: .timeout)
            } else {
                close()
            }
        case .keepAlive:
            logger.trace("conn \(id): idle keep-alive connection closed")
            close()
        case .connect, .response:
            guard let exchange else { return }
            let what = role == .connect
                ? "did not accept the connection within \(config.connectTimeout)"
                : "sent no response within \(config.responseTimeout)"
            logger.error("conn \(id): upstream \(exchange.route.upstream) \(what)")
            worker.metrics.upstreamError(route: exchange.routeName, kind: .timeout)
            respondWithError(status: 504, message: "upstream \(exchange.route.upstream) \(what)", ending: .timeout)
        case .heartbeat:
            sendHeartbeat()
        case .flush, .drain:
            if client.pendingBytes < pendingAtDrainCheck {
                // Slow but reading: only a client that reads nothing for the whole timeout is cut.
                armDrainClock(role)
                return
            }
            logger.debug("conn \(id): client \(peer) read nothing for \(config.keepaliveTimeout) with \(client.pendingBytes) bytes waiting; closing")
            worker.metrics.clientDisconnected(.timeout)
            endExchange(.timeout)
            close()
        }
    }

    private func armDrainClock(_ role: TimerRole) {
        pendingAtDrainCheck = client.pendingBytes
        arm(role, config.keepaliveTimeout)
    }

    private func arm(_ role: TimerRole, _ span: TimeSpan) {
        timerRole = role
        event_add(timer, worker.commonTimeout(span))
    }

    private func disarm() {
        timerRole = .none
        event_del(timer)
    }

    // MARK: Endings

    /// Ends the exchange in flight, once: its access-log line and metrics.
    private func endExchange(_ ending: AccessLogEntry.Ending) {
        guard let exchange else { return }
        self.exchange = nil
        if exchange.isEventStream { worker.metrics.streamClosed(route: exchange.routeName) }
        // nginx's convention: 499 when the client left before any response head.
        let status = exchange.status != 0 ? Int(exchange.status) : (ending == .clientClosed ? 499 : 502)
        worker.metrics.requestFinished(route: exchange.routeName, code: status)
        guard config.accessLog else { return }
        AccessLogEntry(
            client: "\(peer)", method: exchange.method,
            target: settings.redactor.redact(target: exchange.target),
            status: status, bytesSent: exchange.bytesSent, durationMs: exchange.elapsedMilliseconds,
            route: exchange.routeName, heartbeats: Int(exchange.heartbeats), ending: ending
        ).log(to: logger, format: config.logFormat)
    }

    private func respondWithError(status: Int, message: String, ending: AccessLogEntry.Ending) {
        if exchange?.response != nil {
            // The head is already out: all we can do is cut the stream.
            abort(ending)
            return
        }
        releaseUpstream()
        let page = ErrorPage.response(status: status, message: message)
        exchange?.status = Int32(status)
        sendToClient(page)
        endExchange(ending)
        closeAfterFlush()
    }

    /// Ends the exchange without a proper end of body, so the client sees the truncation.
    private func abort(_ ending: AccessLogEntry.Ending) {
        releaseUpstream()
        endExchange(ending)
        closeAfterFlush()
    }

    private func closeAfterFlush() {
        guard phase != .closed else { return }
        releaseUpstream()
        phase = .closing
        client.setReading(false)
        clientInput.drain(clientInput.count)
        client.flush()
        if clientOutput.count == 0 {
            close()
            return
        }
        // channelDrained fires once the output is empty; a client that never reads is cut after keepalive.
        client.lowWatermark = 0
        armDrainClock(.flush)
    }

    /// A connection whose response was read to its end goes back to the pool.
    private func keepOrReleaseUpstream(_ exchange: Exchange, plan: ResponsePlan) {
        guard let upstream else { return }
        upstream.flush()
        guard plan.upstreamReusable, exchange.requestComplete, !worker.draining,
              upstream.input.count == 0, upstream.output.count == 0 else {
            releaseUpstream()
            return
        }
        self.upstream = nil
        worker.upstreamPool.give(upstream, to: exchange.startRoute.upstream.spec)
    }

    private func releaseUpstream() {
        if let upstream {
            upstream.close()
            self.upstream = nil
        }
    }

    /// Writes what this loop turn queued on either side. A flush that empties an
    /// output gets no drain callback later, so its consequences (resume the
    /// paused side, finish a close) are taken here.
    private func flushQueued() {
        guard phase != .closed else { return }
        client.flush()
        upstream?.flush()
        if clientOutput.count <= client.lowWatermark { clientWritable() }
        if phase != .closed, let upstream, upstream.output.count <= upstream.lowWatermark { upstreamWritable() }
    }

    /// Frees everything this connection owns, exactly once.
    func close() {
        guard phase != .closed else { return }
        endExchange(.clientClosed)
        phase = .closed
        releaseUpstream()
        event_free(timer)
        client.close()
        worker.forget(self)
    }

    private func logDisconnect(side: String, code: Int32) {
        if SocketErrors.isQuietDisconnect(code) {
            logger.debug("conn \(id): \(side) disconnected: \(SocketErrors.describe(code))")
        } else {
            logger.warning("conn \(id): \(side) socket error: \(SocketErrors.describe(code))")
        }
    }

    private static func describe(_ error: HTTPParseError) -> String {
        switch error {
        case .headersTooLarge: return "request header fields too large"
        case .unsupportedVersion: return "HTTP version not supported"
        case .malformed(let reason): return "malformed request: \(reason)"
        }
    }

    private static func setNoDelay(_ fd: Int32) {
        guard fd >= 0 else { return }
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }
}

// MARK: Loop entry points

extension Connection: ChannelDelegate {
    // Each entry point ends by flushing what it queued: bytes read from one
    // side go out to the other in the same loop turn.

    func channelReadable(_ channel: Channel) {
        if channel === client { clientReadable() } else { upstreamReadable() }
        flushQueued()
    }

    func channelDrained(_ channel: Channel) {
        if channel === client { clientWritable() } else { upstreamWritable() }
        flushQueued()
    }

    func channelConnected(_ channel: Channel) {
        upstreamConnected()
        flushQueued()
    }

    func channelClosed(_ channel: Channel, error: Int32) {
        if channel === client { clientClosed(error: error) } else { upstreamClosed(error: error) }
        flushQueued()
    }

    fileprivate func timerFiredFromLoop() {
        timerFired()
        flushQueued()
    }
}

private func timerCallback(_ fd: Int32, _ events: Int16, _ context: UnsafeMutableRawPointer?) {
    let connection = Unmanaged<Connection>.fromOpaque(context!).takeUnretainedValue()
    withExtendedLifetime(connection) { connection.timerFiredFromLoop() }
}
