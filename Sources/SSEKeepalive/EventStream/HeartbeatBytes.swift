/// The bytes of a route's heartbeat, built once per route.
public struct HeartbeatBytes: Equatable, Sendable {
    /// The comment text after the colon, as used (CR and LF removed).
    public let comment: String
    /// Whether the boundary form ends with a blank line (`heartbeat.blank_line`).
    public let blankLine: Bool
    /// `:` + comment + `\n\n` (or `:` + comment + `\n` when `blankLine == false`).
    public let boundary: [UInt8]
    /// `:` + comment + `\n`.
    public let line: [UInt8]

    /// `comment` must be a single line; a CR or LF in it would end the comment
    /// early and turn the rest into a field line (for example `data:`), so
    /// they are removed here as a last line of defence (the config loader
    /// should reject them, see `isValidComment`).
    public init(comment: String = "heartbeat", blankLine: Bool = true) {
        let text = comment.utf8.filter { $0 != 0x0D && $0 != 0x0A }
        self.comment = String(decoding: text, as: UTF8.self)
        self.blankLine = blankLine
        var line: [UInt8] = [0x3A]  // ":"
        line.append(contentsOf: text)
        line.append(0x0A)
        self.line = line
        self.boundary = blankLine ? line + [0x0A] : line
    }

    /// True when `comment` can be used as is (no CR, no LF).
    public static func isValidComment(_ comment: String) -> Bool {
        !comment.utf8.contains { $0 == 0x0D || $0 == 0x0A }
    }

    /// The comment of `form`, its line padded with spaces to `size` bytes in all
    /// (for hops that hold a response's first bytes); never shorter than unpadded.
    public func bytes(_ form: HeartbeatForm, paddedTo size: Int) -> [UInt8] {
        let plain = bytes(form)
        guard size > plain.count else { return plain }
        let ending = form == .boundary && blankLine ? 2 : 1
        return Array(plain.dropLast(ending)) + Array(repeating: 0x20, count: size - plain.count) + Array(plain.suffix(ending))
    }

    public func bytes(_ form: HeartbeatForm) -> [UInt8] {
        switch form {
        case .boundary: return boundary
        case .line: return line
        }
    }
}
