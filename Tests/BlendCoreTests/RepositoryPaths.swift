import Foundation

/// Files of the repository the tests read (schemas, examples), found from this source file.
enum RepositoryPaths {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let schemas = root.appendingPathComponent("schemas")
    static let examples = schemas.appendingPathComponent("examples")

    static func files(in folder: String) throws -> [URL] {
        try FileManager.default.contentsOfDirectory(at: examples.appendingPathComponent(folder), includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "json" }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
    }

    /// `invalid/<code>--<what>.json` names the violation code the example must produce.
    static func expectedCode(of file: URL) -> String {
        String(file.deletingPathExtension().lastPathComponent.split(separator: "--")[0])
    }
}
