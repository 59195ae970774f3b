import CLibevent
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The running proxy. The main thread runs a small control loop (signals,
/// reload, shutdown, admin endpoint); each worker thread runs its own loop
/// with its own listeners on the same ports.
public final class Server: @unchecked Sendable {
    private let control: OpaquePointer
    private var config: Config
    private let configPath: String?
    private let logLevelOverride: LogLevelName?
    private var logger: Logger
    private var workers: [Worker] = []
    private var listening: Set<SocketAddressSpec> = []
    private var admin: AdminServer?
    private var shutdown = ShutdownStage.running
    private let stoppedWorkers = Mutex(0)
    private var events: [OpaquePointer] = []
    private var workerStoppedEvent: OpaquePointer?
    private var shutdownTimer: OpaquePointer?
    /// READY/RELOADING/STOPPING/WATCHDOG for systemd; idle without NOTIFY_SOCKET.
    private var notifier: SystemdNotifier?
    /// `--watch`: watch the file whatever `reload.watch` says.
    private let watchOverride: Bool
    private var watcher: ConfigWatcher?
    /// A watcher switched off by a reload; kept until the next one (it may be the caller).
    private var retiredWatcher: ConfigWatcher?
    /// Looks upstream host names up again off the loops; results arrive in `resolvedInbox`.
    private let resolver: UpstreamResolver
    private let resolvedInbox = ResolvedInbox()
    private var resolvedEvent: OpaquePointer?
    /// The last good addresses of each upstream host name in use.
    private var names: [SocketAddressSpec: NameResolution<AddressBytes>] = [:]
    /// What the workers run with now (rebuilt when a name moves).
    private var settings: ProxySettings

    /// Opens every listener (failing fast on a port in use) but serves nothing until `run()`.
    public init(config: Config, configPath: String?, logLevelOverride: LogLevelName?, watch: Bool = false,
                logger: Logger) throws(ServerError) {
        sse_ignore_sigpipe()
        evthread_use_pthreads()
        // libevent's own messages go through our log handler, with a level.
        event_set_log_callback(libeventLogCallback)
        guard let control = event_base_new() else { throw ServerError("cannot create an event base") }
        self.control = control
        self.config = config
        self.configPath = configPath
        self.watchOverride = watch
        self.logLevelOverride = logLevelOverride
        self.logger = logger
        let inbox = resolvedInbox
        let resolver = try UpstreamResolver(interval: config.upstreamResolve) { inbox.post($0) }
        self.resolver = resolver
        let settings = try Self.settings(for: config, resolver: resolver)
        self.settings = settings

        // Signals first: a SIGHUP right after "listening on" must reload, not kill.
        let context = Unmanaged.passUnretained(self).toOpaque()
        for number in [SIGTERM, SIGINT, SIGHUP] {
            if let event = event_new(control, number, Int16(EV_SIGNAL | EV_PERSIST), signalCallback, context) {
                event_add(event, nil)
                events.append(event)
            }
        }
        notifier = SystemdNotifier(base: control, logger: logger)
        workerStoppedEvent = event_new(control, -1, 0, workerStoppedCallback, context)
        shutdownTimer = event_new(control, -1, 0, shutdownTimerCallback, context)
        resolvedEvent = event_new(control, -1, 0, resolvedCallback, context)
        resolvedInbox.setEvent(resolvedEvent)
        names = Self.hostNames(in: settings)
        let count = Self.workerCount(config.workers)
        let openConnections = ConnectionCount()
        let compressedStreamWarnings = WarnOnce()
        for index in 0..<count {
            workers.append(try Worker(index: index, settings: settings, logger: logger, openConnections: openConnections,
                                      compressedStreamWarnings: compressedStreamWarnings) { [unowned self] _ in
                self.workerStopped()
            })
        }
        for worker in workers { worker.shareOwners = workers }
        // Watching before "listening on": a change right after start is not missed.
        try updateWatcher()
        try listen(on: config.listen)
        if let adminAddress = config.adminListen {
            admin = try AdminServer(base: control, address: Self.resolve(adminAddress), server: self)
            logger.info("admin endpoint on http://\(adminAddress)/metrics")
        }
        logger.info("\(count) worker\(count == 1 ? "" : "s"), upstream \(config.upstream)")
    }

    deinit {
        for event in events { event_free(event) }
        if let workerStoppedEvent { event_free(workerStoppedEvent) }
        if let shutdownTimer { event_free(shutdownTimer) }
        admin = nil
        // The resolver thread outlives the server: it must not touch a freed event.
        resolvedInbox.setEvent(nil)
        if let resolvedEvent { event_free(resolvedEvent) }
        notifier = nil
        watcher = nil
        retiredWatcher = nil
        event_base_free(control)
    }

    /// Runs until shut down; returns the exit status.
    public func run() -> Int32 {
        for worker in workers {
            do { try worker.start() } catch {
                logger.critical("\(error.description)")
                return 1
            }
        }
        do { try resolver.start() } catch {
            logger.critical("\(error.description)")
            return 1
        }
        watchNames()
        // The sockets listen since init (connections queue); now workers accept them.
        notifier?.listenersOpen()
        event_base_loop(control, EVLOOP_NO_EXIT_ON_EMPTY)
        logger.info("stopped")
        return 0
    }

    // MARK: Listeners

    /// One socket per worker per address; all or nothing.
    private func listen(on specs: [SocketAddressSpec]) throws(ServerError) {
        var opened: [[SocketAddressSpec: Int32]] = Array(repeating: [:], count: workers.count)
        do {
            for spec in specs where !listening.contains(spec) {
                let address = try Self.resolve(spec)
                for index in workers.indices {
                    opened[index][spec] = try ListenSocket.open(address, reusePort: true)
                }
            }
        } catch {
            for sockets in opened { for fd in sockets.values { Glibc.close(fd) } }
            throw error
        }
        for (index, sockets) in opened.enumerated() where !sockets.isEmpty {
            workers[index].send(.adopt(sockets))
        }
        for spec in specs where !listening.contains(spec) {
            logger.info("listening on \(spec)")
            listening.insert(spec)
        }
    }

    // MARK: Signals

    fileprivate func received(signal number: Int32) {
        switch number {
        case SIGHUP: reload()
        default: beginShutdown(signal: number)
        }
    }

    /// SIGHUP: re-read the file; a bad file changes nothing (docs/configuration.md, "Reloading").
    private func reload() {
        guard shutdown == .running else { return }
        notifier?.reloadBegins()
        var rejection: String?
        defer { notifier?.reloadEnds(rejected: rejection) }
        let newConfig: Config
        let settings: ProxySettings
        do {
            newConfig = try ConfigLoader.load(path: configPath)
            settings = try Self.settings(for: newConfig, resolver: resolver)
            try listen(on: newConfig.listen)
        } catch {
            logger.error("reload rejected, the running configuration stays: \(error)")
            rejection = "\(error)"
            return
        }
        self.settings = settings
        names = Self.hostNames(in: settings)
        let removed = listening.subtracting(newConfig.listen)
        let level = (logLevelOverride ?? newConfig.logLevel).swiftLogLevel
        for worker in workers {
            worker.send(.apply(settings, level))
            if !removed.isEmpty { worker.send(.unlisten(Array(removed))) }
        }
        for spec in removed { logger.info("no longer listening on \(spec)") }
        listening.subtract(removed)
        if newConfig.adminListen != config.adminListen {
            admin = nil
            if let adminAddress = newConfig.adminListen {
                do {
                    admin = try AdminServer(base: control, address: Self.resolve(adminAddress), server: self)
                } catch {
                    logger.error("admin endpoint: \(error)")
                }
            }
        }
        if newConfig.workers != config.workers {
            logger.notice("a change of workers takes effect at the next start")
        }
        logger.logLevel = level
        config = newConfig
        watchNames()
        logger.notice("configuration reloaded from \(newConfig.sourceFile ?? "built-in defaults")")
        do { try updateWatcher() } catch { logger.error("\(error)") }
    }

    /// Starts or stops the file watch as `--watch` and `reload.watch` say.
    private func updateWatcher() throws(ServerError) {
        guard watchOverride || config.reloadWatch else {
            if let watcher {
                watcher.stop()
                retiredWatcher = watcher
                self.watcher = nil
                logger.info("no longer watching the config file")
            }
            return
        }
        guard watcher == nil else { return }
        guard let path = config.sourceFile else {
            throw ServerError("--watch needs a config file: \(ConfigLoader.defaultPath) does not exist here; name one with --config")
        }
        retiredWatcher = nil
        watcher = try ConfigWatcher(path: path, base: control, logger: logger) { [unowned self] in self.reload() }
    }

    /// SIGTERM/SIGINT: stop accepting, let requests finish, end streams after the grace; a second signal exits at once.
    private func beginShutdown(signal number: Int32) {
        if shutdown != .running {
            logger.notice("second signal: exiting now")
            exit(128 + number)
        }
        shutdown = .draining
        notifier?.drainBegins()
        logger.notice("signal \(number): draining; event streams end in \(config.shutdownGrace)")
        for worker in workers { worker.send(.drain) }
        armShutdownTimer(config.shutdownGrace)
    }

    fileprivate func shutdownTimerFired() {
        switch shutdown {
        case .running:
            break
        case .draining:
            shutdown = .endingStreams
            for worker in workers { worker.send(.endStreams) }
            // Clients that do not read their last bytes get a few seconds, not forever.
            armShutdownTimer(.seconds(5))
        case .endingStreams:
            logger.warning("workers did not finish in time; exiting")
            event_base_loopbreak(control)
        }
    }

    private func armShutdownTimer(_ span: TimeSpan) {
        guard let shutdownTimer else { return }
        var tv = timeval(tv_sec: span.milliseconds / 1000, tv_usec: (span.milliseconds % 1000) * 1000)
        event_add(shutdownTimer, &tv)
    }

    /// Called on a worker's thread when its loop has ended.
    private func workerStopped() {
        stoppedWorkers.withLock { $0 += 1 }
        if let workerStoppedEvent { event_active(workerStoppedEvent, Int32(EV_READ), 0) }
    }

    fileprivate func checkAllStopped() {
        if stoppedWorkers.withLock({ $0 }) == workers.count { event_base_loopbreak(control) }
    }

    // MARK: Admin

    var isDraining: Bool { shutdown != .running }

    /// Sums every worker's counters (each copies its own on its own thread).
    func collectMetrics() -> (MetricsSnapshot, workers: Int) {
        let reply = MetricsReply(workers: workers.count)
        for worker in workers { worker.send(.snapshot(reply)) }
        return (reply.wait(timeoutMs: 1000).total, workers.count)
    }

    // MARK: Helpers

    private static func settings(for config: Config, resolver: UpstreamResolver,
                                 known: [SocketAddressSpec: ResolvedAddress] = [:]) throws(ServerError) -> ProxySettings {
        var onFailure: (@Sendable () -> Void)?
        if config.upstreamResolve != nil { onFailure = { resolver.connectFailed() } }
        do {
            return try ProxySettings(config: config, known: known, onConnectFailure: onFailure)
        } catch {
            throw ServerError(error.description)
        }
    }

    // MARK: Upstream names that move

    private static func hostNames(in settings: ProxySettings) -> [SocketAddressSpec: NameResolution<AddressBytes>] {
        var names: [SocketAddressSpec: NameResolution<AddressBytes>] = [:]
        for (spec, address) in settings.upstreams where address.candidates != nil {
            names[spec] = NameResolution(addresses: address.addresses)
        }
        return names
    }

    /// `upstream_resolve: off` looks nothing up again (names resolve at start and reload only).
    private func watchNames() {
        resolver.watch(config.upstreamResolve == nil ? [] : Array(names.keys), interval: config.upstreamResolve)
    }

    /// On the control loop: lookups done by the resolver thread.
    fileprivate func applyResolved() {
        var moved = false
        for (spec, lookup) in resolvedInbox.take() {
            guard var name = names[spec] else { continue }  // from before a reload
            let outcome: NameResolution<AddressBytes>.Outcome
            var why = ""
            switch lookup {
            case .addresses(let addresses): outcome = name.resolved(addresses)
            case .failure(let failure):
                why = failure
                outcome = name.failed()
            }
            names[spec] = name
            let list = name.addresses.map(\.description).joined(separator: ", ")
            switch outcome {
            case .unchanged:
                break
            case .changed(_, let recovered):
                moved = true
                logger.notice("upstream \(spec)\(recovered ? " resolves again and" : "") now resolves to \(list)")
            case .recovered:
                logger.notice("upstream \(spec) resolves again, to the same addresses")
            case .keptAfterFailure(let firstFailure):
                if firstFailure { logger.warning("upstream \(spec): \(why); keeping its last addresses \(list)") }
            }
        }
        guard moved, shutdown == .running else { return }
        var known = settings.upstreams
        for (spec, name) in names {
            let onFailure: (@Sendable () -> Void)? = { [resolver] in resolver.connectFailed() }
            if let address = try? ResolvedAddress(spec, addresses: name.addresses, onConnectFailure: onFailure) {
                known[spec] = address
            }
        }
        do {
            settings = try Self.settings(for: config, resolver: resolver, known: known)
        } catch {
            logger.error("upstream addresses not applied: \(error)")
            return
        }
        for worker in workers { worker.send(.apply(settings, logger.logLevel)) }
    }

    private static func resolve(_ spec: SocketAddressSpec) throws(ServerError) -> ResolvedAddress {
        do { return try ResolvedAddress(spec) } catch { throw ServerError(error.description) }
    }

    static func workerCount(_ setting: WorkerCount) -> Int {
        switch setting {
        case .auto: return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        case .count(let n): return n
        }
    }
}

private func signalCallback(_ fd: Int32, _ events: Int16, _ context: UnsafeMutableRawPointer?) {
    Unmanaged<Server>.fromOpaque(context!).takeUnretainedValue().received(signal: fd)
}

private func workerStoppedCallback(_ fd: Int32, _ events: Int16, _ context: UnsafeMutableRawPointer?) {
    Unmanaged<Server>.fromOpaque(context!).takeUnretainedValue().checkAllStopped()
}

private func resolvedCallback(_ fd: Int32, _ events: Int16, _ context: UnsafeMutableRawPointer?) {
    Unmanaged<Server>.fromOpaque(context!).takeUnretainedValue().applyResolved()
}

/// Lookups from the resolver thread, waiting for the control loop.
final class ResolvedInbox: @unchecked Sendable {
    private let state = Mutex<(items: [(SocketAddressSpec, UpstreamResolver.Lookup)], event: OpaquePointer?)>(([], nil))

    /// The control-loop event to activate; nil (before freeing it) stops the deliveries.
    func setEvent(_ event: OpaquePointer?) {
        state.withLock { $0.event = event }
    }

    func post(_ results: [(SocketAddressSpec, UpstreamResolver.Lookup)]) {
        state.withLock { state in
            state.items.append(contentsOf: results)
            if let event = state.event { event_active(event, Int32(EV_READ), 0) }
        }
    }

    func take() -> [(SocketAddressSpec, UpstreamResolver.Lookup)] {
        state.withLock { state in
            defer { state.items.removeAll() }
            return state.items
        }
    }
}

private func shutdownTimerCallback(_ fd: Int32, _ events: Int16, _ context: UnsafeMutableRawPointer?) {
    Unmanaged<Server>.fromOpaque(context!).takeUnretainedValue().shutdownTimerFired()
}

/// libevent's internal messages, in our log format.
private let libeventLogger = Logger(label: "libevent")

private func libeventLogCallback(_ severity: Int32, _ message: UnsafePointer<CChar>?) {
    let text = message.map { String(cString: $0) } ?? ""
    switch severity {
    case EVENT_LOG_DEBUG: libeventLogger.debug("libevent: \(text)")
    case EVENT_LOG_MSG: libeventLogger.info("libevent: \(text)")
    case EVENT_LOG_WARN: libeventLogger.warning("libevent: \(text)")
    default: libeventLogger.error("libevent: \(text)")
    }
}

/// Where a SIGTERM/SIGINT shutdown stands; the shutdown timer moves it on.
private enum ShutdownStage {
    case running
    /// Not accepting; in-flight requests finish; event streams run until `shutdown.grace`.
    case draining
    /// Grace is over: event streams were told to end; a last few seconds for
    /// clients to read their final bytes, then exit regardless.
    case endingStreams
}
