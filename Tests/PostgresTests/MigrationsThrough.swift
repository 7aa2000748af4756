import BlendTestSupport
import Foundation

extension DatabaseTestCase {
    /// A directory holding the repository's migrations up to `last`, for tests that write rows
    /// with an older schema and then migrate them; the caller removes it.
    func migrations(through last: Int) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("migrations-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: RepositoryLayout.migrations)
        where name.hasSuffix(".sql") && Int(name.prefix(4))! <= last {
            try FileManager.default.copyItem(atPath: RepositoryLayout.migrations + "/" + name, toPath: dir.appendingPathComponent(name).path)
        }
        return dir.path
    }
}
