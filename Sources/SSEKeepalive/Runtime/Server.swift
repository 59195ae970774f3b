import CLibevent
import Logging

/// The running proxy: workers, listeners and signal handling.
public final class Server: @unchecked Sendable {
    private let worker: Worker
    private var signalEvents: [OpaquePointer] = []
    private let logger: Logger

    public init(config: Config, logger: Logger) throws(ServerError) {
        sse_ignore_sigpipe()
        evthread_use_pthreads()
        self.logger = logger
        let settings: ProxySettings
        do {
            settings = try ProxySettings(config: config)
        } catch {
            throw ServerError(error.description)
        }
        worker = try Worker(settings: settings, logger: logger)
        for spec in config.listen {
            let address: ResolvedAddress
            do { address = try ResolvedAddress(spec) } catch { throw ServerError(error.description) }
            try worker.listen(on: address)
        }
    }

    deinit {
        for event in signalEvents { event_free(event) }
    }

    /// Runs until SIGTERM or SIGINT; returns the exit status.
    public func run() -> Int32 {
        let context = Unmanaged.passUnretained(self).toOpaque()
        for number in [SIGTERM, SIGINT] {
            if let event = event_new(worker.base, number, Int16(EV_SIGNAL | EV_PERSIST), signalCallback, context) {
                event_add(event, nil)
                signalEvents.append(event)
            }
        }
        worker.run()
        logger.info("stopped")
        return 0
    }

    fileprivate func received(signal number: Int32) {
        logger.notice("signal \(number) received, stopping")
        worker.stop()
    }
}

private func signalCallback(_ fd: Int32, _ events: Int16, _ context: UnsafeMutableRawPointer?) {
    Unmanaged<Server>.fromOpaque(context!).takeUnretainedValue().received(signal: fd)
}
