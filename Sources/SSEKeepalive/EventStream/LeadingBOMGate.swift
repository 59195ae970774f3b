/// Where the leading-BOM rule (docs/behaviour.md, "The leading BOM") stands for one stream: armed by a heartbeat
/// written before any payload, it takes the first payload bytes aside (at most
/// 3) until `LeadingBOM` can decide, then either drops a BOM or releases them.
/// Once any payload has gone out it never acts again: only one BOM, the
/// leading one, is ever removed.
public struct LeadingBOMGate: Equatable, Sendable {
    private enum State: Equatable, Sendable {
        /// No payload yet, no heartbeat yet: a BOM here is still the stream's first bytes.
        case beforePayload
        /// A heartbeat went out first: the next payload bytes are checked.
        case armed
        /// Payload started (or the BOM was dropped): nothing more to do.
        case done
    }

    private var state = State.beforePayload
    /// Payload bytes taken aside while the decision waits (a strict prefix of the BOM).
    public private(set) var held: [UInt8] = []

    public init() {}

    public enum Outcome: Equatable, Sendable {
        /// The bytes are held; nothing to write yet.
        case holding
        /// The held bytes were the BOM: dropped.
        case dropped
        /// Write these bytes (the held ones) as payload now.
        case release([UInt8])
    }

    /// A heartbeat was written.
    public mutating func heartbeatWritten() {
        if state == .beforePayload { state = .armed }
    }

    /// How many of `available` payload bytes the gate wants to take (0: forward them all as usual).
    public func wants(_ available: Int) -> Int {
        state == .armed ? min(available, 3 - held.count) : 0
    }

    /// Takes the bytes `wants` asked for (removed from the stream by the caller).
    public mutating func take(_ bytes: UnsafeRawBufferPointer) -> Outcome {
        held.append(contentsOf: bytes)
        switch LeadingBOM.decide(held, endOfStream: false) {
        case .wait:
            return .holding
        case .strip:
            held = []
            state = .done
            return .dropped
        case .keep:
            return finish()
        }
    }

    /// Payload bytes were forwarded past the gate.
    public mutating func payloadForwarded() {
        state = .done
    }

    /// Releases whatever is held (the stream ended, or `take` decided to keep).
    public mutating func finish() -> Outcome {
        let bytes = held
        held = []
        state = .done
        return .release(bytes)
    }
}
