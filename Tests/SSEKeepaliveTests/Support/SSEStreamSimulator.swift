@testable import SSEKeepalive

/// A model of what the runtime does with one event stream, built only from the
/// pure EventStream types: upstream reads are forwarded at once (except the at
/// most 2 leading bytes held while a BOM is undecided), an idle timer writes
/// the heartbeat the cursor allows, and the leading-BOM rule applies when a
/// heartbeat went out before the first payload byte.
struct SSEStreamSimulator {
    let heartbeat: HeartbeatBytes
    private(set) var cursor = SSECursor()
    private(set) var output: [UInt8] = []
    /// Where in `output` each heartbeat was written.
    private(set) var heartbeatRanges: [Range<Int>] = []
    private(set) var heartbeatForms: [HeartbeatForm] = []
    private(set) var bomStripped = false
    private var sawPayload = false
    private var heartbeatBeforePayload = false
    private var bomRuleActive = false
    private var held: [UInt8] = []

    init(heartbeat: HeartbeatBytes) {
        self.heartbeat = heartbeat
    }

    /// The idle timer fired: write the safe heartbeat, if any.
    @discardableResult
    mutating func idle() -> HeartbeatForm? {
        guard let form = cursor.safeHeartbeat else { return nil }
        let bytes = heartbeat.bytes(form)
        heartbeatRanges.append(output.count..<(output.count + bytes.count))
        heartbeatForms.append(form)
        output += bytes
        cursor.didWriteHeartbeat(form, blankLine: heartbeat.blankLine)
        if !sawPayload { heartbeatBeforePayload = true }
        return form
    }

    /// One read from the upstream (payload bytes, framing already removed).
    mutating func upstream(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        if !sawPayload {
            sawPayload = true
            bomRuleActive = heartbeatBeforePayload
        }
        guard bomRuleActive else { return forward(bytes) }
        held += bytes
        switch LeadingBOM.decide(held, endOfStream: false) {
        case .wait:
            return
        case .strip:
            bomStripped = true
            bomRuleActive = false
            let rest = Array(held.dropFirst(3))
            held = []
            forward(rest)
        case .keep:
            bomRuleActive = false
            let all = held
            held = []
            forward(all)
        }
    }

    mutating func endOfStream() {
        guard bomRuleActive, !held.isEmpty else { return }
        let decision = LeadingBOM.decide(held, endOfStream: true)
        precondition(decision == .keep)
        bomRuleActive = false
        let all = held
        held = []
        forward(all)
    }

    /// The output with every inserted heartbeat removed.
    var outputWithoutHeartbeats: [UInt8] {
        var result: [UInt8] = []
        var at = 0
        for r in heartbeatRanges {
            result += output[at..<r.lowerBound]
            at = r.upperBound
        }
        result += output[at...]
        return result
    }

    private mutating func forward(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        output += bytes
        cursor.advance(bytes)
    }
}
