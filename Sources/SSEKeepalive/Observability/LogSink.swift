#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where log lines go: a bounded in-memory queue drained by one background
/// writer thread, so that a slow or blocked stderr never blocks an event loop.
///
/// `write(_:)` only takes a mutex and appends. When `capacity` bytes are
/// already waiting, further lines are dropped and counted; once the writer
/// has made room, one `dropped N log lines` warning (in the sink's `format`)
/// takes their place in the output. A single line larger than the capacity
/// is still accepted when the queue is empty. Lines from one thread come out
/// in the order they were written; lines are never interleaved mid-line.
///
/// `LogSink.shared` writes to stderr (fd 2) and flushes itself at `exit()`;
/// call `flush()` before leaving by other ways.
public final class LogSink: @unchecked Sendable {
    public static let defaultCapacity = 1 << 20

    /// The process-wide sink on stderr. Its first use registers an `atexit`
    /// flush (2 s at most).
    public static let shared: LogSink = {
        let sink = LogSink(fd: 2)
        atexit { _ = LogSink.shared.flush(timeoutMilliseconds: 2000) }
        return sink
    }()

    public let fd: Int32
    public let capacity: Int

    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    /// Signalled when there is something for the writer.
    private let work: UnsafeMutablePointer<pthread_cond_t>
    /// Broadcast after every batch written.
    private let progress: UnsafeMutablePointer<pthread_cond_t>

    // All below guarded by `mutex`.
    private var queue: [[UInt8]] = []
    private var queuedBytes = 0
    private var pendingDrops = 0
    private var totalDrops = 0
    /// Number of lines (and notices) accepted so far / written so far.
    private var accepted = 0
    private var written = 0
    private var started = false
    private var stopping = false
    private var stopped = false
    private var noticeFormat: LogFormat = .text
    #if canImport(Darwin)
    private var thread: pthread_t? = nil
    #else
    private var thread = pthread_t()
    #endif

    /// A sink writing to `fd` (not closed by the sink). The writer thread
    /// starts with the first line.
    public init(fd: Int32, capacity: Int = LogSink.defaultCapacity) {
        self.fd = fd
        self.capacity = capacity
        mutex = .allocate(capacity: 1)
        work = .allocate(capacity: 1)
        progress = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(work, nil)
        pthread_cond_init(progress, nil)
    }

    deinit {
        // Only reached when the writer thread never started or has stopped
        // (a running writer holds a reference).
        pthread_cond_destroy(progress)
        pthread_cond_destroy(work)
        pthread_mutex_destroy(mutex)
        progress.deallocate()
        work.deallocate()
        mutex.deallocate()
    }

    /// The format of the sink's own `dropped N log lines` notice.
    public var format: LogFormat {
        get { locked { noticeFormat } }
        set { locked { noticeFormat = newValue } }
    }

    /// Lines dropped since the start because the queue was full.
    public var droppedLines: Int { locked { totalDrops } }

    /// Queues `line` (which should end with "\n"). Never blocks on the fd.
    public func write(_ line: String) {
        write(bytes: Array(line.utf8))
    }

    public func write(bytes line: [UInt8]) {
        pthread_mutex_lock(mutex)
        if !started && !stopped { startWriter() }
        if stopped && !stopping {
            // No writer thread could be started: write synchronously.
            pthread_mutex_unlock(mutex)
            writeAll([line])
            return
        }
        defer { pthread_mutex_unlock(mutex) }
        if stopping { return }
        guard queuedBytes == 0 || queuedBytes + line.count <= capacity else {
            pendingDrops += 1
            totalDrops += 1
            return
        }
        queueDropNotice()
        queue.append(line)
        queuedBytes += line.count
        accepted += 1
        pthread_cond_signal(work)
    }

    /// Waits until every line accepted before the call is written (a pending
    /// drop notice included). Returns false if that did not happen within the
    /// timeout (a blocked fd); the lines stay queued.
    @discardableResult
    public func flush(timeoutMilliseconds: Int = 5000) -> Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        if !started || stopped {
            // Nothing can be waiting (no writer ever ran), or nobody is left to write.
            return queue.isEmpty
        }
        queueDropNotice()
        let target = accepted
        pthread_cond_signal(work)
        let deadline = Self.deadline(afterMilliseconds: timeoutMilliseconds)
        while written < target {
            var d = deadline
            if pthread_cond_timedwait(progress, mutex, &d) == ETIMEDOUT, written < target { return false }
        }
        return true
    }

    /// Flushes, then ends the writer thread; later lines are discarded.
    /// For tests and orderly shutdown of non-shared sinks.
    public func stop(timeoutMilliseconds: Int = 5000) {
        flush(timeoutMilliseconds: timeoutMilliseconds)
        pthread_mutex_lock(mutex)
        let join = started && !stopping
        stopping = true
        pthread_cond_signal(work)
        let thread = self.thread
        pthread_mutex_unlock(mutex)
        if join, written == accepted { pthread_join(thread, nil) }
    }

    // MARK: - Writer

    /// Caller holds the mutex.
    private func queueDropNotice() {
        guard pendingDrops > 0 else { return }
        let notice = LineLogHandler.render(level: .warning, message: "dropped \(pendingDrops) log lines",
                                           metadata: [:], format: noticeFormat)
        pendingDrops = 0
        let bytes = Array(notice.utf8)
        queue.append(bytes)
        queuedBytes += bytes.count
        accepted += 1
    }

    /// Caller holds the mutex.
    private func startWriter() {
        started = true
        let arg = Unmanaged.passRetained(self).toOpaque()
        #if canImport(Darwin)
        let rc = pthread_create(&thread, nil, { raw in
            Unmanaged<LogSink>.fromOpaque(raw).takeRetainedValue().runWriter()
            return nil
        }, arg)
        #else
        let rc = pthread_create(&thread, nil, { raw in
            Unmanaged<LogSink>.fromOpaque(raw!).takeRetainedValue().runWriter()
            return nil
        }, arg)
        #endif
        if rc != 0 {
            // No thread: degrade to writing synchronously, never to losing lines silently.
            Unmanaged<LogSink>.fromOpaque(arg).release()
            started = false
            stopped = true
        }
    }

    private func runWriter() {
        pthread_mutex_lock(mutex)
        while true {
            while queue.isEmpty && pendingDrops == 0 && !stopping {
                pthread_cond_wait(work, mutex)
            }
            if queue.isEmpty && pendingDrops == 0 && stopping { break }
            var batch = queue
            queue = []
            queuedBytes = 0
            if pendingDrops > 0 {
                // Lines were dropped after everything in this batch; the room
                // is back now, so the notice goes right after it.
                queueDropNotice()
                batch += queue
                queue = []
                queuedBytes = 0
            }
            let upTo = accepted
            pthread_mutex_unlock(mutex)
            writeAll(batch)
            pthread_mutex_lock(mutex)
            written = upTo
            pthread_cond_broadcast(progress)
        }
        stopped = true
        pthread_cond_broadcast(progress)
        pthread_mutex_unlock(mutex)
    }

    private func writeAll(_ batch: [[UInt8]]) {
        var buffer = [UInt8]()
        buffer.reserveCapacity(batch.reduce(0) { $0 + $1.count })
        for line in batch { buffer += line }
        buffer.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            var offset = 0
            while offset < raw.count {
                let n = Glibc_write(fd, base + offset, raw.count - offset)
                if n > 0 { offset += n; continue }
                let e = errno
                if n < 0 && e == EINTR { continue }
                if n < 0 && (e == EAGAIN || e == EWOULDBLOCK) {
                    var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&p, 1, 1000)
                    continue
                }
                return  // EPIPE, EBADF, ...: nowhere to write this batch
            }
        }
    }

    // MARK: - Helpers

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    private static func deadline(afterMilliseconds ms: Int) -> timespec {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let total = Int(now.tv_nsec) + (ms % 1000) * 1_000_000
        now.tv_sec += ms / 1000 + total / 1_000_000_000
        now.tv_nsec = .init(total % 1_000_000_000)
        return now
    }
}

@inline(__always)
private func Glibc_write(_ fd: Int32, _ buf: UnsafeRawPointer, _ count: Int) -> Int {
    write(fd, buf, count)
}
