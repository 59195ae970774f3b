import CZlib

/// Streaming gzip/deflate decoder (zlib), so the probe can still count the
/// events of a compressed stream. One instance per response; feed it the
/// payload as it arrives.
public final class ProbeInflater: @unchecked Sendable {
    public enum Coding: String, Sendable {
        case gzip
        case deflate
    }

    /// The coding of a Content-Encoding value the probe can undo, or nil
    /// (identity, br, zstd, stacked codings).
    public static func coding(_ contentEncoding: String) -> Coding? {
        let codings = contentEncoding.split(separator: ",").map { $0.trimmingOWS().lowercasedASCII() }
            .filter { $0 != "identity" }
        guard codings.count == 1 else { return nil }
        switch codings[0] {
        case "gzip", "x-gzip": return .gzip
        case "deflate": return .deflate
        default: return nil
        }
    }

    public let coding: Coding
    private var stream = z_stream()
    private var started = false
    private var ended = false
    public private(set) var error: String?

    public init(_ coding: Coding) {
        self.coding = coding
    }

    deinit {
        if started { inflateEnd(&stream) }
    }

    /// Decoded bytes of `input`, handed to `sink` in pieces. After an error
    /// (see `error`) or the end of the compressed stream, input is ignored.
    public func feed(_ input: [UInt8], _ sink: ([UInt8]) -> Void) {
        guard error == nil, !ended, !input.isEmpty else { return }
        if !started {
            // "deflate" is meant to be zlib-wrapped (RFC 9110 8.4.1.2), but
            // some servers send raw deflate: tell them apart by the header.
            let bits: Int32
            switch coding {
            case .gzip: bits = 15 + 16
            case .deflate: bits = input.count >= 2 && Self.isZlibHeader(input[0], input[1]) ? 15 : -15
            }
            guard sse_inflate_init2(&stream, bits) == Z_OK else { error = "zlib could not start"; return }
            started = true
        }
        var output = [UInt8](repeating: 0, count: 16 * 1024)
        var input = input
        input.withUnsafeMutableBufferPointer { inBuf in
            stream.next_in = inBuf.baseAddress
            stream.avail_in = UInt32(inBuf.count)
            while stream.avail_in > 0 || stream.avail_out == 0 {
                let (status, produced) = output.withUnsafeMutableBufferPointer { outBuf -> (Int32, Int) in
                    stream.next_out = outBuf.baseAddress
                    stream.avail_out = UInt32(outBuf.count)
                    let status = inflate(&stream, Z_SYNC_FLUSH)
                    return (status, outBuf.count - Int(stream.avail_out))
                }
                if produced > 0 { sink(Array(output[0..<produced])) }
                if status == Z_STREAM_END { ended = true; break }
                if status == Z_BUF_ERROR { break } // needs more input
                if status != Z_OK {
                    let why = stream.msg.map { String(cString: $0) } ?? "code \(status)"
                    error = "invalid \(coding.rawValue) data: \(why)"
                    break
                }
                if produced == 0 && stream.avail_in == 0 { break }
            }
            stream.next_in = nil
            stream.avail_in = 0
        }
    }

    static func isZlibHeader(_ b0: UInt8, _ b1: UInt8) -> Bool {
        b0 & 0x0F == 8 && (UInt16(b0) << 8 | UInt16(b1)) % 31 == 0
    }
}
