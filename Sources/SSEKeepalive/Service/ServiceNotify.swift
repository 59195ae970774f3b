// The systemd notify protocol (sd_notify(3)) without libsystemd: where the
// datagrams go, what they say, and in which order. The socket itself is in
// Runtime/SystemdNotifier.swift.

/// The socket named by `NOTIFY_SOCKET`: a file-system path, or `@name` for a
/// Linux abstract socket.
public enum NotifySocketAddress: Equatable, Sendable, CustomStringConvertible {
    case path(String)
    /// The name without its leading `@` (sent as a leading NUL byte).
    case abstract(String)

    /// Room in `sockaddr_un.sun_path` on Linux.
    public static let sunPathCapacity = 108

    public struct Unsupported: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    /// nil when the variable is unset or empty (not run by systemd).
    public static func parse(_ value: String?) throws(Unsupported) -> NotifySocketAddress? {
        guard let value, !value.isEmpty else { return nil }
        let address: NotifySocketAddress
        if value.hasPrefix("@") {
            address = .abstract(String(value.dropFirst()))
        } else if value.hasPrefix("/") {
            address = .path(value)
        } else {
            // systemd also knows vsock: addresses (virtual machines); a sidecar never gets those.
            throw Unsupported(description: "NOTIFY_SOCKET=\(value): only an absolute path or an @abstract name is supported")
        }
        guard address.sunPath.count <= sunPathCapacity else {
            throw Unsupported(description: "NOTIFY_SOCKET=\(value): longer than a unix socket address allows")
        }
        return address
    }

    /// The bytes for `sun_path`: a NUL-terminated path, or a NUL and the
    /// abstract name (no terminator: every byte counts in the name).
    public var sunPath: [UInt8] {
        switch self {
        case .path(let path): return Array(path.utf8) + [0]
        case .abstract(let name): return [0] + Array(name.utf8)
        }
    }

    public var description: String {
        switch self {
        case .path(let path): return path
        case .abstract(let name): return "@" + name
        }
    }
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3) advises.
public enum WatchdogInterval {
    /// nil when no watchdog is asked for, or it is meant for another process (`WATCHDOG_PID`).
    public static func ping(usec: String?, pid: String?, ownPID: Int32) -> TimeSpan? {
        if let pid, !pid.isEmpty {
            guard let target = Int32(pid), target == ownPID else { return nil }
        }
        guard let usec, let value = UInt64(usec), value > 0 else { return nil }
        // Round down, but never below 1 ms (a timer of 0 would spin).
        return TimeSpan(milliseconds: max(1, Int(min(value / 2_000, UInt64(Int32.max)))))
    }
}

/// What the service manager is told, in protocol order: `READY=1` once the
/// listeners are open; `RELOADING=1` then `READY=1` around every reload
/// (the second also when the new file was rejected: the old config still
/// serves); `STOPPING=1` once when draining begins; nothing after that but
/// watchdog pings.
public struct ServiceNotifications: Sendable {
    public enum Phase: Equatable, Sendable {
        case starting, ready, reloading, stopping
    }

    public private(set) var phase: Phase = .starting

    public init() {}

    /// The listeners are open and the workers run.
    public mutating func listenersOpen() -> String? {
        guard phase == .starting else { return nil }
        phase = .ready
        return "READY=1"
    }

    /// A reload starts. `monotonicMicroseconds` is CLOCK_MONOTONIC now: systemd
    /// 253 and later match it against the reload they asked for.
    public mutating func reloadBegins(monotonicMicroseconds: UInt64) -> String? {
        guard phase == .ready else { return nil }
        phase = .reloading
        return "RELOADING=1\nMONOTONIC_USEC=\(monotonicMicroseconds)"
    }

    /// The reload is over; `rejected` names why the new file was not taken.
    public mutating func reloadEnds(rejected: String? = nil) -> String? {
        guard phase == .reloading else { return nil }
        phase = .ready
        guard let rejected else { return "READY=1\nSTATUS=configuration reloaded" }
        return "READY=1\nSTATUS=reload rejected, the running configuration stays: \(Self.oneLine(rejected))"
    }

    public mutating func drainBegins() -> String? {
        guard phase != .stopping else { return nil }
        phase = .stopping
        return "STOPPING=1"
    }

    /// Watchdog pings go out in every phase: a long drain is still alive.
    public func watchdog() -> String { "WATCHDOG=1" }

    /// A STATUS value must stay on one line (the protocol is newline-separated).
    static func oneLine(_ text: String) -> String {
        String(text.map { $0 == "\n" || $0 == "\r" ? " " : $0 })
    }
}
