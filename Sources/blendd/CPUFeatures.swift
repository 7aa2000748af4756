import Foundation

/// What blendd needs from the CPU, checked before anything runs.
enum CPUFeatures {
    static let flags: Set<Substring> = {
        guard let cpuinfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return [] }
        return Set(line.split(separator: " "))
    }()

    /// The inference kernels are compiled for Haswell-level x86-64 (AVX2, FMA; see Package.swift). On an
    /// older CPU they would die with SIGILL on the first job, so refuse to start with a clear message.
    static func requireInferenceSupport() {
        #if arch(x86_64)
        guard !flags.isEmpty else { return }  // no /proc/cpuinfo: cannot tell, go on
        let missing = ["avx2", "fma"].filter { !flags.contains(Substring($0)) }
        if !missing.isEmpty {
            FileHandle.standardError.write(Data("error: this CPU lacks \(missing.joined(separator: ", ")); blendd's inference kernels need an x86-64 CPU with AVX2 and FMA (Intel Haswell, AMD Zen or newer)\n".utf8))
            exit(1)
        }
        #endif
    }

    /// Debian's OpenBLAS 0.3.21 does not recognise recent AVX-512 CPUs (AMD Zen 4/5) and falls back to
    /// its AVX2 kernels. It reads OPENBLAS_CORETYPE only while the library loads, before `main`, so when
    /// the CPU has AVX-512 and the variable is unset, blendd sets it and re-executes itself once (same pid,
    /// same arguments). Set OPENBLAS_CORETYPE yourself to choose another kernel set, or
    /// BLENDD_OPENBLAS_REEXEC=0 to keep the library's own choice.
    static let reexecutedMarker = "BLENDD_OPENBLAS_CORETYPE_SET_BY_BLENDD"

    static func selectOpenBLASCoreType() {
        let env = ProcessInfo.processInfo.environment
        guard env["OPENBLAS_CORETYPE"] == nil, env["BLENDD_OPENBLAS_REEXEC"] != "0", flags.contains("avx512f") else { return }
        setenv("OPENBLAS_CORETYPE", "SkylakeX", 1)
        // Marks the re-executed process so a failing exec can never loop, and says the core type was ours, so
        // benchmark baselines run with what the machine exported (`BenchBaseline`).
        setenv("BLENDD_OPENBLAS_REEXEC", "0", 1)
        setenv(reexecutedMarker, "1", 1)
        let arguments = CommandLine.arguments.map { strdup($0) } + [nil]
        // The executable's real path, not /proc/self/exe: the kernel names a process after the file
        // it executes, and ps, pgrep and journald should see `blendd`, not `exe`.
        if let path = realpath("/proc/self/exe", nil) { execv(path, arguments) }
        // exec failed (no /proc?): carry on with the library's choice.
        unsetenv("OPENBLAS_CORETYPE")
    }
}
