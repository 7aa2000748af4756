import Foundation

/// Debian's OpenBLAS 0.3.21 does not recognise recent AVX-512 CPUs (AMD Zen 4/5) and falls back to
/// its AVX2 kernels, about half as fast. It reads OPENBLAS_CORETYPE only while the library loads,
/// before `main`, so when the CPU has AVX-512 and the variable is unset, blendd sets it and
/// re-executes itself once (same pid, same arguments). Set OPENBLAS_CORETYPE yourself to choose
/// another kernel set, or BLENDD_OPENBLAS_REEXEC=0 to keep the library's own choice.
enum OpenBLASCoreType {
    static func selectBeforeStart() {
        let env = ProcessInfo.processInfo.environment
        guard env["OPENBLAS_CORETYPE"] == nil, env["BLENDD_OPENBLAS_REEXEC"] != "0",
              let cpuinfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let flags = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") }),
              flags.split(separator: " ").contains("avx512f") else { return }
        setenv("OPENBLAS_CORETYPE", "SkylakeX", 1)
        // Marks the re-executed process so a failing exec can never loop.
        setenv("BLENDD_OPENBLAS_REEXEC", "0", 1)
        let arguments = CommandLine.arguments.map { strdup($0) } + [nil]
        execv("/proc/self/exe", arguments)
        // exec failed (no /proc?): carry on with the library's choice.
        unsetenv("OPENBLAS_CORETYPE")
    }
}
