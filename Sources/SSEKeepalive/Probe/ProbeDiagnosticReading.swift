/// What a probe learns from the sidecar's diagnostic stream (see
/// DiagnosticScript): the events say when they were scheduled, how big they
/// are and which silence follows, so the arrivals give the path's buffering
/// threshold and bracket its idle timeout.
public struct ProbeDiagnosticReading: Equatable, Sendable {
    /// One `probe-size` event: scheduled send time (ms after the head),
    /// payload bytes sent up to and including it, and its arrival.
    public struct SizeSample: Equatable, Sendable {
        public var scheduledMs: Int
        public var total: Int
        public var arrival: ProbeTime
    }

    public var sizes: [SizeSample]
    /// Silences announced (ms), in order, and how many of them the stream survived.
    public var silences: [Int]
    public var survivedSilences: Int
    public var reachedEnd: Bool
    /// Payload bytes needed before anything reached the client; nil when
    /// nothing was held. `thresholdAbove` is set instead when even the
    /// largest total was held.
    public var bufferingThreshold: Int? = nil
    public var thresholdAbove: Int? = nil

    /// Held this much longer than the least-delayed event counts as held.
    public static let heldTolerance: ProbeTime = 150_000_000
    /// How far after a send a flush it caused may arrive.
    public static let flushTolerance: ProbeTime = 50_000_000

    /// nil when the stream is not a diagnostic stream.
    public init?(_ record: ProbeRecord) {
        let messages = record.messages.filter { $0.kind == .event && $0.type.hasPrefix("probe-") }
        guard !messages.isEmpty, record.messages.first(where: { $0.kind == .event })?.type.hasPrefix("probe-") == true else { return nil }
        sizes = messages.filter { $0.type == "probe-size" }.compactMap { m in
            guard let at = Self.field("at_ms", m.text), let total = Self.field("total", m.text) else { return nil }
            return SizeSample(scheduledMs: at, total: total, arrival: m.time)
        }
        let silenceEvents = messages.filter { $0.type == "probe-silence" }
        silences = silenceEvents.compactMap { Self.field("silence_ms", $0.text) }
        reachedEnd = messages.contains { $0.type == "probe-end" }
        // A silence was survived when anything came after its announcement.
        let all = record.messages
        let lastIndex = all.lastIndex { $0.kind == .event && $0.type == "probe-silence" }
        let announced = silenceEvents.count
        survivedSilences = lastIndex.map { $0 < all.count - 1 ? announced : announced - 1 } ?? 0

        // The sender's clock as seen here: the least delayed of the head (sent at
        // script time 0) and the size events. Anything that came later than
        // `heldTolerance` behind that was held; the bytes the script had sent by
        // the time the first event arrived are the path's threshold.
        var base = sizes.map { $0.arrival - ProbeTime($0.scheduledMs) * 1_000_000 }.min()
        if let head = record.headAt, let b = base { base = min(b, head) }
        if let base, let first = sizes.first {
            let firstArrivalOnSenderClock = first.arrival - base
            if firstArrivalOnSenderClock - ProbeTime(first.scheduledMs) * 1_000_000 > Self.heldTolerance {
                let sentBy = sizes.filter { ProbeTime($0.scheduledMs) * 1_000_000 <= firstArrivalOnSenderClock + Self.flushTolerance }
                if sentBy.count < sizes.count || !reachedEnd {
                    bufferingThreshold = sentBy.last?.total
                } else {
                    // Nothing came before the script had sent everything.
                    thresholdAbove = sizes.last?.total
                }
            }
        }
    }

    /// The longest silence the path carried (ms), if any.
    public var longestSurvivedSilence: Int? {
        survivedSilences > 0 ? silences.prefix(survivedSilences).max() : nil
    }

    /// The silence during which the stream was cut (ms), if it was.
    public var fatalSilence: Int? {
        survivedSilences < silences.count && !reachedEnd ? silences[survivedSilences] : nil
    }

    /// `"name":123` in an event's data.
    static func field(_ name: String, _ text: String) -> Int? {
        let key = Array("\"\(name)\":".utf8)
        let bytes = Array(text.utf8)
        guard bytes.count >= key.count else { return nil }
        for i in 0...(bytes.count - key.count) where Array(bytes[i..<i + key.count]) == key {
            var j = i + key.count
            var value = 0
            var digits = 0
            while j < bytes.count, HTTPBytes.isDigit(bytes[j]), digits < 12 {
                value = value * 10 + Int(bytes[j] - 0x30)
                j += 1
                digits += 1
            }
            return digits > 0 ? value : nil
        }
        return nil
    }
}
