import Foundation

/// One configurable value, declared once: its dotted path in the YAML file (also its `BLENDD_*`
/// variable and `--set` name), its type and allowed range, whether it is a secret, whether a
/// running supervisor can apply a change on SIGHUP, and how to read and show it. Every loader
/// (file, environment, `*_FILE`, `--set`) and `config check` go through these declarations.
public struct ConfigurationSetting: Sendable {
    /// The type and range of a setting's value.
    public enum Kind: Sendable, Equatable {
        case string(allowEmpty: Bool)
        case integer(ClosedRange<Int>)
        case number(ClosedRange<Double>)
        case boolean
        case choice([String])
    }

    public let path: String
    public let help: String
    public let kind: Kind
    /// Shown masked by `config check` and in logs.
    public let isSecret: Bool
    /// A running supervisor applies a change of this setting on SIGHUP; others need a restart.
    public let appliesOnReload: Bool
    let apply: @Sendable (inout BlendConfiguration, ConfigurationValue) throws(ConfigurationValue.Mismatch) -> Void
    let render: @Sendable (BlendConfiguration) -> String
    /// The problem with the setting's current value, nil when it is within its declared range.
    let problem: @Sendable (BlendConfiguration) -> String?

    /// The environment variable that overrides this setting: `kafka.group_id` → `BLENDD_KAFKA_GROUP_ID`.
    public var environmentName: String {
        "BLENDD_" + path.uppercased().replacingOccurrences(of: ".", with: "_")
    }

    /// The value as `config check` prints it (secrets not yet masked).
    public func value(in configuration: BlendConfiguration) -> String { render(configuration) }

    /// For numeric settings, the ends of the declared range and the nearest values past them,
    /// as they would be written in a file or flag; empty for other kinds.
    public var boundaries: (inside: [String], outside: [String]) {
        switch kind {
        case .integer(let r):
            return ([String(r.lowerBound), String(r.upperBound)], [String(r.lowerBound - 1), String(r.upperBound + 1)])
        case .number(let r):
            return ([String(r.lowerBound), String(r.upperBound)], [String(r.lowerBound.nextDown), String(r.upperBound.nextUp)])
        case .string, .boolean, .choice:
            return ([], [])
        }
    }
}

extension ConfigurationSetting {
    static func string(_ path: String, _ key: WritableKeyPath<BlendConfiguration, String> & Sendable,
                       allowEmpty: Bool = false, secret: Bool = false, reload: Bool = false, _ help: String) -> ConfigurationSetting {
        ConfigurationSetting(path: path, help: help, kind: .string(allowEmpty: allowEmpty), isSecret: secret, appliesOnReload: reload,
                             apply: { config, value throws(ConfigurationValue.Mismatch) in config[keyPath: key] = try value.string() },
                             render: { $0[keyPath: key] },
                             problem: { config in
                                 allowEmpty || !config[keyPath: key].trimmingCharacters(in: .whitespaces).isEmpty ? nil : "must not be empty"
                             })
    }

    static func int(_ path: String, _ key: WritableKeyPath<BlendConfiguration, Int> & Sendable, _ range: ClosedRange<Int>,
                    reload: Bool = false, _ help: String) -> ConfigurationSetting {
        ConfigurationSetting(path: path, help: help, kind: .integer(range), isSecret: false, appliesOnReload: reload,
                             apply: { config, value throws(ConfigurationValue.Mismatch) in config[keyPath: key] = try value.int() },
                             render: { String($0[keyPath: key]) },
                             problem: { config in
                                 let v = config[keyPath: key]
                                 return range.contains(v) ? nil : "must be between \(range.lowerBound) and \(range.upperBound) (is \(v))"
                             })
    }

    static func double(_ path: String, _ key: WritableKeyPath<BlendConfiguration, Double> & Sendable, _ range: ClosedRange<Double>,
                       reload: Bool = false, _ help: String) -> ConfigurationSetting {
        ConfigurationSetting(path: path, help: help, kind: .number(range), isSecret: false, appliesOnReload: reload,
                             apply: { config, value throws(ConfigurationValue.Mismatch) in config[keyPath: key] = try value.double() },
                             render: { String($0[keyPath: key]) },
                             problem: { config in
                                 let v = config[keyPath: key]
                                 return range.contains(v) ? nil
                                     : "must be between \(shown(range.lowerBound)) and \(shown(range.upperBound)) (is \(shown(v)))"
                             })
    }

    /// A number as people write it: `1`, not `1.0`.
    static func shown(_ d: Double) -> String {
        d.rounded() == d && abs(d) < 1e15 ? String(Int(d)) : String(d)
    }

    static func bool(_ path: String, _ key: WritableKeyPath<BlendConfiguration, Bool> & Sendable,
                     reload: Bool = false, _ help: String) -> ConfigurationSetting {
        ConfigurationSetting(path: path, help: help, kind: .boolean, isSecret: false, appliesOnReload: reload,
                             apply: { config, value throws(ConfigurationValue.Mismatch) in config[keyPath: key] = try value.bool() },
                             render: { String($0[keyPath: key]) },
                             problem: { _ in nil })
    }

    /// A string that must be one of `values`.
    static func oneOf(_ path: String, _ key: WritableKeyPath<BlendConfiguration, String> & Sendable, _ values: [String],
                      reload: Bool = false, _ help: String) -> ConfigurationSetting {
        ConfigurationSetting(path: path, help: help, kind: .choice(values), isSecret: false, appliesOnReload: reload,
                             apply: { config, value throws(ConfigurationValue.Mismatch) in
                                 let raw = try value.string()
                                 guard values.contains(raw) else {
                                     throw ConfigurationValue.Mismatch(expected: "one of " + values.joined(separator: ", "))
                                 }
                                 config[keyPath: key] = raw
                             },
                             render: { $0[keyPath: key] },
                             problem: { config in
                                 values.contains(config[keyPath: key]) ? nil : "must be one of \(values.joined(separator: ", ")) (is \(config[keyPath: key]))"
                             })
    }

    static func choice<T: RawRepresentable & CaseIterable & Sendable>(
        _ path: String, _ key: WritableKeyPath<BlendConfiguration, T> & Sendable, reload: Bool = false, _ help: String
    ) -> ConfigurationSetting where T.RawValue == String {
        ConfigurationSetting(path: path, help: help, kind: .choice(T.allCases.map(\.rawValue)), isSecret: false, appliesOnReload: reload,
                             apply: { config, value throws(ConfigurationValue.Mismatch) in
                                 let raw = try value.string()
                                 guard let v = T(rawValue: raw) else {
                                     throw ConfigurationValue.Mismatch(expected: "one of " + T.allCases.map(\.rawValue).joined(separator: ", "))
                                 }
                                 config[keyPath: key] = v
                             },
                             render: { $0[keyPath: key].rawValue },
                             problem: { _ in nil })
    }
}

/// A raw value from YAML, the environment or a flag, before it is given a type.
public enum ConfigurationValue: Sendable, Equatable {
    case string(String)
    case int(Int)
    case double(Double)
    case bool(Bool)
    case null

    public struct Mismatch: Error, Sendable { let expected: String }

    var asString: String? {
        switch self {
        case .string(let s): s
        case .int(let i): String(i)
        case .double(let d): String(d)
        case .bool(let b): String(b)
        case .null: nil
        }
    }

    func string() throws(Mismatch) -> String {
        guard case .string(let s) = self else {
            if case .null = self { throw Mismatch(expected: "a string") }
            return asString!
        }
        return s
    }

    func int() throws(Mismatch) -> Int {
        switch self {
        case .int(let i): return i
        case .double(let d) where d.rounded() == d && abs(d) < 1e15: return Int(d)
        case .string(let s): if let i = Int(s.trimmingCharacters(in: .whitespaces)) { return i }
        default: break
        }
        throw Mismatch(expected: "an integer")
    }

    func double() throws(Mismatch) -> Double {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d) where d.isFinite: return d
        case .string(let s): if let d = Double(s.trimmingCharacters(in: .whitespaces)), d.isFinite { return d }
        default: break
        }
        throw Mismatch(expected: "a number")
    }

    func bool() throws(Mismatch) -> Bool {
        switch self {
        case .bool(let b): return b
        case .string(let s):
            switch s.lowercased() {
            case "true", "yes", "on", "1": return true
            case "false", "no", "off", "0": return false
            default: break
            }
        case .int(let i) where i == 0 || i == 1: return i == 1
        default: break
        }
        throw Mismatch(expected: "true or false")
    }
}
