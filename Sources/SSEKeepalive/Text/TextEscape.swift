/// The one escaper for user text written between quotes: config error
/// messages, the YAML that `check` prints, text log lines, JSON strings and
/// Prometheus label values. The styles differ only in which characters they
/// escape and how they spell one that has no short escape; everything else
/// passes through unchanged, and text with nothing to escape is returned as is.
public struct TextEscape: Sendable {
    /// The escape for each ASCII byte, nil where the byte passes through.
    private let ascii: [String?]
    /// Also escape C1 controls, U+2028, U+2029 and U+FEFF (YAML).
    private let beyondASCII: Bool
    private let hex: @Sendable (UInt32) -> String

    /// - `short`: characters with their own escape (`"` -> `\"`).
    /// - `controls`: also escape every other C0 control and DEL, spelled by `hex`.
    init(short: [Unicode.Scalar: String], controls: Bool, beyondASCII: Bool = false,
         hex: @escaping @Sendable (UInt32) -> String = { _ in "" }) {
        var table = [String?](repeating: nil, count: 128)
        if controls {
            for b in 0..<0x20 { table[b] = hex(UInt32(b)) }
            table[0x7F] = hex(0x7F)
        }
        for (scalar, escape) in short { table[Int(scalar.value)] = escape }
        self.ascii = table
        self.beyondASCII = beyondASCII
        self.hex = hex
    }

    /// Config and usage error messages: `\"`, `\\`, `\n`, `\r`, `\t`, other controls `\xHH`.
    public static let message = TextEscape(short: ["\"": "\\\"", "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"],
                                           controls: true, hex: { "\\x" + hexDigits($0, count: 2, uppercase: true) })

    /// A YAML double-quoted scalar's content: also `\0`, and `\uXXXX` for the
    /// other controls, C1, line/paragraph separators and BOM (which a YAML
    /// reader would otherwise fold or drop).
    public static let yaml = TextEscape(short: ["\"": "\\\"", "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"],
                                        controls: true, beyondASCII: true,
                                        hex: { "\\u" + hexDigits($0, count: 4, uppercase: true) })

    /// Fields of a text log line: `\"`, `\\`, every control `\xhh`, so that
    /// one entry is always one line.
    public static let logField = TextEscape(short: ["\"": "\\\"", "\\": "\\\\"], controls: true,
                                            hex: { "\\x" + hexDigits($0, count: 2, uppercase: false) })

    /// A JSON string's content: `\"`, `\\`, `\n`, `\r`, `\t`, other controls `\u00hh`.
    public static let json = TextEscape(short: ["\"": "\\\"", "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"],
                                        controls: true, hex: { "\\u" + hexDigits($0, count: 4, uppercase: false) })

    /// A Prometheus label value: `\\`, `\"`, `\n` (the exposition format's only escapes).
    public static let prometheusLabel = TextEscape(short: ["\\": "\\\\", "\"": "\\\"", "\n": "\\n"], controls: false)

    /// Prometheus HELP text: `\\` and `\n`.
    public static let prometheusHelp = TextEscape(short: ["\\": "\\\\", "\n": "\\n"], controls: false)

    public func callAsFunction(_ s: String) -> String {
        guard needsEscaping(s) else { return s }
        var out = ""
        out.reserveCapacity(s.utf8.count + 8)
        appendEscaped(s, to: &out)
        return out
    }

    /// Appends `s`, escaped, to `out`.
    public func append(_ s: String, to out: inout String) {
        if needsEscaping(s) { appendEscaped(s, to: &out) } else { out += s }
    }

    private func needsEscaping(_ s: String) -> Bool {
        s.utf8.contains { $0 < 0x80 ? ascii[Int($0)] != nil : beyondASCII }
    }

    private func appendEscaped(_ s: String, to out: inout String) {
        for u in s.unicodeScalars {
            if u.value < 0x80, let escape = ascii[Int(u.value)] {
                out += escape
            } else if beyondASCII && Self.isInvisibleBeyondASCII(u.value) {
                out += hex(u.value)
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }

    private static func isInvisibleBeyondASCII(_ v: UInt32) -> Bool {
        (0x80...0x9F).contains(v) || v == 0x2028 || v == 0x2029 || v == 0xFEFF
    }

    static func hexDigits(_ v: UInt32, count: Int, uppercase: Bool) -> String {
        let digits = String(v, radix: 16, uppercase: uppercase)
        return String(repeating: "0", count: max(0, count - digits.count)) + digits
    }
}
