// The SSE cursor: where, in the event-stream grammar, the bytes forwarded to
// the client so far end. Pure value type, no I/O, no Foundation.
//
// Grammar (WHATWG HTML, "Server-sent events", event stream interpretation):
// a line ends with CRLF, LF or CR; an empty line dispatches the pending event;
// a line starting with ":" is a comment and changes nothing.
//
// Transitions, by byte class (CR = 0x0D, LF = 0x0A, other = anything else):
//
//   from \ byte           CR                         LF                 other
//   eventBoundary         afterCR(lineWasEmpty:true)  eventBoundary      midLine
//   lineBoundary          afterCR(lineWasEmpty:true)  eventBoundary      midLine
//   midLine               afterCR(lineWasEmpty:false) lineBoundary       midLine
//   afterCR(e)            afterCR(lineWasEmpty:true)  e ? eventBoundary  midLine
//                                                       : lineBoundary
//
// A CR terminates its line at once (that is how a parser must treat it: it
// cannot wait for the next byte), so after a CR the next CR ends an *empty*
// line, and an LF right after a CR is just the second half of CRLF. The cursor
// still keeps the afterCR state apart because a heartbeat written there would
// turn that LF into a blank line of its own and dispatch a half-built event.
//
// Why the last 3 bytes of a read are enough (n = bytes.count >= 3, bytes
// x y z at the end): the state after z never depends on the state before x.
//   z other          -> midLine.
//   z CR             -> afterCR(lineWasEmpty: state-after-y != midLine), and the
//                       state after y is midLine iff y is "other".
//   z LF, y other    -> lineBoundary.
//   z LF, y LF       -> after y we are at a boundary (event or line), so LF
//                       -> eventBoundary.
//   z LF, y CR       -> afterCR(e) with e = (state after x != midLine), i.e.
//                       e = (x is CR or LF); then LF -> e ? eventBoundary
//                       : lineBoundary.
// So for longer segments the cursor starts from any state (it uses midLine)
// and steps over only the last 3 bytes. The tests check this exhaustively
// against a byte-by-byte reference.

public enum HeartbeatForm: Equatable, Sendable {
    /// `:` + comment + `\n\n` (or `\n` only, with `blank_line: false`), at an event boundary.
    case boundary
    /// `:` + comment + `\n`, at a line boundary inside an event.
    case line
}

/// Knows where in the SSE grammar the bytes forwarded so far end.
/// O(1) per read: only the last 3 bytes of a segment matter.
public struct SSECursor: Equatable, Sendable {
    public enum Position: Equatable, Sendable {
        /// Start of stream, or just after a blank line: no event is pending.
        case eventBoundary
        /// Start of a line inside an event (the previous line was not empty).
        case lineBoundary
        /// Inside a line.
        case midLine
        /// The last byte is a CR; the next byte may be the LF of a CRLF.
        case afterCR(lineWasEmpty: Bool)
    }

    public private(set) var position: Position

    public init() {
        position = .eventBoundary
    }

    /// A cursor at a given position (tests, and resuming a stream's state).
    public init(position: Position) {
        self.position = position
    }

    @inline(__always)
    static func step(_ position: Position, _ byte: UInt8) -> Position {
        switch byte {
        case 0x0D:
            if case .midLine = position { return .afterCR(lineWasEmpty: false) }
            // At a line start (or right after a CR, which already ended its
            // line) this CR ends an empty line.
            return .afterCR(lineWasEmpty: true)
        case 0x0A:
            switch position {
            case .eventBoundary, .lineBoundary:
                return .eventBoundary               // an empty line
            case .midLine:
                return .lineBoundary                // a non-empty line ended
            case .afterCR(let lineWasEmpty):
                return lineWasEmpty ? .eventBoundary : .lineBoundary  // CRLF
            }
        default:
            return .midLine
        }
    }

    /// Advances over payload bytes forwarded to the client (one read or
    /// segment). Only the last 3 bytes are looked at: if `bytes.count > 3`
    /// it behaves as if starting from `.midLine` on the last 3 bytes, which
    /// gives the same result as stepping over every byte (see the table
    /// above). A caller that cannot see the whole segment cheaply may pass
    /// just its last `min(count, 3)` bytes.
    public mutating func advance(_ bytes: UnsafeRawBufferPointer) {
        let n = bytes.count
        guard n > 0 else { return }
        var p = position
        var i = 0
        if n > 3 {
            p = .midLine
            i = n - 3
        }
        while i < n {
            p = Self.step(p, bytes[i])
            i += 1
        }
        position = p
    }

    public mutating func advance(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { advance($0) }
    }

    /// The heartbeat form that is safe right now, or nil (mid-line, or right
    /// after a CR: wait for the next safe point).
    public var safeHeartbeat: HeartbeatForm? {
        switch position {
        case .eventBoundary: return .boundary
        case .lineBoundary: return .line
        case .midLine, .afterCR: return nil
        }
    }

    /// Records that the heartbeat bytes of `form` (as produced by
    /// `HeartbeatBytes`) were written.
    ///
    /// What a parser has seen afterwards:
    /// - boundary form with the blank line (`:c\n\n`): a comment line and a
    ///   blank line. Nothing is pending (any parser dispatches or discards at
    ///   that blank line), so -> `.eventBoundary`.
    /// - line form, or boundary form without the blank line (`:c\n`): a
    ///   comment line that ended with LF. If we were at a line boundary, the
    ///   event in progress is still in progress: unchanged (`.lineBoundary`).
    ///   If we were at an event boundary, a WHATWG parser would still have
    ///   nothing pending, but the cursor never inspects line contents, so it
    ///   treats this exactly like any other non-empty line after a blank line:
    ///   `.lineBoundary`. That is conservative (the next heartbeat is then the
    ///   line form, which dispatches nothing in any parser) and it is exactly
    ///   the state `advance` would reach over those bytes, so the cursor never
    ///   depends on whether bytes came from upstream or from us.
    /// A heartbeat must only be written at a safe point (`safeHeartbeat`);
    /// if one is written elsewhere the same byte-exact result is recorded
    /// (no trap: a proxy must not crash on its own bookkeeping).
    public mutating func didWriteHeartbeat(_ form: HeartbeatForm, blankLine: Bool) {
        if form == .boundary && blankLine {
            position = .eventBoundary
        } else {
            position = .lineBoundary
        }
    }
}
