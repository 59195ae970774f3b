import CLibevent
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Looks upstream host names up again on a thread of its own (getaddrinfo
/// blocks, so never on an event loop): every `upstream_resolve` interval, and
/// soon after a connect failure (`ResolveSchedule`). Results go to `deliver`,
/// which hands them to the control loop; the server turns changes into new
/// settings for the workers.
final class UpstreamResolver: @unchecked Sendable {
    enum Lookup: Sendable {
        case addresses([AddressBytes])
        case failure(String)
    }

    private struct State {
        var names: [SocketAddressSpec] = []
        var schedule: ResolveSchedule
    }

    private let state: Mutex<State>
    /// Wakes the thread early (a connect failed, or the names changed).
    private let wakeFD: Int32
    private let deliver: @Sendable ([(SocketAddressSpec, Lookup)]) -> Void

    init(interval: TimeSpan?, deliver: @escaping @Sendable ([(SocketAddressSpec, Lookup)]) -> Void) throws(ServerError) {
        wakeFD = eventfd(0, Int32(EFD_CLOEXEC))
        guard wakeFD >= 0 else { throw ServerError("upstream resolver: eventfd: \(SocketErrors.describe(errno))") }
        state = Mutex(State(schedule: ResolveSchedule(intervalMs: interval?.milliseconds, startedAtMs: UpstreamCandidates.nowMs())))
        self.deliver = deliver
    }

    /// Runs for the life of the process (detached).
    func start() throws(ServerError) {
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        guard pthread_create(&thread, nil, resolverThreadMain, context) == 0 else {
            Unmanaged<UpstreamResolver>.fromOpaque(context).release()
            throw ServerError("cannot start the upstream resolver thread")
        }
        pthread_detach(thread)
    }

    /// The host names in use now (after a start or reload) and the interval.
    func watch(_ names: [SocketAddressSpec], interval: TimeSpan?) {
        let now = UpstreamCandidates.nowMs()
        state.withLock {
            $0.names = names
            $0.schedule = ResolveSchedule(intervalMs: interval?.milliseconds, startedAtMs: now)
        }
        wake()
    }

    /// A connect to one of the names' addresses failed: look them up soon.
    func connectFailed() {
        let alreadyDue = state.withLock { state -> Bool in
            let before = state.schedule.nextDueMs
            state.schedule.connectFailed()
            return before == state.schedule.nextDueMs
        }
        if !alreadyDue { wake() }
    }

    private func wake() {
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }

    fileprivate func runLoop() {
        while true {
            let (due, timeout) = state.withLock { state -> (Bool, Int32) in
                let now = UpstreamCandidates.nowMs()
                guard !state.names.isEmpty, let next = state.schedule.nextDueMs else { return (false, -1) }
                return (now >= next, Int32(clamping: max(0, next - now)))
            }
            if !due {
                var poll = pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)
                if Glibc.poll(&poll, 1, timeout) > 0 {
                    var count: UInt64 = 0
                    _ = read(wakeFD, &count, 8)
                }
                continue
            }
            let names = state.withLock { state -> [SocketAddressSpec] in
                state.schedule.ran(atMs: UpstreamCandidates.nowMs())
                return state.names
            }
            var results: [(SocketAddressSpec, Lookup)] = []
            for spec in names {
                guard case .inet(let host, let port) = spec else { continue }
                switch AddressBytes.lookup(host: host, port: port) {
                case .success(let addresses): results.append((spec, .addresses(addresses)))
                case .failure(let failure): results.append((spec, .failure(failure.description)))
                }
            }
            deliver(results)
        }
    }
}

private func resolverThreadMain(_ context: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let resolver = Unmanaged<UpstreamResolver>.fromOpaque(context!).takeRetainedValue()
    resolver.runLoop()
    return nil
}
