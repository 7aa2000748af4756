/// One configurable value: its dotted path in the YAML file (also its `BLENDD_*` variable and
/// `--set` name), how to parse it, and how to show it.
public struct ConfigurationSetting: Sendable {
    public let path: String
    public let help: String
    /// Shown masked by `config check` and in logs.
    public let isSecret: Bool
    let apply: @Sendable (inout BlendConfiguration, ConfigurationValue) throws(ConfigurationValue.Mismatch) -> Void
    let render: @Sendable (BlendConfiguration) -> String

    /// The environment variable that overrides this setting: `kafka.group_id` → `BLENDD_KAFKA_GROUP_ID`.
    public var environmentName: String {
        "BLENDD_" + path.uppercased().replacingOccurrences(of: ".", with: "_")
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
        case .double(let d): return d
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

import Foundation

extension ConfigurationSetting {
    static func string(_ path: String, _ key: WritableKeyPath<BlendConfiguration, String> & Sendable,
                       secret: Bool = false, _ help: String) -> ConfigurationSetting {
        ConfigurationSetting(path: path, help: help, isSecret: secret,
                             apply: { config, value throws(ConfigurationValue.Mismatch) in config[keyPath: key] = try value.string() },
                             render: { $0[keyPath: key] })
    }

    static func int(_ path: String, _ key: WritableKeyPath<BlendConfiguration, Int> & Sendable, _ help: String) -> ConfigurationSetting {
        ConfigurationSetting(path: path, help: help, isSecret: false,
                             apply: { config, value throws(ConfigurationValue.Mismatch) in config[keyPath: key] = try value.int() },
                             render: { String($0[keyPath: key]) })
    }

    static func double(_ path: String, _ key: WritableKeyPath<BlendConfiguration, Double> & Sendable, _ help: String) -> ConfigurationSetting {
        ConfigurationSetting(path: path, help: help, isSecret: false,
                             apply: { config, value throws(ConfigurationValue.Mismatch) in config[keyPath: key] = try value.double() },
                             render: { String($0[keyPath: key]) })
    }

    static func choice<T: RawRepresentable & CaseIterable & Sendable>(
        _ path: String, _ key: WritableKeyPath<BlendConfiguration, T> & Sendable, _ help: String
    ) -> ConfigurationSetting where T.RawValue == String {
        ConfigurationSetting(path: path, help: help, isSecret: false,
                             apply: { config, value throws(ConfigurationValue.Mismatch) in
                                 let raw = try value.string()
                                 guard let v = T(rawValue: raw) else {
                                     throw ConfigurationValue.Mismatch(expected: "one of " + T.allCases.map(\.rawValue).joined(separator: ", "))
                                 }
                                 config[keyPath: key] = v
                             },
                             render: { $0[keyPath: key].rawValue })
    }
}
