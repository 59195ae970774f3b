import CLibevent
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Sends sd_notify datagrams to `NOTIFY_SOCKET` and the watchdog pings on a
/// timer of the control loop (so a stuck control loop stops the pings and
/// systemd restarts the service). Without `NOTIFY_SOCKET` it does nothing.
final class SystemdNotifier {
    private var fd: Int32 = -1
    private var address = sockaddr_un()
    private var addressLength: socklen_t = 0
    private var lifecycle = ServiceNotifications()
    private var watchdogEvent: OpaquePointer?
    private let logger: Logger
    private var warnedSendFailure = false

    init(base: OpaquePointer, logger: Logger) {
        self.logger = logger
        let target: NotifySocketAddress?
        do {
            target = try NotifySocketAddress.parse(Self.environment("NOTIFY_SOCKET"))
        } catch {
            logger.warning("systemd notifications off: \(error)")
            return
        }
        guard let target else { return }
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            logger.warning("systemd notifications off: socket: \(SocketErrors.describe(errno))")
            return
        }
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = target.sunPath
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        addressLength = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count)
        logger.debug("systemd notifications to \(target)")

        if let ping = WatchdogInterval.ping(usec: Self.environment("WATCHDOG_USEC"), pid: Self.environment("WATCHDOG_PID"),
                                            ownPID: getpid()) {
            let context = Unmanaged.passUnretained(self).toOpaque()
            watchdogEvent = event_new(base, -1, Int16(EV_PERSIST), watchdogCallback, context)
            var tv = timeval(tv_sec: ping.milliseconds / 1000, tv_usec: (ping.milliseconds % 1000) * 1000)
            if let watchdogEvent { event_add(watchdogEvent, &tv) }
            logger.debug("systemd watchdog ping every \(ping)")
        }
    }

    deinit {
        if let watchdogEvent { event_free(watchdogEvent) }
        if fd >= 0 { close(fd) }
    }

    func listenersOpen() { send(lifecycle.listenersOpen()) }

    func reloadBegins() {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        send(lifecycle.reloadBegins(monotonicMicroseconds: UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000))
    }

    func reloadEnds(rejected: String?) { send(lifecycle.reloadEnds(rejected: rejected)) }

    func drainBegins() { send(lifecycle.drainBegins()) }

    fileprivate func watchdogDue() { send(lifecycle.watchdog()) }

    private func send(_ message: String?) {
        guard fd >= 0, let message else { return }
        let sent = message.utf8CString.withUnsafeBufferPointer { text in
            withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    // Never block the loop on a service manager that does not read.
                    sendto(fd, text.baseAddress, text.count - 1, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL), $0, addressLength)
                }
            }
        }
        if sent < 0 && !warnedSendFailure {
            warnedSendFailure = true
            logger.warning("systemd notification not sent: \(SocketErrors.describe(errno))")
        }
    }

    private static func environment(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }
}

private func watchdogCallback(_ fd: Int32, _ events: Int16, _ context: UnsafeMutableRawPointer?) {
    Unmanaged<SystemdNotifier>.fromOpaque(context!).takeUnretainedValue().watchdogDue()
}
