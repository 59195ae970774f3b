/// Keeps tokens out of logs (docs/behaviour.md, "Query token"): every URL
/// that is logged goes through a `Redactor` first. Works on the raw target, so a
/// token vanishes whether the client sent it percent-encoded or not.
public struct Redactor: Sendable {
    public static let marker = "[REDACTED]"
    /// Always redacted, whatever the config says.
    public static let defaultQueryNames: Set<String> = ["token", "access_token"]

    /// Lowercased query parameter names.
    public let queryNames: Set<String>

    /// `queryNames`: every route's `token.query`; `token` and `access_token`
    /// are always added.
    public init(queryNames: Set<String>) {
        self.queryNames = Set(queryNames.map { $0.lowercasedASCII() }).union(Self.defaultQueryNames)
    }

    /// The query names of every route's `token` settings (routes without
    /// `token` contribute nothing; the defaults are always in).
    public init(config: Config) {
        self.init(queryNames: Set(config.routes.compactMap(\.token?.query)))
    }

    /// The target with the value of every parameter whose name is in the set
    /// replaced: `token=[REDACTED]`. Everything else stays byte for byte.
    ///
    /// Errs on the side of hiding: a name matches in any ASCII case and also
    /// when its percent-decoded form matches (`Token`, `%74oken`), although
    /// `TokenRewrite` treats those as other parameters; parameters in a
    /// fragment are redacted too. A parameter without `=` or with an empty
    /// value has nothing to hide and stays as is.
    public func redact(target: String) -> String {
        let parts = TargetParts(target)
        guard parts.query != nil || parts.fragment != nil else { return target }
        var changed = false
        func redacted(_ section: ArraySlice<UInt8>?) -> [UInt8]? {
            guard let section else { return nil }
            var pieces: [ArraySlice<UInt8>] = []
            for parameter in QueryParameter.split(section) {
                if let value = parameter.value, !value.isEmpty, matches(parameter.name) {
                    pieces.append(ArraySlice(parameter.name + Array("=\(Self.marker)".utf8)))
                    changed = true
                } else {
                    pieces.append(parameter.raw)
                }
            }
            return QueryParameter.join(pieces)
        }
        let query = redacted(parts.query)
        let fragment = redacted(parts.fragment)
        guard changed else { return target }
        var result = parts
        result.fragment = fragment.map { ArraySlice($0) }
        return result.joined(query: query)
    }

    private func matches(_ name: ArraySlice<UInt8>) -> Bool {
        if queryNames.contains(String(decoding: name, as: UTF8.self).lowercasedASCII()) { return true }
        guard name.contains(UInt8(ascii: "%")), let decoded = PercentDecoding.decode(name) else { return false }
        return queryNames.contains(String(decoding: decoded, as: UTF8.self).lowercasedASCII())
    }
}
