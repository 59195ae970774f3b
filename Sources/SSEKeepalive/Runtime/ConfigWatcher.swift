import CLibevent
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// `--watch` / `reload.watch`: inotify on the config file's directory (and on
/// the directory of the file a symlink leads to), read on the control loop;
/// a debounced change calls `onChange`, which reloads as SIGHUP does.
final class ConfigWatcher {
    private let path: String
    private let fd: Int32
    private var readEvent: OpaquePointer?
    private var timer: OpaquePointer?
    private var debounce: ReloadDebounce
    /// Watch descriptor -> what it watches.
    private var watches: [Int32: ConfigWatchTarget] = [:]
    private let logger: Logger
    private let onChange: () -> Void
    private var warnedOverflow = false

    private static let mask = UInt32(IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE
                                     | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

    init(path: String, base: OpaquePointer, logger: Logger, onChange: @escaping () -> Void) throws(ServerError) {
        self.path = path
        self.logger = logger
        self.onChange = onChange
        self.debounce = ReloadDebounce(loaded: Self.contents(of: path))
        fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else { throw ServerError("--watch: inotify: \(SocketErrors.describe(errno))") }
        let context = Unmanaged.passUnretained(self).toOpaque()
        readEvent = event_new(base, fd, Int16(EV_READ | EV_PERSIST), inotifyReadableCallback, context)
        timer = event_new(base, -1, 0, debounceTimerCallback, context)
        if let readEvent { event_add(readEvent, nil) }
        try updateWatches(initial: true)
        logger.info("watching \(path) for changes")
    }

    /// No more reloads from this watcher (it may be inside its own callback).
    func stop() {
        if let readEvent { event_del(readEvent) }
        if let timer { event_del(timer) }
    }

    deinit {
        if let readEvent { event_free(readEvent) }
        if let timer { event_free(timer) }
        close(fd)
    }

    /// Watches the directories that matter now (a symlink may lead elsewhere after a change).
    private func updateWatches(initial: Bool = false) throws(ServerError) {
        let wanted = ConfigWatchTarget.targets(path: path, resolved: Self.resolvedPath(path).flatMap { $0 == path ? nil : $0 })
        var kept: [Int32: ConfigWatchTarget] = [:]
        for target in wanted {
            let wd = inotify_add_watch(fd, target.directory, Self.mask)
            guard wd >= 0 else {
                let problem = "cannot watch \(target.directory): \(SocketErrors.describe(errno))"
                if initial { throw ServerError("--watch: \(problem)") }
                logger.warning("\(problem)")
                continue
            }
            // Two paths in one directory share one watch descriptor.
            kept[wd, default: ConfigWatchTarget(directory: target.directory, names: [])].names.formUnion(target.names)
        }
        for wd in watches.keys where kept[wd] == nil { inotify_rm_watch(fd, wd) }
        watches = kept
    }

    fileprivate func readable() {
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        var relevant = false
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { break }
            let records = buffer.withUnsafeBytes { InotifyRecord.parse(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
            for record in records {
                if record.mask & UInt32(IN_Q_OVERFLOW) != 0 {
                    // Events were lost: assume the file changed (the content check decides).
                    if !warnedOverflow { logger.warning("config watch: inotify queue overflowed") }
                    warnedOverflow = true
                    relevant = true
                } else if let target = watches[record.watch], record.name.isEmpty || target.names.contains(record.name) {
                    relevant = true
                }
            }
        }
        guard relevant else { return }
        let due = debounce.changed(atMs: Self.nowMs())
        arm(untilMs: due)
    }

    fileprivate func timerFired() {
        switch debounce.decide(atMs: Self.nowMs(), content: { Self.contents(of: path) }) {
        case .wait(let untilMs):
            arm(untilMs: untilMs)
        case .reload:
            logger.info("\(path) changed: reloading")
            onChange()
            do { try updateWatches() } catch { logger.warning("\(error)") }
        case .unchanged:
            logger.debug("\(path): changed on disk but its bytes are what was last loaded; no reload")
            do { try updateWatches() } catch { logger.warning("\(error)") }
        case .idle:
            break
        }
    }

    private func arm(untilMs: Int) {
        guard let timer else { return }
        let wait = max(0, untilMs - Self.nowMs())
        var tv = timeval(tv_sec: wait / 1000, tv_usec: (wait % 1000) * 1000)
        event_add(timer, &tv)
    }

    /// The file's bytes; nil if it cannot be read. Config files are small.
    private static func contents(of path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while bytes.count <= 16 << 20 {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { return nil }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return bytes
    }

    private static func nowMs() -> Int {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return now.tv_sec * 1000 + now.tv_nsec / 1_000_000
    }

    private static func resolvedPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}

private func inotifyReadableCallback(_ fd: Int32, _ events: Int16, _ context: UnsafeMutableRawPointer?) {
    Unmanaged<ConfigWatcher>.fromOpaque(context!).takeUnretainedValue().readable()
}

private func debounceTimerCallback(_ fd: Int32, _ events: Int16, _ context: UnsafeMutableRawPointer?) {
    Unmanaged<ConfigWatcher>.fromOpaque(context!).takeUnretainedValue().timerFired()
}
