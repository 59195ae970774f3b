// Reference SSE parsers for the tests (not used by the product).
//
// WHATWGEventParser follows WHATWG HTML "Server-sent events", section 9.2.6
// "Interpreting an event stream", over a complete byte stream:
// - UTF-8 decode with U+FFFD replacement; one leading U+FEFF (BOM) is
//   stripped only at the start of the stream;
// - lines end with CRLF, LF or CR; an unterminated last line is never
//   processed;
// - empty line: dispatch; ":" line: comment; "name:value" with one leading
//   space of the value removed; a line without ":" is a field with an empty
//   value;
// - fields: event, data (value + LF appended), id (ignored if it contains
//   NUL), retry (only ASCII digits); others ignored;
// - dispatch: the last event ID string takes the id buffer; an empty data
//   buffer dispatches nothing (and resets the type); a trailing LF is
//   removed from data; the type defaults to "message";
// - at end of stream a pending (incomplete) event is discarded.
//
// HTTPXStyleEventParser models httpx-sse 0.4's SSEDecoder: same lines and
// fields, but at every blank line it dispatches an event if *any* of event,
// data, last event id or retry is set; the last event id is never reset, so
// once an id has been seen every blank line dispatches (possibly an empty
// "message"). That is why `heartbeat.blank_line: false` exists.

struct SSEEvent: Equatable, CustomStringConvertible {
    var type: String
    var data: String
    var lastEventId: String
    var retry: Int? = nil   // only the httpx-style parser reports retry per event

    var description: String {
        "Event(\(type.debugDescription), \(data.debugDescription), id: \(lastEventId.debugDescription)\(retry.map { ", retry: \($0)" } ?? ""))"
    }
}

/// The observable result of parsing a whole stream.
struct SSEParseResult: Equatable {
    var events: [SSEEvent] = []
    var lastEventId: String = ""
    var reconnectionTime: Int? = nil
}

/// Splits a decoded stream into terminated lines (CRLF, LF or CR).
/// The unterminated tail, if any, is dropped (it is never processed).
func sseLines(_ bytes: [UInt8], stripBOM: Bool = true) -> [String] {
    var scalars = Array(String(decoding: bytes, as: UTF8.self).unicodeScalars)
    if stripBOM, scalars.first == "\u{FEFF}" { scalars.removeFirst() }
    var lines: [String] = []
    var current = String.UnicodeScalarView()
    var i = 0
    while i < scalars.count {
        let c = scalars[i]
        if c == "\r" || c == "\n" {
            lines.append(String(current))
            current = String.UnicodeScalarView()
            if c == "\r", i + 1 < scalars.count, scalars[i + 1] == "\n" { i += 1 }
        } else {
            current.append(c)
        }
        i += 1
    }
    return lines
}

/// Splits a line into (field name, value) per the spec; nil for a comment.
func sseField(_ line: String) -> (name: String, value: String)? {
    let s = line.unicodeScalars
    if s.first == ":" { return nil }
    guard let colon = s.firstIndex(of: ":") else { return (line, "") }
    let name = String(s[s.startIndex..<colon])
    var value = s[s.index(after: colon)...]
    if value.first == " " { value = value.dropFirst() }
    return (name, String(value))
}

func isASCIIDigits(_ s: String) -> Bool {
    !s.isEmpty && s.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
}

enum WHATWGEventParser {
    static func parse(_ bytes: [UInt8]) -> [SSEEvent] { parseAll(bytes).events }

    static func parseAll(_ bytes: [UInt8]) -> SSEParseResult {
        var result = SSEParseResult()
        var data = ""
        var type = ""
        var idBuffer = ""
        for line in sseLines(bytes) {
            if line.isEmpty {
                // Dispatch.
                result.lastEventId = idBuffer
                if data.isEmpty {
                    type = ""
                    continue
                }
                if data.unicodeScalars.last == "\n" { data.unicodeScalars.removeLast() }
                result.events.append(SSEEvent(type: type.isEmpty ? "message" : type,
                                              data: data, lastEventId: result.lastEventId))
                data = ""
                type = ""
                continue
            }
            guard let (name, value) = sseField(line) else { continue }
            switch name {
            case "event": type = value
            case "data": data += value + "\n"
            case "id": if !value.unicodeScalars.contains("\0") { idBuffer = value }
            case "retry": if isASCIIDigits(value) { result.reconnectionTime = Int(value) ?? Int.max }
            default: break
            }
        }
        return result
    }
}

enum HTTPXStyleEventParser {
    static func parse(_ bytes: [UInt8]) -> [SSEEvent] { parseAll(bytes).events }

    static func parseAll(_ bytes: [UInt8]) -> SSEParseResult {
        var result = SSEParseResult()
        var event = ""
        var data: [String] = []
        var lastEventId = ""
        var retry: Int? = nil
        for line in sseLines(bytes) {
            if line.isEmpty {
                if event.isEmpty && data.isEmpty && lastEventId.isEmpty && retry == nil { continue }
                result.events.append(SSEEvent(type: event.isEmpty ? "message" : event,
                                              data: data.joined(separator: "\n"),
                                              lastEventId: lastEventId, retry: retry))
                event = ""
                data = []
                retry = nil
                continue
            }
            guard let (name, value) = sseField(line) else { continue }
            switch name {
            case "event": event = value
            case "data": data.append(value)
            case "id": if !value.unicodeScalars.contains("\0") { lastEventId = value }
            case "retry": if let n = Int(value) { retry = n }
            default: break
            }
        }
        result.lastEventId = lastEventId
        result.reconnectionTime = retry
        return result
    }
}
