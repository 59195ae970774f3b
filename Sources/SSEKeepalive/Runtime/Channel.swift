import CLibevent
#if canImport(Glibc)
import Glibc
#endif

/// What a `Channel` reports to its owner. Every call happens on the worker's
/// loop; the owner may close the channel inside any of them.
protocol ChannelDelegate: AnyObject {
    /// New bytes are in `channel.input`.
    func channelReadable(_ channel: Channel)
    /// A write from the loop brought `channel.output` down to `lowWatermark` or below.
    func channelDrained(_ channel: Channel)
    /// A connect started by `Channel.connect` completed.
    func channelConnected(_ channel: Channel)
    /// The peer closed its side (`error` 0: clean EOF) or the socket failed (`error` = errno).
    func channelClosed(_ channel: Channel, error: Int32)
}

/// One non-blocking socket, its input and output evbuffers and one libevent
/// event. The proxy's own replacement for a socket bufferevent, for two
/// measured reasons: libevent 2.1's bufferevent reads at most 4 KiB per call
/// (EVBUFFER_MAX_READ), and it costs about 1 KiB per socket, where this costs
/// about half. Writes go out at once when the socket takes them; the write
/// event is armed only while bytes are left over.
final class Channel {
    let fd: Int32
    let input: EvBuffer
    let output: EvBuffer
    /// `channelDrained` fires when a loop-driven write leaves at most this many bytes.
    var lowWatermark = 0

    private let event: OpaquePointer
    /// The connection using it, or the upstream pool while it idles there.
    unowned(unsafe) var delegate: ChannelDelegate
    private var interest: Int16 = 0
    private var reading = false
    private var connecting = false
    /// While connecting to one of a host name's addresses: which one (told how it went).
    private var connectingTo: (UpstreamCandidates, Int)?
    private(set) var isClosed = false
    /// The peer's EOF was read: closing now sends no FIN of ours that it still waits for.
    private(set) var peerClosed = false

    /// Largest single read; a large read is sized by FIONREAD, so chains fit the data.
    static let maxRead = 256 * 1024
    /// A read that is not sized by FIONREAD takes at most this much: it fits
    /// evbuffer's smallest chain (1 KiB with its header), so a small read (a
    /// request, a head, an event) costs one system call and no more memory
    /// than an exactly sized one.
    static let smallRead = 960
    /// The last read filled `smallRead`: more is likely waiting, size the next by FIONREAD.
    private var readsLarge = false

    private init?(fd: Int32, base: OpaquePointer, delegate: ChannelDelegate) {
        guard let inputBuffer = evbuffer_new() else { return nil }
        guard let outputBuffer = evbuffer_new() else {
            evbuffer_free(inputBuffer)
            return nil
        }
        guard let event = event_new(base, fd, 0, channelCallback, nil) else {
            evbuffer_free(inputBuffer)
            evbuffer_free(outputBuffer)
            return nil
        }
        self.fd = fd
        self.input = EvBuffer(inputBuffer)
        self.output = EvBuffer(outputBuffer)
        self.event = event
        self.delegate = delegate
    }

    /// Wraps an accepted socket (evconnlistener accepts them non-blocking already).
    static func accepted(fd: Int32, base: OpaquePointer, delegate: ChannelDelegate) -> Channel? {
        Channel(fd: fd, base: base, delegate: delegate)
    }

    /// Starts a non-blocking connect; `channelConnected` or `channelClosed` follows.
    /// Returns nil with errno set when the socket cannot even be created or the connect fails at once.
    /// For a host name, one of its addresses in turn; a failed connect is reported to them.
    static func connect(to address: ResolvedAddress, base: OpaquePointer, delegate: ChannelDelegate) -> Channel? {
        let target = address.connectTarget()
        let family = Int32(target.withSockaddr { sockaddr, _ in sockaddr.pointee.sa_family })
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        let result = target.withSockaddr { Glibc.connect(fd, $0, socklen_t($1)) }
        let code = sse_errno()
        guard result == 0 || code == EINPROGRESS, let channel = Channel(fd: fd, base: base, delegate: delegate) else {
            Glibc.close(fd)
            target.candidates?.connectFailed(target.index)
            errno = code
            return nil
        }
        // Completion (even an immediate one) is reported from the loop, never from inside this call.
        channel.connecting = true
        if let candidates = target.candidates { channel.connectingTo = (candidates, target.index) }
        channel.updateInterest()
        return channel
    }

    deinit {
        if !isClosed { close() }
    }

    /// Frees everything; no callback fires after this. `abortive` resets the
    /// connection (SO_LINGER 0) instead of a FIN: no FIN/ACK exchange and no
    /// TIME_WAIT socket left behind by the side that closes first.
    func close(abortive: Bool = false) {
        guard !isClosed else { return }
        isClosed = true
        if abortive {
            var reset = linger(l_onoff: 1, l_linger: 0)
            _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, socklen_t(MemoryLayout<linger>.size))
        }
        event_del(event)
        event_free(event)
        evbuffer_free(input.raw)
        evbuffer_free(output.raw)
        Glibc.close(fd)
    }

    func setReading(_ enabled: Bool) {
        guard !isClosed, reading != enabled else { return }
        reading = enabled
        updateInterest()
    }

    /// Writes what `output` holds now, as far as the socket takes it; the rest waits for the loop.
    /// Errors surface from the loop (the write event fires on a failed socket), never from here.
    func flush() {
        guard !isClosed, !connecting else { return }
        if output.count > 0 { _ = evbuffer_write(output.raw, fd) }
        updateInterest()
    }

    /// Bytes still on their way to the peer: our output plus the kernel's unsent
    /// queue. A slow reader drains the kernel queue long before our output
    /// moves (the send buffer autotunes to megabytes), so both count as progress.
    var pendingBytes: Int {
        var queued: Int32 = 0
        if isClosed || ioctl(fd, UInt(TIOCOUTQ), &queued) != 0 { queued = 0 }
        return output.count + Int(queued)
    }

    /// Stops reporting to this loop (on its thread); `attach(to:)` resumes on another.
    func detachFromLoop() {
        guard !isClosed else { return }
        event_del(event)
        interest = 0
    }

    /// Reports to the loop of `base` from now on (on that loop's thread).
    func attach(to base: OpaquePointer) {
        guard !isClosed else { return }
        event_assign(event, base, fd, 0, channelCallback, nil)
        updateInterest()
    }

    /// Half-close: the peer reads EOF after what was written.
    func shutdownWrite() {
        guard !isClosed else { return }
        _ = shutdown(fd, Int32(SHUT_WR))
    }

    // MARK: Loop

    fileprivate func ready(_ what: Int16) {
        if what & Int16(EV_WRITE) != 0 {
            if connecting {
                var code: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                if getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &length) != 0 { code = sse_errno() }
                guard code == 0 else { return fail(code) }
                connecting = false
                if let (candidates, index) = connectingTo { candidates.connected(index) }
                connectingTo = nil
                updateInterest()
                delegate.channelConnected(self)
                if isClosed { return }
            }
            if output.count > 0 {
                if evbuffer_write(output.raw, fd) < 0 {
                    let code = sse_errno()
                    if code != EAGAIN && code != EINTR { return fail(code) }
                }
                updateInterest()
                if output.count <= lowWatermark {
                    delegate.channelDrained(self)
                    if isClosed { return }
                }
            }
        }
        if what & Int16(EV_READ) != 0 && reading {
            readOnce()
        }
    }

    private func readOnce() {
        let size = readsLarge ? availableToRead() : Self.smallRead
        let n = readIntoInput(size)
        guard n > 0 else { return readEnded(n) }
        var more = 1
        if !readsLarge && n == size {
            // A small read came back full: read the rest now, sized, so it goes out in one write.
            readsLarge = true
            more = readIntoInput(availableToRead())
        } else {
            readsLarge = n >= Self.smallRead
        }
        delegate.channelReadable(self)
        if more <= 0 && !isClosed && reading { readEnded(more) }
    }

    /// What FIONREAD says is waiting (at least `smallRead`, at most `maxRead`).
    private func availableToRead() -> Int {
        var available: Int32 = 0
        guard ioctl(fd, UInt(FIONREAD), &available) == 0 else { return Self.smallRead }
        return min(max(Int(available), Self.smallRead), Self.maxRead)
    }

    /// One read(2) into `input`: bytes read, 0 at EOF, -errno on failure.
    private func readIntoInput(_ size: Int) -> Int {
        var extent = iovec()
        guard evbuffer_reserve_space(input.raw, size, &extent, 1) == 1 else { return -Int(ENOMEM) }
        let n = read(fd, extent.iov_base, size)
        guard n > 0 else { return n == 0 ? 0 : -Int(sse_errno()) }
        extent.iov_len = n
        evbuffer_commit_space(input.raw, &extent, 1)
        return n
    }

    /// A read that returned `result` <= 0: EOF, a failure, or nothing yet.
    private func readEnded(_ result: Int) {
        if result == 0 {
            reading = false
            peerClosed = true
            updateInterest()
            delegate.channelClosed(self, error: 0)
        } else {
            let code = Int32(-result)
            if code != EAGAIN && code != EINTR { fail(code) }
        }
    }

    /// A connect that did not complete: the address it tried is skipped for a
    /// while and its name looked up again (errors come here by themselves; a
    /// timeout is the owner's to report, see `Worker.upstreamConnectTimedOut`).
    func reportConnectFailure() {
        guard connecting, let (candidates, index) = connectingTo else { return }
        connectingTo = nil
        candidates.connectFailed(index)
    }

    private func fail(_ code: Int32) {
        reportConnectFailure()
        reading = false
        updateInterest()
        delegate.channelClosed(self, error: code)
    }

    /// One event per socket: re-registered only when what we wait for changes.
    /// With the epoll changelist, a change undone in the same loop turn costs no syscall.
    private func updateInterest() {
        guard !isClosed else { return }
        var wanted: Int16 = 0
        if reading { wanted |= Int16(EV_READ) }
        if connecting || output.count > 0 { wanted |= Int16(EV_WRITE) }
        guard wanted != interest else { return }
        event_del(event)
        interest = wanted
        guard wanted != 0 else { return }
        let context = Unmanaged.passUnretained(self).toOpaque()
        event_assign(event, event_get_base(event), fd, wanted | Int16(EV_PERSIST), channelCallback, context)
        event_add(event, nil)
    }
}

private func channelCallback(_ fd: Int32, _ what: Int16, _ context: UnsafeMutableRawPointer?) {
    let channel = Unmanaged<Channel>.fromOpaque(context!).takeUnretainedValue()
    // The owner may drop the channel inside a delegate call.
    withExtendedLifetime(channel) { channel.ready(what) }
}
