/// Probe times are nanoseconds since the probe started (CLOCK_MONOTONIC).
public typealias ProbeTime = Int64

/// An event or a comment as the probe saw it, with when it completed.
public struct ProbeMessage: Equatable, Sendable {
    public enum Kind: String, Sendable { case event, comment }

    public var kind: Kind
    /// When the line that completed it arrived: the blank line that
    /// dispatched an event, the end of a comment line.
    public var time: ProbeTime
    /// Event type ("message" unless `event:` set it); empty for comments.
    public var type: String
    /// The `id:` field of this event's own block (not the inherited last id).
    public var id: String?
    /// Data (lines joined with LF) or comment text, cut to `previewLimit` bytes.
    public var text: String
    /// Full size in bytes of the data or comment text.
    public var size: Int
    /// Numbers found in the id and data, for telling send time (see ProbeBuffering).
    public var numbers: [ProbeNumber]

    public init(kind: Kind, time: ProbeTime, type: String = "", id: String? = nil, text: String = "",
                size: Int? = nil, numbers: [ProbeNumber] = []) {
        self.kind = kind
        self.time = time
        self.type = type
        self.id = id
        self.text = text
        self.size = size ?? text.utf8.count
        self.numbers = numbers
    }

    public static let previewLimit = 200
}

/// Incremental event-stream parser (HTML Living Standard 9.2.6, as
/// EventSource does it): lines end at CRLF, LF or a lone CR, even when the
/// CR and LF of a CRLF come in different reads; a leading UTF-8 BOM is
/// skipped. It records events and comments, and reports `retry:`.
/// Memory is bounded: only the first `keepLimit` bytes of a line or of an
/// event's data are kept (the rest is counted).
public struct ProbeEventParser: Sendable {
    public enum Item: Equatable, Sendable {
        case event(ProbeMessage)
        case comment(ProbeMessage)
        /// A valid `retry:` field, in milliseconds.
        case retry(Int, ProbeTime)
    }

    public static let keepLimit = 4096

    private var line: [UInt8] = []
    private var lineSize = 0
    private var afterCR = false
    private var bomMatched = 0
    private var bomDone = false

    private var data: [UInt8] = []
    private var dataSize = 0
    private var sawData = false
    private var eventType = ""
    private var blockID: String? = nil
    /// The stream's last event ID (persists across events, as in EventSource).
    public private(set) var lastEventID = ""

    public init() {}

    private static let bom: [UInt8] = [0xEF, 0xBB, 0xBF]

    public mutating func feed(_ bytes: UnsafeRawBufferPointer, at time: ProbeTime) -> [Item] {
        var items: [Item] = []
        for b in bytes { byte(b, time, &items) }
        return items
    }

    public mutating func feed(_ bytes: [UInt8], at time: ProbeTime) -> [Item] {
        bytes.withUnsafeBytes { feed($0, at: time) }
    }

    private mutating func byte(_ b: UInt8, _ time: ProbeTime, _ items: inout [Item]) {
        if !bomDone {
            if b == Self.bom[bomMatched] {
                bomMatched += 1
                if bomMatched == 3 { bomDone = true }
                return
            }
            bomDone = true
            // Not a BOM after all: the held bytes are ordinary line bytes.
            let held = Self.bom.prefix(bomMatched)
            bomMatched = 0
            for h in held { byte(h, time, &items) }
        }
        if afterCR {
            afterCR = false
            if b == HTTPBytes.lf { return }
        }
        switch b {
        case HTTPBytes.cr:
            afterCR = true
            endLine(time, &items)
        case HTTPBytes.lf:
            endLine(time, &items)
        default:
            lineSize += 1
            if line.count < Self.keepLimit { line.append(b) }
        }
    }

    private mutating func endLine(_ time: ProbeTime, _ items: inout [Item]) {
        defer {
            line.removeAll(keepingCapacity: true)
            lineSize = 0
        }
        if lineSize == 0 {
            dispatch(time, &items)
            return
        }
        if line[0] == HTTPBytes.colon {
            let text = Array(line.dropFirst().prefix(ProbeMessage.previewLimit))
            items.append(.comment(ProbeMessage(kind: .comment, time: time, text: String(decoding: text, as: UTF8.self),
                                               size: lineSize - 1)))
            return
        }
        let colon = line.firstIndex(of: HTTPBytes.colon)
        let name = colon.map { line[..<$0] } ?? line[...]
        var value = colon.map { line[($0 + 1)...] } ?? []
        var valueSize = colon.map { lineSize - $0 - 1 } ?? 0
        if value.first == HTTPBytes.sp {
            value = value.dropFirst()
            valueSize -= 1
        }
        switch String(decoding: name, as: UTF8.self) {
        case "event":
            eventType = String(decoding: value, as: UTF8.self)
        case "data":
            if sawData { appendData(HTTPBytes.lf) }
            sawData = true
            for v in value { appendData(v) }
            dataSize += valueSize - value.count // bytes of the line beyond keepLimit
        case "id":
            if !value.contains(0) {
                let id = String(decoding: value, as: UTF8.self)
                lastEventID = id
                blockID = id
            }
        case "retry":
            if !value.isEmpty, value.allSatisfy(HTTPBytes.isDigit), value.count <= 15,
               let ms = Int(String(decoding: value, as: UTF8.self)) {
                items.append(.retry(ms, time))
            }
        default:
            break
        }
    }

    private mutating func appendData(_ b: UInt8) {
        dataSize += 1
        if data.count < Self.keepLimit { data.append(b) }
    }

    private mutating func dispatch(_ time: ProbeTime, _ items: inout [Item]) {
        defer {
            data.removeAll(keepingCapacity: true)
            dataSize = 0
            sawData = false
            eventType = ""
            blockID = nil
        }
        // No data field: nothing is dispatched (the id still sticks).
        guard sawData else { return }
        var numbers = ProbeNumber.scan(Array((blockID ?? "").utf8), source: .id)
        numbers += ProbeNumber.scan(data, source: .data)
        let preview = String(decoding: data.prefix(ProbeMessage.previewLimit), as: UTF8.self)
        items.append(.event(ProbeMessage(kind: .event, time: time, type: eventType.isEmpty ? "message" : eventType,
                                         id: blockID, text: preview, size: dataSize, numbers: numbers)))
    }
}
