import Foundation
import XCTest

/// The container image's runtime packages cover every shared library the binary needs
/// directly (Swift's own libraries are linked statically in the image).
final class RuntimeLibrariesTests: XCTestCase {
    func testTheImageInstallsEveryLibraryTheBinaryLinks() throws {
        let dockerfile = try String(contentsOf: CommandLineTests.repositoryRoot.appendingPathComponent("deploy/Dockerfile"), encoding: .utf8)
        // The runtime stage is the last FROM; its apt-get install line lists the packages.
        let runtime = dockerfile.components(separatedBy: "\nFROM ").last!
        let installed = Set(runtime.components(separatedBy: "--no-install-recommends").dropFirst().first!
            .components(separatedBy: "&&")[0].split(whereSeparator: { $0 == " " || $0 == "\\" || $0 == "\n" }).map(String.init))
        // Present in debian:bookworm-slim itself.
        let base: Set<String> = ["libc6", "libgcc-s1", "libstdc++6", "zlib1g"]

        let needed = try run(["/usr/bin/readelf", "-d", CommandLineTests.blenddURL.path]).split(separator: "\n")
            .compactMap { line -> String? in
                guard line.contains("(NEEDED)"), let open = line.firstIndex(of: "["), let close = line.lastIndex(of: "]") else { return nil }
                return String(line[line.index(after: open)..<close])
            }
        XCTAssertTrue(needed.contains { $0.hasPrefix("libpq") } && needed.contains { $0.hasPrefix("librdkafka") }, "\(needed)")
        let ldd = try run(["/usr/bin/ldd", CommandLineTests.blenddURL.path])
        for soname in needed {
            guard let line = ldd.split(separator: "\n").first(where: { $0.trimmingCharacters(in: .whitespaces).hasPrefix(soname + " ") }),
                  let arrow = line.range(of: "=> ") else { continue }
            let path = String(line[arrow.upperBound...].split(separator: " ")[0])
            if path.hasPrefix("/opt/swift") || path.contains("/swift/") || soname.hasPrefix("libswift") || soname.hasPrefix("libFoundation")
                || soname.hasPrefix("lib_Foundation") || soname.hasPrefix("libdispatch") || soname.hasPrefix("libBlocksRuntime") {
                continue  // Swift runtime: statically linked by --static-swift-stdlib in the image
            }
            // ldd may print the /lib path of a merged-/usr system while dpkg records /usr/lib, or a symlink.
            let candidates = [path, "/usr" + path, URL(fileURLWithPath: path).resolvingSymlinksInPath().path]
            var found: String?
            for candidate in candidates where found == nil {
                let answer = try run(["/usr/bin/dpkg", "-S", candidate])
                if let first = answer.split(separator: ":").first, !answer.isEmpty { found = first.trimmingCharacters(in: .whitespaces) }
            }
            guard let owner = found else {
                XCTFail("no Debian package owns \(path) (\(soname))")
                continue
            }
            XCTAssertTrue(installed.contains(owner) || base.contains(owner),
                          "\(soname) comes from \(owner), which the runtime image does not install (it has \(installed.sorted()))")
        }
    }

    private func run(_ arguments: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: arguments[0])
        p.arguments = Array(arguments.dropFirst())
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}
