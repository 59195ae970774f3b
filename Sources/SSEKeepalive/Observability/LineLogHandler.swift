#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging

/// A swift-log handler writing one line per event, through `LogSink`
/// (stderr by default, never blocking the caller on the fd).
///
/// `text`, level first:
/// `info 2026-11-26T14:00:00.123Z listening on 127.0.0.1:8080 key=value`
/// (metadata sorted by key).
///
/// `json`, one object per line, keys in this order: `ts`, `level`, `msg`,
/// then the metadata sorted by key:
/// `{"ts":"2026-11-26T14:00:00.123Z","level":"info","msg":"listening","key":"value"}`.
/// Metadata strings are JSON strings; `.stringConvertible` integers, finite
/// floating-point numbers and booleans are JSON numbers / booleans; arrays
/// and dictionaries nest. A metadata key named `ts`, `level` or `msg` is
/// written as `_ts`, `_level`, `_msg` (more `_` if that is taken too) so
/// keys stay unique.
public struct LineLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public let format: LogFormat
    private let label: String
    private let sink: LogSink

    public init(label: String, level: Logger.Level, format: LogFormat = .text, sink: LogSink = .shared) {
        self.label = label
        self.logLevel = level
        self.format = format
        self.sink = sink
    }

    /// `LoggingSystem.bootstrap` with this handler; also sets the sink's
    /// format for its own "dropped N log lines" notice. Once per process.
    public static func bootstrap(level: Logger.Level, format: LogFormat, sink: LogSink = .shared) {
        sink.format = format
        LoggingSystem.bootstrap { LineLogHandler(label: $0, level: level, format: format, sink: sink) }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let merged = event.metadata.map { metadata.merging($0) { $1 } } ?? metadata
        sink.write(Self.render(level: event.level, message: event.message.description, metadata: merged, format: format))
    }

    /// One complete line, newline included.
    public static func render(level: Logger.Level, message: String, metadata: Logger.Metadata,
                              format: LogFormat, timestamp: String = timestamp()) -> String {
        switch format {
        case .text:
            var line = level.rawValue
            line += " "
            line += timestamp
            line += " "
            line += message
            for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
                line += " \(key)=\(value)"
            }
            line += "\n"
            return line
        case .json:
            var line = "{\"ts\":"
            JSON.appendString(timestamp, to: &line)
            line += ",\"level\":"
            JSON.appendString(level.rawValue, to: &line)
            line += ",\"msg\":"
            JSON.appendString(message, to: &line)
            let renamed = metadata.map { entry in
                var key = entry.key
                if key == "ts" || key == "level" || key == "msg" {
                    repeat { key = "_" + key } while metadata[key] != nil
                }
                return (key: key, value: entry.value)
            }
            for (key, value) in renamed.sorted(by: { $0.key < $1.key }) {
                line += ","
                JSON.appendString(key, to: &line)
                line += ":"
                JSON.appendValue(value, to: &line)
            }
            line += "}\n"
            return line
        }
    }

    /// UTC, millisecond precision, without Foundation.
    public static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))."
            + "\(pad(Int32(now.tv_nsec / 1_000_000), 3))Z"
    }
}

extension LogLevelName {
    public var swiftLogLevel: Logger.Level {
        switch self {
        case .trace: return .trace
        case .debug: return .debug
        case .info: return .info
        case .notice: return .notice
        case .warning: return .warning
        case .error: return .error
        case .critical: return .critical
        }
    }
}

/// Minimal JSON writing, no Foundation.
public enum JSON {
    /// Appends `s` as a JSON string literal: `"` and `\\` escaped, control
    /// characters as `\n`, `\r`, `\t` or `\u00XX`, everything else (valid
    /// UTF-8, as every Swift string is) passed through.
    public static func appendString(_ s: String, to out: inout String) {
        out += "\""
        TextEscape.json.append(s, to: &out)
        out += "\""
    }

    public static func string(_ s: String) -> String {
        var out = ""
        appendString(s, to: &out)
        return out
    }

    /// A metadata value as JSON (see `LineLogHandler`).
    public static func appendValue(_ value: Logger.Metadata.Value, to out: inout String) {
        switch value {
        case .string(let s):
            appendString(s, to: &out)
        case .stringConvertible(let c):
            if let literal = numberLiteral(c) {
                out += literal
            } else {
                appendString(c.description, to: &out)
            }
        case .array(let values):
            out += "["
            for (i, v) in values.enumerated() {
                if i > 0 { out += "," }
                appendValue(v, to: &out)
            }
            out += "]"
        case .dictionary(let dict):
            out += "{"
            for (i, (k, v)) in dict.sorted(by: { $0.key < $1.key }).enumerated() {
                if i > 0 { out += "," }
                appendString(k, to: &out)
                out += ":"
                appendValue(v, to: &out)
            }
            out += "}"
        }
    }

    static func numberLiteral(_ c: any CustomStringConvertible) -> String? {
        switch c {
        case let b as Bool: return b ? "true" : "false"
        case let i as any BinaryInteger: return i.description
        case let d as Double: return d.isFinite ? d.description : nil
        case let f as Float: return f.isFinite ? f.description : nil
        default: return nil
        }
    }
}
