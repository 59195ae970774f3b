/// The UTF-8 BOM rule (docs/behaviour.md, "The leading BOM"): applies only when a heartbeat was written
/// before the first upstream payload byte. An SSE parser strips one BOM at the
/// very start of the stream; after our heartbeat the upstream's BOM is no
/// longer at the start and would become part of the first field name, so it
/// is dropped. This is the only upstream byte the proxy ever removes.
///
/// The caller holds back at most 2 leading payload bytes while the answer is
/// `.wait`, and passes the held bytes plus the new ones on the next read.
public enum LeadingBOM: Equatable, Sendable {
    /// The first 3 bytes are EF BB BF: drop them.
    case strip
    /// Forward as is.
    case keep
    /// The bytes so far are a strict prefix of the BOM (or there are none);
    /// wait for more (at end of stream: keep).
    case wait

    public static let bytes: [UInt8] = [0xEF, 0xBB, 0xBF]

    public static func decide(_ firstBytes: UnsafeRawBufferPointer, endOfStream: Bool) -> LeadingBOM {
        let n = min(firstBytes.count, 3)
        var i = 0
        while i < n {
            if firstBytes[i] != bytes[i] { return .keep }
            i += 1
        }
        if n == 3 { return .strip }
        return endOfStream ? .keep : .wait
    }

    public static func decide(_ firstBytes: [UInt8], endOfStream: Bool) -> LeadingBOM {
        firstBytes.withUnsafeBytes { decide($0, endOfStream: endOfStream) }
    }
}
