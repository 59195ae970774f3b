/// Idle upstream connections of one worker, kept for the next request to the
/// same address (what nginx's `keepalive` and HAProxy's `http-reuse` do):
/// a request on a pooled connection skips socket, connect and close.
///
/// An upstream may close an idle connection at any moment (Node closes after
/// 5 s, gunicorn after 2 s), so only connections idle for less than `maxIdle`
/// are handed out (older ones are swept), and a request that fails on a reused connection before any
/// response byte is retried once on a fresh one (bodyless, idempotent requests).
final class UpstreamPool: ChannelDelegate {
    private struct Idle {
        let channel: Channel
        let since: Int
    }

    /// Idle connections per address, most recent last.
    private var idle: [SocketAddressSpec: [Idle]] = [:]
    private let perAddress: Int
    private let maxIdleMilliseconds: Int

    init(perAddress: Int = 32, maxIdleMilliseconds: Int = 1000) {
        self.perAddress = perAddress
        self.maxIdleMilliseconds = maxIdleMilliseconds
    }

    /// A connection idle for less than `maxIdle`, or nil. Older ones are closed on the way.
    func take(_ address: SocketAddressSpec) -> Channel? {
        let now = MonotonicClock.milliseconds()
        while let entry = idle[address]?.popLast() {
            if now - entry.since < maxIdleMilliseconds && !entry.channel.isClosed { return entry.channel }
            entry.channel.close()
        }
        return nil
    }

    /// Keeps a connection whose last response was read to its end. Reading stays
    /// on, so an upstream that closes it (or sends stray bytes) is noticed.
    func give(_ channel: Channel, to address: SocketAddressSpec) {
        var list = idle[address, default: []]
        if list.count >= perAddress { list.removeFirst().channel.close() }
        channel.delegate = self
        channel.lowWatermark = 0
        channel.setReading(true)
        list.append(Idle(channel: channel, since: MonotonicClock.milliseconds()))
        idle[address] = list
    }

    /// Closes connections idle past the reuse window, so idle upstream
    /// connections do not pile up (the worker calls this every second).
    func sweep() {
        let now = MonotonicClock.milliseconds()
        for (address, list) in idle {
            let (fresh, stale) = (list.filter { now - $0.since < maxIdleMilliseconds },
                                  list.filter { now - $0.since >= maxIdleMilliseconds })
            guard !stale.isEmpty else { continue }
            for entry in stale { entry.channel.close() }
            idle[address] = fresh.isEmpty ? nil : fresh
        }
    }

    /// The idle connections to one upstream (its name moved to other addresses).
    func closeAll(for address: SocketAddressSpec) {
        for entry in idle.removeValue(forKey: address) ?? [] { entry.channel.close() }
    }

    func closeAll() {
        for list in idle.values { for entry in list { entry.channel.close() } }
        idle.removeAll()
    }

    private func discard(_ channel: Channel) {
        channel.close()
        for (address, list) in idle {
            if let index = list.firstIndex(where: { $0.channel === channel }) {
                idle[address]?.remove(at: index)
                return
            }
        }
    }

    // An idle connection has nothing to say: any bytes or an EOF end it.
    func channelReadable(_ channel: Channel) { discard(channel) }
    func channelClosed(_ channel: Channel, error: Int32) { discard(channel) }
    func channelDrained(_ channel: Channel) {}
    func channelConnected(_ channel: Channel) {}
}
