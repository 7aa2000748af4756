import Foundation
import Logging

/// One log line per event on standard error, as text for people or JSON for log shippers.
/// Metadata (job ids, partitions, worker id) becomes fields in JSON and `key=value` in text.
public struct LogOutput: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public let label: String
    public let format: BlendConfiguration.LogFormat

    public init(label: String, level: Logger.Level, format: BlendConfiguration.LogFormat) {
        self.label = label
        self.logLevel = level
        self.format = format
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    private static let installed = NSLock()
    nonisolated(unsafe) private static var done = false

    /// Installs the handler for the whole process; later calls do nothing (swift-log allows one bootstrap).
    public static func bootstrapOnce(_ config: BlendConfiguration) {
        let first = installed.withLock { () -> Bool in
            defer { done = true }
            return !done
        }
        guard first else { return }
        let level = Logger.Level(rawValue: config.logLevel) ?? .info
        let format = config.logFormat
        LoggingSystem.bootstrap { LogOutput(label: $0, level: level, format: format) }
    }

    public func log(event: LogEvent) {
        let level = event.level, message = event.message
        var all = metadata.merging(event.metadata ?? [:]) { $1 }
        if let error = event.error { all["error"] = "\(error)" }
        let time = CompletionEvent.timestamp(Date())
        var text: String
        switch format {
        case .json:
            var object: [String: String] = ["time": time, "level": level.rawValue, "logger": label, "message": "\(message)"]
            for (k, v) in all { object[k] = "\(v)" }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            text = (try? encoder.encode(object)).map { String(decoding: $0, as: UTF8.self) } ?? "\(message)"
        case .text:
            text = "\(time) \(level.rawValue) \(label): \(message)"
            for k in all.keys.sorted() { text += " \(k)=\(all[k]!)" }
        }
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }
}
