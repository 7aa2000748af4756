import Foundation
import Yams

/// Where a setting's effective value came from, for `config check`.
public enum ConfigurationSource: String, Sendable { case `default`, file, environment, flag }

/// One thing wrong with the configuration, located precisely enough to fix.
public struct ConfigurationProblem: Sendable, Equatable, CustomStringConvertible {
    public let location: String
    public let message: String
    public var description: String { "\(location): \(message)" }
}

/// The result of loading: the typed configuration, where each value came from, and every
/// problem found (loading never stops at the first).
public struct LoadedConfiguration: Sendable {
    public var configuration: BlendConfiguration
    public var sources: [String: ConfigurationSource]
    public var problems: [ConfigurationProblem]

    /// `path = value  (source)` lines with secrets masked, for `config check` and start-up logs.
    public func rendered() -> [String] {
        var lines: [String] = []
        for setting in ConfigurationLoader.settings {
            let raw = setting.render(configuration)
            let shown = setting.isSecret ? ConfigurationLoader.mask(raw) : raw
            let source = sources[setting.path] ?? .default
            lines.append("\(setting.path) = \(shown.isEmpty ? "\"\"" : shown)  (\(source.rawValue))")
        }
        for key in configuration.kafka.properties.keys.sorted() {
            let value = configuration.kafka.properties[key]!
            let shown = ConfigurationLoader.isSecretKafkaProperty(key) ? "****" : value
            lines.append("kafka.properties.\(key) = \(shown)  (\((sources["kafka.properties.\(key)"] ?? .default).rawValue))")
        }
        return lines
    }
}

public enum ConfigurationLoader {
    static let kafkaPropertiesPath = "kafka.properties"
    static let kafkaPropertyEnvironmentPrefix = "BLENDD_KAFKA_PROPERTY_"

    public static let settings: [ConfigurationSetting] = [
        .string("worker_id", \.workerId, "Name of this worker in logs, events and the workers table (default: host-pid)."),
        .string("worker.listen", \.workerListen, "HTTP address of a lone worker's /healthz, /readyz and /metrics (empty: none)."),
        .string("kafka.bootstrap_servers", \.kafka.bootstrapServers, "Kafka bootstrap servers, host:port[,host:port…]."),
        .string("kafka.group_id", \.kafka.groupId, "Consumer group shared by all workers."),
        .string("kafka.topics.jobs", \.kafka.jobsTopic, "Topic the jobs arrive on."),
        .string("kafka.topics.events", \.kafka.eventsTopic, "Topic completion events are published to."),
        .string("kafka.topics.dlq", \.kafka.dlqTopic, "Dead-letter topic for rejected messages."),
        .int("kafka.max_buffered_messages", \.kafka.maxBufferedMessages, "Messages buffered before fetching pauses."),
        .string("postgres.url", \.postgres.url, secret: true, "PostgreSQL URL or conninfo string."),
        .int("postgres.pool_size", \.postgres.poolSize, "Connections per worker process."),
        .int("postgres.statement_timeout_ms", \.postgres.statementTimeoutMilliseconds, "Longest a statement may run (0: no limit)."),
        .int("postgres.keepalive_seconds", \.postgres.keepaliveSeconds, "TCP keepalive idle time; a silent server is declared dead after about twice this."),
        .string("models.ranker", \.models.ranker, "PairRM checkpoint directory (empty: weight-free consensus ranker)."),
        .string("models.fuser", \.models.fuser, "GenFuser checkpoint directory (empty: return the top-ranked candidate)."),
        .int("models.threads", \.models.threads, "Inference threads (0: one per core)."),
        .choice("models.ranker_precision", \.models.rankerPrecision, "PairRM arithmetic: fp32 (exact to the reference), bf16 or int8."),
        .choice("models.fuser_precision", \.models.fuserPrecision, "GenFuser arithmetic: fp32 (exact to the reference), bf16 or int8."),
        .int("batching.max_jobs", \.batching.maxJobs, "Jobs per micro-batch."),
        .int("batching.max_pairs", \.batching.maxPairs, "Pair sequences per ranker forward pass."),
        .int("batching.max_tokens", \.batching.maxTokens, "Padded tokens per forward pass."),
        .int("batching.max_wait_ms", \.batching.maxWaitMilliseconds, "Longest wait for a batch to fill, in milliseconds."),
        .int("limits.max_candidates", \.limits.maxCandidates, "Candidates per job."),
        .int("limits.max_text_bytes", \.limits.maxTextBytes, "UTF-8 bytes of one text."),
        .int("limits.max_job_bytes", \.limits.maxJobBytes, "UTF-8 bytes of one job message."),
        .int("limits.max_metadata_bytes", \.limits.maxMetadataBytes, "UTF-8 bytes of a job's metadata."),
        .int("limits.max_model_name_length", \.limits.maxModelNameLength, "Length of a candidate's model name."),
        .int("limits.max_top_k", \.limits.maxTopK, "Largest fuse.top_k."),
        .int("limits.max_new_tokens", \.limits.maxNewTokens, "Largest fuse.max_new_tokens."),
        .int("limits.max_beams", \.limits.maxBeams, "Largest fuse.num_beams."),
        .int("retry.initial_ms", \.retry.initialMilliseconds, "First retry delay after a transient fault."),
        .int("retry.max_ms", \.retry.maxMilliseconds, "Longest retry delay."),
        .double("retry.multiplier", \.retry.multiplier, "Growth of the delay per attempt."),
        .double("retry.jitter", \.retry.jitter, "Random fraction of each delay (0…1)."),
        .int("outbox.poll_ms", \.outbox.pollMilliseconds, "First idle interval of the outbox relay (it wakes on NOTIFY, on stored batches and when a retry falls due)."),
        .int("outbox.max_idle_ms", \.outbox.maxIdleMilliseconds, "Longest idle interval of the outbox relay; the interval doubles up to it."),
        .int("outbox.batch_size", \.outbox.batchSize, "Events the relay publishes per round."),
        .double("shutdown.drain_seconds", \.drainSeconds, "Time a stopping worker has to finish its batch."),
        .int("supervisor.workers", \.supervisor.workers, "Worker processes per supervisor."),
        .string("supervisor.listen", \.supervisor.listen, "Address of /healthz, /readyz and /metrics."),
        .double("supervisor.heartbeat_seconds", \.supervisor.heartbeatSeconds, "Interval of worker heartbeats."),
        .double("supervisor.heartbeat_timeout_seconds", \.supervisor.heartbeatTimeoutSeconds, "Silence after which a worker counts as hung."),
        .double("supervisor.stall_seconds", \.supervisor.stallSeconds, "No progress with lag for this long counts as a stall."),
        .int("supervisor.memory_limit_mb", \.supervisor.memoryLimitMegabytes, "Worker RSS limit in MiB (0: none)."),
        .int("supervisor.restart_initial_ms", \.supervisor.restartInitialMilliseconds, "First restart delay."),
        .int("supervisor.restart_max_ms", \.supervisor.restartMaxMilliseconds, "Longest restart delay."),
        .int("supervisor.crash_loop_restarts", \.supervisor.crashLoopRestarts, "Restarts within the window that mark the supervisor degraded."),
        .double("supervisor.crash_loop_window_seconds", \.supervisor.crashLoopWindowSeconds, "Window for counting restarts."),
        .double("supervisor.dead_worker_retention_seconds", \.supervisor.deadWorkerRetentionSeconds, "Age after which rows of dead workers are deleted."),
        .string("log.level", \.logLevel, "trace, debug, info, notice, warning, error or critical."),
        .choice("log.format", \.logFormat, "text or json."),
    ]

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
        loaded.problems += check(loaded.configuration).map { ConfigurationProblem(location: $0.0, message: $0.1) }
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
            var value = environment[name]!
            var variable = name
            if name.hasSuffix("_FILE") {
                variable = String(name.dropLast(5))
                guard let data = FileManager.default.contents(atPath: value) else {
                    loaded.problems.append(ConfigurationProblem(location: name, message: "cannot read the file \(value)"))
                    continue
                }
                value = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            }
            if variable.hasPrefix(kafkaPropertyEnvironmentPrefix) {
                let property = variable.dropFirst(kafkaPropertyEnvironmentPrefix.count).lowercased().replacingOccurrences(of: "_", with: ".")
                loaded.configuration.kafka.properties[property] = value
                loaded.sources["\(kafkaPropertiesPath).\(property)"] = .environment
            } else if let setting = settingsByEnvironment[variable] ?? aliases[variable].flatMap({ settingsByPath[$0] }) {
                assign(setting: setting, value: .string(value), source: .environment, location: name, into: &loaded)
            }
            // Other BLENDD_* variables belong to the scripts and tests (e.g. BLENDD_TEST_*): not ours to judge.
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
                       into loaded: inout LoadedConfiguration) {
        do {
            try setting.apply(&loaded.configuration, value)
            loaded.sources[setting.path] = source
        } catch {
            let seen = setting.isSecret ? "(hidden)" : (value.asString.map { "\"\($0)\"" } ?? "null")
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

    /// Range and consistency checks of the typed values.
    static func check(_ c: BlendConfiguration) -> [(String, String)] {
        var p: [(String, String)] = []
        func need(_ ok: Bool, _ path: String, _ message: String) { if !ok { p.append((path, message)) } }
        need(!c.kafka.bootstrapServers.trimmingCharacters(in: .whitespaces).isEmpty, "kafka.bootstrap_servers", "must not be empty")
        need(!c.kafka.groupId.isEmpty, "kafka.group_id", "must not be empty")
        let topics = [c.kafka.jobsTopic, c.kafka.eventsTopic, c.kafka.dlqTopic]
        need(Set(topics).count == 3, "kafka.topics", "jobs, events and dlq must be three different topics (are \(topics.joined(separator: ", ")))")
        need(c.kafka.maxBufferedMessages >= 1, "kafka.max_buffered_messages", "must be at least 1 (is \(c.kafka.maxBufferedMessages))")
        for key in ["enable.auto.offset.store", "group.id", "bootstrap.servers"] where c.kafka.properties[key] != nil {
            p.append(("kafka.properties.\(key)", "is managed by blendd; set it through its own setting or not at all"))
        }
        need(!c.postgres.url.isEmpty, "postgres.url", "must not be empty")
        need((1...256).contains(c.postgres.poolSize), "postgres.pool_size", "must be between 1 and 256 (is \(c.postgres.poolSize))")
        need(c.models.threads >= 0, "models.threads", "must be 0 (one per core) or positive (is \(c.models.threads))")
        for (path, dir) in [("models.ranker", c.models.ranker), ("models.fuser", c.models.fuser)] where !dir.isEmpty {
            var isDirectory: ObjCBool = false
            need(FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory) && isDirectory.boolValue, path, "\(dir) is not a directory")
        }
        need(c.batching.maxJobs >= 1, "batching.max_jobs", "must be at least 1 (is \(c.batching.maxJobs))")
        need(c.batching.maxPairs >= 1, "batching.max_pairs", "must be at least 1 (is \(c.batching.maxPairs))")
        need(c.batching.maxTokens >= 512, "batching.max_tokens", "must be at least 512 (is \(c.batching.maxTokens))")
        need(c.batching.maxWaitMilliseconds >= 0, "batching.max_wait_ms", "must not be negative (is \(c.batching.maxWaitMilliseconds))")
        p += c.limits.problems.map { ("limits", $0) }
        need(c.retry.initialMilliseconds >= 1, "retry.initial_ms", "must be at least 1 (is \(c.retry.initialMilliseconds))")
        need(c.retry.maxMilliseconds >= c.retry.initialMilliseconds, "retry.max_ms", "must be at least retry.initial_ms (\(c.retry.initialMilliseconds))")
        need(c.retry.multiplier >= 1, "retry.multiplier", "must be at least 1 (is \(c.retry.multiplier))")
        need((0...1).contains(c.retry.jitter), "retry.jitter", "must be between 0 and 1 (is \(c.retry.jitter))")
        need(c.outbox.pollMilliseconds >= 1, "outbox.poll_ms", "must be at least 1")
        need(c.outbox.maxIdleMilliseconds >= c.outbox.pollMilliseconds, "outbox.max_idle_ms", "must be at least outbox.poll_ms (\(c.outbox.pollMilliseconds))")
        need(c.postgres.statementTimeoutMilliseconds >= 0, "postgres.statement_timeout_ms", "must be 0 (no limit) or positive (is \(c.postgres.statementTimeoutMilliseconds))")
        need(c.postgres.keepaliveSeconds >= 1, "postgres.keepalive_seconds", "must be at least 1 (is \(c.postgres.keepaliveSeconds))")
        need(c.outbox.batchSize >= 1, "outbox.batch_size", "must be at least 1")
        need(c.drainSeconds > 0, "shutdown.drain_seconds", "must be positive (is \(c.drainSeconds))")
        let s = c.supervisor
        need(s.workers >= 1, "supervisor.workers", "must be at least 1 (is \(s.workers))")
        need(s.listen.contains(":"), "supervisor.listen", "must be host:port (is \(s.listen))")
        need(s.heartbeatSeconds > 0, "supervisor.heartbeat_seconds", "must be positive")
        need(s.heartbeatTimeoutSeconds > s.heartbeatSeconds * 2, "supervisor.heartbeat_timeout_seconds",
             "must exceed two heartbeat intervals (\(s.heartbeatSeconds * 2) s), is \(s.heartbeatTimeoutSeconds)")
        need(s.memoryLimitMegabytes >= 0, "supervisor.memory_limit_mb", "must be 0 (no limit) or positive")
        need(s.restartMaxMilliseconds >= s.restartInitialMilliseconds, "supervisor.restart_max_ms", "must be at least supervisor.restart_initial_ms")
        need(s.crashLoopRestarts >= 1, "supervisor.crash_loop_restarts", "must be at least 1")
        let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
        need(levels.contains(c.logLevel), "log.level", "must be one of \(levels.joined(separator: ", ")) (is \(c.logLevel))")
        return p
    }

    /// Passwords in URLs and whole secret values are replaced by `****`.
    public static func mask(_ value: String) -> String {
        guard !value.isEmpty else { return value }
        if let scheme = value.range(of: "://"), let at = value.range(of: "@", range: scheme.upperBound..<value.endIndex) {
            let userInfo = value[scheme.upperBound..<at.lowerBound]
            if let colon = userInfo.firstIndex(of: ":") {
                return String(value[..<value.index(after: colon)]) + "****" + String(value[at.lowerBound...])
            }
            return value
        }
        // conninfo form: key=value pairs
        return value.split(separator: " ").map { part in
            part.lowercased().hasPrefix("password=") ? "password=****" : String(part)
        }.joined(separator: " ")
    }

    public static func isSecretKafkaProperty(_ key: String) -> Bool {
        let k = key.lowercased()
        return ["password", "secret", "oauthbearer.config", "token", "ssl.key.pem", "ssl.certificate.pem", "private"]
            .contains { k.contains($0) } || k == "ssl_key" || k.hasSuffix(".key")
    }
}
