// Reload-on-change decisions: which directory entries concern the config
// file, how a burst of changes becomes one reload, and how inotify's byte
// stream reads. The inotify descriptor and the timer are in
// Runtime/ConfigWatcher.swift.

/// A directory to watch and the entry names in it that concern the config.
///
/// Watching the directory (not the file) sees every way a file gets
/// replaced: an editor's write-then-rename, `mv` over it, and a Kubernetes
/// ConfigMap update, which swaps the `..data` symlink that the file name
/// points through.
public struct ConfigWatchTarget: Equatable, Hashable, Sendable {
    public var directory: String
    public var names: Set<String>

    /// Kubernetes' atomic writer renames a fresh `..data` symlink over the old one.
    public static let configMapSwitch = "..data"

    /// For `path`, and for `resolved` (the file the path finally points to, if
    /// it lives elsewhere: a symlink into another directory is edited there).
    public static func targets(path: String, resolved: String?) -> [ConfigWatchTarget] {
        var byDirectory: [String: Set<String>] = [:]
        var order: [String] = []
        for file in [path] + (resolved.map { [$0] } ?? []) {
            let (directory, name) = split(file)
            if byDirectory[directory] == nil { order.append(directory) }
            byDirectory[directory, default: []].formUnion([name, configMapSwitch])
        }
        return order.map { ConfigWatchTarget(directory: $0, names: byDirectory[$0]!) }
    }

    /// ("dir", "name"); a bare name lives in ".".
    static func split(_ path: String) -> (String, String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let directory = String(path[..<slash])
        return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
    }
}

/// Turns a burst of file events into one reload: the reload waits until the
/// directory has been quiet for `quiet`, but never longer than `maxDelay`
/// after the first event (a file rewritten non-stop still gets reloaded).
/// A file whose bytes are what was last loaded is not reloaded (Kubernetes
/// swaps `..data` when any key of the ConfigMap changes, not only ours).
public struct ReloadDebounce: Sendable {
    public enum Decision: Equatable, Sendable {
        /// Ask again at this time (milliseconds, same clock as the calls).
        case wait(untilMs: Int)
        case reload
        /// Quiet again and the bytes are unchanged.
        case unchanged
        /// No change pending.
        case idle
    }

    public let quietMs: Int
    public let maxDelayMs: Int
    private var firstEventMs: Int?
    private var lastEventMs: Int?
    private var loaded: [UInt8]?

    /// `loaded`: the file's bytes at start (nil: unreadable).
    public init(quietMs: Int = 200, maxDelayMs: Int = 2000, loaded: [UInt8]?) {
        self.quietMs = quietMs
        self.maxDelayMs = maxDelayMs
        self.loaded = loaded
    }

    /// An event concerning the file; returns when to ask `decide`.
    public mutating func changed(atMs now: Int) -> Int {
        if firstEventMs == nil { firstEventMs = now }
        lastEventMs = now
        return dueMs!
    }

    public var pending: Bool { firstEventMs != nil }

    private var dueMs: Int? {
        guard let firstEventMs, let lastEventMs else { return nil }
        return min(lastEventMs + quietMs, firstEventMs + maxDelayMs)
    }

    /// At the due time: `content` is the file's bytes now (nil: unreadable,
    /// which reloads so that the error is reported).
    public mutating func decide(atMs now: Int, content: () -> [UInt8]?) -> Decision {
        guard let due = dueMs else { return .idle }
        guard now >= due else { return .wait(untilMs: due) }
        firstEventMs = nil
        lastEventMs = nil
        let bytes = content()
        if bytes == loaded { return .unchanged }
        loaded = bytes
        return .reload
    }
}

/// One record of an inotify read.
public struct InotifyRecord: Equatable, Sendable {
    public var watch: Int32
    public var mask: UInt32
    /// Empty for events on the watched directory itself.
    public var name: String

    /// Splits what read(2) returned from an inotify descriptor: a header of
    /// wd, mask, cookie, len (4 bytes each, host order), then `len` bytes of
    /// NUL-padded name. A truncated record ends the list.
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> [InotifyRecord] {
        var records: [InotifyRecord] = []
        var offset = 0
        let header = 16
        while offset + header <= bytes.count {
            let watch = bytes.loadUnaligned(fromByteOffset: offset, as: Int32.self)
            let mask = bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
            let length = Int(bytes.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
            guard offset + header + length <= bytes.count else { break }
            let nameBytes = bytes[(offset + header)..<(offset + header + length)].prefix { $0 != 0 }
            records.append(InotifyRecord(watch: watch, mask: mask, name: String(decoding: nameBytes, as: UTF8.self)))
            offset += header + length
        }
        return records
    }
}
