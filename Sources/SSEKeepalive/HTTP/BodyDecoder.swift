/// Splits a message body, whatever its framing, into payload and framing bytes.
/// Payload is reported as a count so the caller can move buffers without copying.
public struct BodyDecoder: Sendable {
    public enum Instruction: Equatable, Sendable {
        /// The next n buffered bytes are payload (n <= available).
        case payload(Int)
        /// The next n buffered bytes were framing; drop them.
        case skip(Int)
        case needMore
        /// The body is complete; what follows belongs to the next message.
        case end
    }

    private enum Mode: Sendable {
        case length(remaining: Int)
        case chunked(ChunkedDecoder)
        case untilClose
        case empty
    }

    private var mode: Mode

    public init(_ framing: BodyFraming) {
        switch framing {
        case .none: mode = .empty
        case .contentLength(let n): mode = n == 0 ? .empty : .length(remaining: n)
        case .chunked: mode = .chunked(ChunkedDecoder())
        case .closeDelimited: mode = .untilClose
        }
    }

    /// `window` is a contiguous view of the start of the buffered bytes (any
    /// non-empty prefix when available > 0); only chunked framing reads it.
    public mutating func next(available: Int, window: UnsafeRawBufferPointer) throws(HTTPParseError) -> Instruction {
        switch mode {
        case .empty:
            return .end
        case .length(let remaining):
            if remaining == 0 { return .end }
            return available == 0 ? .needMore : .payload(min(remaining, available))
        case .untilClose:
            return available == 0 ? .needMore : .payload(available)
        case .chunked(var decoder):
            if decoder.isDone { return .end }
            if available == 0 { return .needMore }
            if decoder.payloadRemaining > 0 { return .payload(min(decoder.payloadRemaining, available)) }
            let (consumed, _) = try decoder.consumeFraming(window)
            mode = .chunked(decoder)
            return consumed > 0 ? .skip(consumed) : .needMore
        }
    }

    public mutating func didForwardPayload(_ count: Int) {
        switch mode {
        case .length(let remaining): mode = .length(remaining: remaining - count)
        case .chunked(var decoder):
            decoder.consumePayload(count)
            mode = .chunked(decoder)
        case .untilClose, .empty: break
        }
    }

    /// Whether the peer closing its side now ends the body cleanly.
    public var endsAtClose: Bool {
        switch mode {
        case .untilClose, .empty: return true
        case .length(let remaining): return remaining == 0
        case .chunked(let decoder): return decoder.isDone
        }
    }
}
