// What one config key is: a name, how its YAML value is read into the model,
// and how `check` prints it back. The keys themselves are declared in
// ConfigKeys.swift; this file has the building blocks.

import Yams

struct ConfigKey<Target> {
    typealias Read = (ConfigReader, Node, _ path: String, inout Target) throws(ConfigError) -> Void
    /// The effective value for `check`; the whole `Config` is there for
    /// values shown relative to the top level (an inherited upstream).
    typealias Render = (Target, Config) -> RenderedValue

    let name: String
    /// What a value may be, for type errors of a mapping key with a scalar
    /// shorthand ("expected a duration, off, or a mapping with ...").
    var summary: String
    /// Read after its siblings, so that it sees their values (routes inherit
    /// the top-level settings wherever the file puts them).
    var late = false
    let read: Read
    let render: Render

    init(_ name: String, summary: String, late: Bool = false, read: @escaping Read, render: @escaping Render) {
        self.name = name
        self.summary = summary
        self.late = late
        self.read = read
        self.render = render
    }

    /// The same key on a value reached through `path` (a section inside a larger target).
    func lifted<Outer>(_ kp: WritableKeyPath<Outer, Target>) -> ConfigKey<Outer> {
        let read = self.read, render = self.render
        return ConfigKey<Outer>(name, summary: summary, late: late,
                                read: { r, node, path, outer throws(ConfigError) in try read(r, node, path, &outer[keyPath: kp]) },
                                render: { outer, c in render(outer[keyPath: kp], c) })
    }
}

/// A value as `check` prints it.
indirect enum RenderedValue {
    /// Already in YAML spelling (quoted where needed).
    case scalar(String)
    case mapping([(String, RenderedValue)])
    case list([RenderedValue])
    /// Shown as a comment: `# key: value (inherited)`.
    case inherited(String)
    /// Not shown at all (an unset optional section).
    case omitted
}

extension Array {
    func rendered<T>(_ target: T, _ config: Config) -> [(String, RenderedValue)] where Element == ConfigKey<T> {
        map { ($0.name, $0.render(target, config)) }
    }
}

// MARK: Kinds of values

extension ConfigKey {
    static func duration(_ name: String, _ kp: WritableKeyPath<Target, TimeSpan>) -> ConfigKey {
        ConfigKey(name, summary: "a duration",
                  read: { r, node, path, t throws(ConfigError) in t[keyPath: kp] = try r.duration(node, path) },
                  render: { t, _ in .scalar(t[keyPath: kp].description) })
    }

    /// A duration, or `off` (nil).
    static func durationOrOff(_ name: String, _ kp: WritableKeyPath<Target, TimeSpan?>) -> ConfigKey {
        ConfigKey(name, summary: "a duration, off",
                  read: { r, node, path, t throws(ConfigError) in t[keyPath: kp] = try r.durationOrOff(node, path) },
                  render: { t, _ in .scalar(t[keyPath: kp].map(\.description) ?? "off") })
    }

    /// `off` (none), a duration, or `{base: D, jitter: D}`: a span drawn per stream from [base, base + jitter].
    static func jitteredOrOff(_ name: String, _ kp: WritableKeyPath<Target, JitteredSpan?>) -> ConfigKey {
        let expected = "a duration, {base: D, jitter: D}, or off"
        return ConfigKey(name, summary: expected,
                         read: { r, node, path, t throws(ConfigError) in
                             if ConfigReader.isOff(node) {
                                 t[keyPath: kp] = nil
                                 return
                             }
                             guard case .mapping = node else {
                                 t[keyPath: kp] = JitteredSpan(base: try r.duration(node, path))
                                 return
                             }
                             let entries = try r.mapping(node, path, allowed: ["base", "jitter"], expected: expected)
                             guard let base = entries.first(where: { $0.name == "base" }) else {
                                 throw r.error(node, path, "a jitter needs a base (\(expected))")
                             }
                             var span = JitteredSpan(base: try r.duration(base.value, ConfigReader.join(path, "base")))
                             if let jitter = entries.first(where: { $0.name == "jitter" }) {
                                 span.jitter = try r.duration(jitter.value, ConfigReader.join(path, "jitter"))
                             }
                             t[keyPath: kp] = span
                         },
                         render: { t, _ in
                             guard let span = t[keyPath: kp] else { return .scalar("off") }
                             if span.jitter.milliseconds == 0 { return .scalar(span.base.description) }
                             return .mapping([("base", .scalar(span.base.description)), ("jitter", .scalar(span.jitter.description))])
                         })
    }

    static func size(_ name: String, _ kp: WritableKeyPath<Target, Int>, minimum: Int = 1) -> ConfigKey {
        ConfigKey(name, summary: "a size",
                  read: { r, node, path, t throws(ConfigError) in t[keyPath: kp] = try r.size(node, path, minimum: minimum) },
                  render: { t, _ in .scalar(ValueSyntax.sizeText(t[keyPath: kp])) })
    }

    static func integer(_ name: String, _ kp: WritableKeyPath<Target, Int>, range: ClosedRange<Int>) -> ConfigKey {
        ConfigKey(name, summary: "an integer",
                  read: { r, node, path, t throws(ConfigError) in t[keyPath: kp] = try r.integer(node, path, range: range) },
                  render: { t, _ in .scalar("\(t[keyPath: kp])") })
    }

    static func bool(_ name: String, _ kp: WritableKeyPath<Target, Bool>) -> ConfigKey {
        ConfigKey(name, summary: "true or false",
                  read: { r, node, path, t throws(ConfigError) in t[keyPath: kp] = try r.bool(node, path) },
                  render: { t, _ in .scalar("\(t[keyPath: kp])") })
    }

    /// One of an enum's raw values; `what` names it in errors ("log level").
    static func choice<V: RawRepresentable & CaseIterable>(_ name: String, _ kp: WritableKeyPath<Target, V>, what: String) -> ConfigKey
    where V.RawValue == String {
        ConfigKey(name, summary: "one of \(V.allCases.map(\.rawValue).joined(separator: ", "))",
                  read: { r, node, path, t throws(ConfigError) in t[keyPath: kp] = try r.choice(node, path, what: what) },
                  render: { t, _ in .scalar(t[keyPath: kp].rawValue) })
    }

    static func address(_ name: String, _ kp: WritableKeyPath<Target, SocketAddressSpec>, allowUnix: Bool) -> ConfigKey {
        ConfigKey(name, summary: "an address",
                  read: { r, node, path, t throws(ConfigError) in t[keyPath: kp] = try r.address(node, path, allowUnix: allowUnix) },
                  render: { t, _ in .scalar(Config.quote(t[keyPath: kp].description)) })
    }

    /// An address, or `off` / nothing (nil).
    static func addressOrOff(_ name: String, _ kp: WritableKeyPath<Target, SocketAddressSpec?>, allowUnix: Bool) -> ConfigKey {
        ConfigKey(name, summary: "an address, off",
                  read: { r, node, path, t throws(ConfigError) in
                      if ConfigReader.isNull(node) || ConfigReader.isOff(node) {
                          t[keyPath: kp] = nil
                      } else {
                          t[keyPath: kp] = try r.address(node, path, allowUnix: allowUnix)
                      }
                  },
                  render: { t, _ in .scalar(t[keyPath: kp].map { Config.quote($0.description) } ?? "off") })
    }

    /// Free text. `null`: what an empty value means (nil: an empty value is an
    /// error). `check` returns the problem with a text, or nil when it is fine.
    static func text(_ name: String, _ kp: WritableKeyPath<Target, String>, expected: String, null: String? = nil,
                     check: @escaping (String) -> String? = { _ in nil }) -> ConfigKey {
        ConfigKey(name, summary: expected,
                  read: { r, node, path, t throws(ConfigError) in
                      t[keyPath: kp] = try r.text(node, path, expected: expected, null: null, check: check)
                  },
                  render: { t, _ in .scalar(Config.quote(t[keyPath: kp])) })
    }

    /// A mapping whose keys write into the same target (`log`, `timeouts`).
    static func section(_ name: String, keys: [ConfigKey<Target>]) -> ConfigKey {
        ConfigKey(name, summary: "a mapping",
                  read: { r, node, path, t throws(ConfigError) in try r.read(node, path, keys: keys, into: &t) },
                  render: { t, c in .mapping(keys.rendered(t, c)) })
    }

    /// A mapping that fills the value at `kp` (`heartbeat`): unset keys keep
    /// the value it had. With `shorthand`, a scalar sets just that key
    /// (`heartbeat: 10s` is `heartbeat: {interval: 10s}`).
    static func section<S>(_ name: String, _ kp: WritableKeyPath<Target, S>, keys: [ConfigKey<S>],
                           shorthand: String? = nil) -> ConfigKey {
        let short = shorthand.flatMap { s in keys.first { $0.name == s } }
        let names = keys.map(\.name).joined(separator: ", ")
        let summary = short.map { "\($0.summary), or a mapping with \(names)" } ?? "a mapping"
        return ConfigKey(name, summary: summary,
                         read: { r, node, path, t throws(ConfigError) in
                             if case .mapping = node {
                                 try r.read(node, path, keys: keys, into: &t[keyPath: kp])
                                 return
                             }
                             guard let short, case .scalar = node, !ConfigReader.isNull(node) else {
                                 throw r.typeError(node, path, expected: summary)
                             }
                             try short.read(r, node, path, &t[keyPath: kp])
                         },
                         render: { t, c in .mapping(keys.rendered(t[keyPath: kp], c)) })
    }

    /// A mapping that is absent (nil) unless given (`token`); its unset keys
    /// take their values from `empty`. Nothing in the file at all is an error
    /// (`{}` means "all defaults").
    static func optionalSection<S>(_ name: String, _ kp: WritableKeyPath<Target, S?>, empty: S, keys: [ConfigKey<S>],
                                   expected: String) -> ConfigKey {
        ConfigKey(name, summary: expected,
                  read: { r, node, path, t throws(ConfigError) in
                      var value = empty
                      try r.read(node, path, keys: keys, into: &value, expected: expected)
                      t[keyPath: kp] = value
                  },
                  render: { t, c in t[keyPath: kp].map { .mapping(keys.rendered($0, c)) } ?? .omitted })
    }
}

extension ConfigReader {
    /// Reads a mapping through `keys`: unknown keys are errors with a hint,
    /// each value goes to its key's `read` with its dotted path; `late` keys last.
    func read<T>(_ node: Node, _ path: String, keys: [ConfigKey<T>], into target: inout T,
                 expected: String = "a mapping") throws(ConfigError) {
        let entries = try mapping(node, path, allowed: keys.map(\.name), expected: expected)
        try read(entries, path, keys: keys, into: &target)
    }

    /// The same, for entries already checked by `mapping`.
    func read<T>(_ entries: [Entry], _ path: String, keys: [ConfigKey<T>], into target: inout T) throws(ConfigError) {
        for late in [false, true] {
            for e in entries {
                guard let key = keys.first(where: { $0.name == e.name }), key.late == late else { continue }
                try key.read(self, e.value, Self.join(path, e.name), &target)
            }
        }
    }
}
