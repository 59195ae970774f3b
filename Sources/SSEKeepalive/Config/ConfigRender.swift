// Renders the effective configuration as YAML (`sse-keepalive check`), key by
// key from the key table (ConfigKeys.swift).
// The output is accepted back by `ConfigLoader.parse` and yields an equal
// `Config` (apart from `sourceFile`).

extension Config {
    /// Every key with its effective value; routes with their fully resolved
    /// heartbeat and token. The keys and their order come from the key table.
    public func rendered() -> String {
        var out = "# sse-keepalive effective configuration"
        out += sourceFile.map { " (from \(Self.commentSafe($0)))" } ?? " (built-in defaults)"
        out += "\n"
        for (name, value) in ConfigKeys.topKeys.rendered(self, self) {
            out += Self.yaml(name, value, indent: "")
        }
        return out
    }

    /// One key and its value as block YAML.
    static func yaml(_ name: String, _ value: RenderedValue, indent: String) -> String {
        switch value {
        case .omitted:
            return ""
        case .scalar(let text):
            return "\(indent)\(name): \(text)\n"
        case .inherited(let text):
            return "\(indent)# \(name): \(text) (inherited)\n"
        case .mapping(let entries):
            return "\(indent)\(name):\n" + entries.map { yaml($0.0, $0.1, indent: indent + "  ") }.joined()
        case .list(let items):
            if items.isEmpty { return "\(indent)\(name): []\n" }
            var out = "\(indent)\(name):\n"
            for item in items {
                switch item {
                case .mapping(let entries):
                    // `- ` takes the place of the first entry's indentation.
                    let body = entries.map { yaml($0.0, $0.1, indent: indent + "    ") }.joined()
                    out += indent + "  - " + body.dropFirst(indent.count + 4)
                case .scalar(let text):
                    out += "\(indent)  - \(text)\n"
                case .list, .inherited, .omitted:
                    break  // no key declares these as list items
                }
            }
            return out
        }
    }

    /// `GiB`, `MiB` or `KiB` when exact, else plain bytes.
    static func renderSize(_ n: Int) -> String { ValueSyntax.sizeText(n) }

    /// A YAML double-quoted scalar; everything outside printable ASCII and
    /// UTF-8 text is escaped.
    static func quote(_ s: String) -> String { "\"" + TextEscape.yaml(s) + "\"" }

    /// For the header comment line: no line breaks.
    static func commentSafe(_ s: String) -> String {
        String(String.UnicodeScalarView(s.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : $0 }))
    }
}
