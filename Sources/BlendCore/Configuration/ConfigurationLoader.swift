import Foundation
import Yams

/// Where a setting's effective value came from, for `config check`.
public enum ConfigurationSource: String, Sendable { case `default`, file, environment, flag }

/// One thing wrong with the configuration, located precisely enough to fix.
public struct ConfigurationProblem: Sendable, Equatable, CustomStringConvertible {
    public let location: String
    public let message: String

    public init(location: String, message: String) {
        self.location = location
        self.message = message
    }
    public var description: String { "\(location): \(message)" }
}

/// The result of loading: the typed configuration, where each value came from, and every
/// problem found (loading never stops at the first).
public struct LoadedConfiguration: Sendable {
    public var configuration: BlendConfiguration
    public var sources: [String: ConfigurationSource]
    public var problems: [ConfigurationProblem]
    /// Paths whose value was read from a `BLENDD_*_FILE` file: secrets by how they were given.
    public var fromSecretFiles: Set<String> = []

    /// `path = value  (source)` lines with secrets masked, for `config check` and start-up logs.
    public func rendered() -> [String] {
        var lines: [String] = []
        for setting in ConfigurationLoader.settings {
            let raw = setting.render(configuration)
            let shown = fromSecretFiles.contains(setting.path) ? "****" : setting.isSecret ? ConfigurationLoader.mask(raw) : raw
            let source = sources[setting.path] ?? .default
            lines.append("\(setting.path) = \(shown.isEmpty ? "\"\"" : shown)  (\(source.rawValue))")
        }
        for name in configuration.models.rankers.keys.sorted() {
            let path = "\(ConfigurationLoader.rankersPath).\(name)"
            lines.append("\(path) = \(configuration.models.rankers[name]!)  (\((sources[path] ?? .default).rawValue))")
        }
        for key in configuration.kafka.properties.keys.sorted() {
            let value = configuration.kafka.properties[key]!
            let path = "\(ConfigurationLoader.kafkaPropertiesPath).\(key)"
            let shown = ConfigurationLoader.isSecretKafkaProperty(key) || fromSecretFiles.contains(path) ? "****" : value
            lines.append("\(path) = \(shown)  (\((sources[path] ?? .default).rawValue))")
        }
        return lines
    }
}

public enum ConfigurationLoader {
    static let kafkaPropertiesPath = "kafka.properties"
    static let kafkaPropertyEnvironmentPrefix = "BLENDD_KAFKA_PROPERTY_"
    /// Named rankers: `models.rankers.<name>: <checkpoint directory>`.
    static let rankersPath = "models.rankers"
    static let rankersEnvironmentPrefix = "BLENDD_MODELS_RANKERS_"

    static let settingsByPath: [String: ConfigurationSetting] = Dictionary(uniqueKeysWithValues: settings.map { ($0.path, $0) })
    static let settingsByEnvironment: [String: ConfigurationSetting] = Dictionary(uniqueKeysWithValues: settings.map { ($0.environmentName, $0) })

    /// Loads file (if any), then environment, then `--set path=value` overrides.
    /// - Parameters:
    ///   - file: a YAML file; nil to skip (a missing named file is a problem, not silently ignored).
    ///   - environment: usually `ProcessInfo.processInfo.environment`. `BLENDD_X_FILE` reads the
    ///     value of `BLENDD_X` from a file (container secrets).
    public static func load(file: String?, environment: [String: String], overrides: [String] = []) -> LoadedConfiguration {
        var loaded = LoadedConfiguration(configuration: BlendConfiguration(), sources: [:], problems: [])
        if let file { loadFile(file, into: &loaded) }
        loadEnvironment(environment, into: &loaded)
        for override in overrides {
            guard let eq = override.firstIndex(of: "="), eq != override.startIndex else {
                loaded.problems.append(ConfigurationProblem(location: "--set \(override)", message: "expected path=value, e.g. kafka.group_id=blendd"))
                continue
            }
            let path = String(override[..<eq]), value = String(override[override.index(after: eq)...])
            assign(path: path, value: .string(value), source: .flag, location: "--set \(path)", into: &loaded)
        }
        if loaded.configuration.workerId.isEmpty {
            loaded.configuration.workerId = "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)"
        }
        loaded.problems += check(loaded.configuration)
        return loaded
    }

    static func loadFile(_ file: String, into loaded: inout LoadedConfiguration) {
        guard let data = FileManager.default.contents(atPath: file) else {
            loaded.problems.append(ConfigurationProblem(location: file, message: "cannot read the configuration file"))
            return
        }
        let text = String(decoding: data, as: UTF8.self)
        let root: Any?
        do {
            root = try Yams.load(yaml: text)
        } catch {
            let detail = String(describing: error).split(whereSeparator: \.isNewline).first.map(String.init) ?? "invalid YAML"
            loaded.problems.append(ConfigurationProblem(location: file, message: "not valid YAML: \(detail)"))
            return
        }
        guard let root else { return }
        guard let top = root as? [String: Any] else {
            loaded.problems.append(ConfigurationProblem(location: file, message: "the top level must be a mapping of sections"))
            return
        }
        walk(top, prefix: "", file: file, into: &loaded)
    }

    private static func walk(_ node: [String: Any], prefix: String, file: String, into loaded: inout LoadedConfiguration) {
        for key in node.keys.sorted() {
            let path = prefix.isEmpty ? key : "\(prefix).\(key)"
            let value = node[key]!
            if path == kafkaPropertiesPath {
                guard let properties = value as? [String: Any] else {
                    loaded.problems.append(ConfigurationProblem(location: "\(file): \(path)", message: "must be a mapping of librdkafka property names to values"))
                    continue
                }
                for (name, raw) in properties {
                    guard let v = scalar(raw)?.asString else {
                        loaded.problems.append(ConfigurationProblem(location: "\(file): \(path).\(name)", message: "must be a single value"))
                        continue
                    }
                    loaded.configuration.kafka.properties[name] = v
                    loaded.sources["\(path).\(name)"] = .file
                }
            } else if path == rankersPath {
                guard let rankers = value as? [String: Any] else {
                    loaded.problems.append(ConfigurationProblem(location: "\(file): \(path)", message: "must be a mapping of ranker names to checkpoint directories"))
                    continue
                }
                for (name, raw) in rankers {
                    guard case .string(let directory)? = scalar(raw) else {
                        loaded.problems.append(ConfigurationProblem(location: "\(file): \(path).\(name)", message: "must be a checkpoint directory"))
                        continue
                    }
                    loaded.configuration.models.rankers[name] = directory
                    loaded.sources["\(path).\(name)"] = .file
                }
            } else if let child = value as? [String: Any] {
                walk(child, prefix: path, file: file, into: &loaded)
            } else if let v = scalar(value) {
                assign(path: path, value: v, source: .file, location: "\(file): \(path)", into: &loaded)
            } else {
                loaded.problems.append(ConfigurationProblem(location: "\(file): \(path)", message: "must be a single value, not a list"))
            }
        }
    }

    private static func scalar(_ value: Any) -> ConfigurationValue? {
        switch value {
        case let b as Bool: .bool(b)
        case let i as Int: .int(i)
        case let d as Double: .double(d)
        case let s as String: .string(s)
        case is NSNull: .null
        default: nil
        }
    }

    static func loadEnvironment(_ environment: [String: String], into loaded: inout LoadedConfiguration) {
        for name in environment.keys.sorted() where name.hasPrefix("BLENDD_") {
            let fromFile = name.hasSuffix("_FILE")
            let variable = fromFile ? String(name.dropLast(5)) : name
            let property = variable.hasPrefix(kafkaPropertyEnvironmentPrefix)
                ? variable.dropFirst(kafkaPropertyEnvironmentPrefix.count).lowercased().replacingOccurrences(of: "_", with: ".") : nil
            // A name from the environment is the variable's suffix in lower case (BLENDD_MODELS_RANKERS_OASST → oasst).
            let rankerName = variable.hasPrefix(rankersEnvironmentPrefix) && variable.count > rankersEnvironmentPrefix.count
                ? variable.dropFirst(rankersEnvironmentPrefix.count).lowercased() : nil
            let setting = settingsByEnvironment[variable] ?? aliases[variable].flatMap { settingsByPath[$0] }
            // Other BLENDD_* variables belong to the scripts and tests (e.g. BLENDD_TEST_*): not ours to judge.
            guard property != nil || setting != nil || rankerName != nil else { continue }
            var value = environment[name]!
            if fromFile {
                guard let data = FileManager.default.contents(atPath: value) else {
                    loaded.problems.append(ConfigurationProblem(location: name, message: "cannot read the file \(value)"))
                    continue
                }
                value = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            }
            if let rankerName, setting == nil {
                loaded.configuration.models.rankers[rankerName] = value
                loaded.sources["\(rankersPath).\(rankerName)"] = .environment
            } else if let property {
                let path = "\(kafkaPropertiesPath).\(property)"
                loaded.configuration.kafka.properties[property] = value
                loaded.sources[path] = .environment
                if fromFile { loaded.fromSecretFiles.insert(path) }
            } else if let setting {
                assign(setting: setting, value: .string(value), source: .environment, location: name, secret: fromFile, into: &loaded)
            }
        }
    }

    /// Short names people expect to find.
    static let aliases: [String: String] = [
        "BLENDD_DATABASE_URL": "postgres.url",
        "BLENDD_KAFKA_BOOTSTRAP": "kafka.bootstrap_servers",
    ]

    static func assign(path: String, value: ConfigurationValue, source: ConfigurationSource, location: String,
                       into loaded: inout LoadedConfiguration) {
        if path.hasPrefix(kafkaPropertiesPath + "."), let v = value.asString {
            let property = String(path.dropFirst(kafkaPropertiesPath.count + 1))
            loaded.configuration.kafka.properties[property] = v
            loaded.sources[path] = source
            loaded.fromSecretFiles.remove(path)
            return
        }
        if path.hasPrefix(rankersPath + "."), let directory = value.asString {
            loaded.configuration.models.rankers[String(path.dropFirst(rankersPath.count + 1))] = directory
            loaded.sources[path] = source
            return
        }
        guard let setting = settingsByPath[path] else {
            let hint = suggestion(for: path).map { "; did you mean \($0)?" } ?? ""
            loaded.problems.append(ConfigurationProblem(location: location, message: "unknown setting \(path)\(hint)"))
            return
        }
        assign(setting: setting, value: value, source: source, location: location, into: &loaded)
    }

    static func assign(setting: ConfigurationSetting, value: ConfigurationValue, source: ConfigurationSource, location: String,
                       secret: Bool = false, into loaded: inout LoadedConfiguration) {
        do {
            try setting.apply(&loaded.configuration, value)
            loaded.sources[setting.path] = source
            if secret { loaded.fromSecretFiles.insert(setting.path) } else { loaded.fromSecretFiles.remove(setting.path) }
        } catch {
            let seen = setting.isSecret || secret ? "(hidden)" : (value.asString.map { "\"\($0)\"" } ?? "null")
            loaded.problems.append(ConfigurationProblem(location: location, message: "\(setting.path) must be \(error.expected), found \(seen)"))
        }
    }

    /// The known path closest to a mistyped one (edit distance ≤ 3).
    static func suggestion(for path: String) -> String? {
        let scored = settings.map { ($0.path, editDistance(Array(path), Array($0.path))) }.min { $0.1 < $1.1 }
        guard let best = scored, best.1 <= 3 else { return nil }
        return best.0
    }

    private static func editDistance(_ a: [Character], _ b: [Character]) -> Int {
        var previous = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var current = [i] + [Int](repeating: 0, count: b.count)
            for j in 1...max(b.count, 1) where !b.isEmpty {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return a.isEmpty ? b.count : previous[b.count]
    }

    /// Every value outside its declared range, then every broken rule between settings.
    static func check(_ c: BlendConfiguration) -> [ConfigurationProblem] {
        settings.compactMap { setting in setting.problem(c).map { ConfigurationProblem(location: setting.path, message: $0) } }
            + rules.compactMap { rule in rule.problem(c).map { ConfigurationProblem(location: rule.path, message: $0) } }
            + managedKafkaProperties.keys.sorted().filter { c.kafka.properties[$0] != nil }.map { key in
                ConfigurationProblem(location: "\(kafkaPropertiesPath).\(key)",
                                     message: "is managed by blendd; set \(managedKafkaProperties[key]!) instead")
            }
    }

    /// What a reload from `old` to `new` changes: settings a running supervisor applies, and
    /// settings that only take effect after a restart (the supervisor says so and keeps the old value).
    public static func reloadPlan(from old: BlendConfiguration, to new: BlendConfiguration) -> (apply: [String], needRestart: [String]) {
        var apply: [String] = [], restart: [String] = []
        for setting in settings where setting.path != "worker_id" && setting.render(old) != setting.render(new) {
            if setting.appliesOnReload { apply.append(setting.path) } else { restart.append(setting.path) }
        }
        if old.kafka.properties != new.kafka.properties { restart.append(kafkaPropertiesPath) }
        if old.models.rankers != new.models.rankers { restart.append(rankersPath) }
        return (apply, restart)
    }
}
