// swift-tools-version: 6.1
import PackageDescription

// Module layout and dependency direction follow docs/architecture (shared/design):
// blendd -> Supervisor, Worker -> Inference, Kafka, Postgres, BlendCore.
// Inference, Kafka and Postgres depend only on BlendCore and their C modules.
#if arch(x86_64)
let inferenceCPUFlags: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell"])]
#else
let inferenceCPUFlags: [SwiftSetting] = []
#endif

let package = Package(
    name: "blendd",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "blendd", targets: ["blendd"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        // System libraries from Debian, found through pkg-config.
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq",
                       providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CRdKafka", pkgConfig: "rdkafka",
                       providers: [.apt(["librdkafka-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),

        // bf16 and int8 kernels with intrinsics and runtime CPU dispatch; optimized in debug builds too.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O2"])]),

        .target(name: "BlendCore", dependencies: [
            "Yams",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
        ]),
        .target(name: "Postgres", dependencies: [
            "CLibPQ", "BlendCore",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "Kafka", dependencies: [
            "CRdKafka", "BlendCore",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Optimized in debug builds too: the kernels' SIMD code is ~100× slower unoptimized, which would make
        // the model parity tests (and `swift run` in debug) crawl. On x86-64 the kernels target Haswell-level
        // (AVX2 + FMA, every x86 server CPU since 2013): SIMD8 becomes one ymm register and multiply-adds fuse;
        // `blendd` checks the CPU at start-up and says so instead of crashing on an older one.
        .target(name: "Inference", dependencies: ["COpenBLAS", "CKernels", "BlendCore"],
                swiftSettings: [.unsafeFlags(["-O"], .when(configuration: .debug))] + inferenceCPUFlags),
        .target(name: "Worker", dependencies: [
            "BlendCore", "Postgres", "Kafka", "Inference",
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        // The HTTP endpoints (/healthz, /readyz, /metrics, /status) as a lifecycle service, shared by the
        // supervisor and by a worker run alone.
        .target(name: "Health", dependencies: [
            "BlendCore",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "Supervisor", dependencies: [
            "BlendCore", "Worker", "Health",
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // `blendd --version` names the git commit of the build.
        .plugin(name: "BuildCommit", capability: .buildTool()),
        .executableTarget(name: "blendd", dependencies: [
            "BlendCore", "Postgres", "Kafka", "Inference", "Worker", "Supervisor", "Health",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
        ], plugins: ["BuildCommit"]),

        // Shared by the test targets only: throwaway databases, repository paths.
        .target(name: "BlendTestSupport", dependencies: ["Postgres"], path: "Sources/BlendTestSupport"),

        .testTarget(name: "BlendCoreTests", dependencies: ["BlendCore", "Yams"]),
        .testTarget(name: "PostgresTests", dependencies: ["Postgres", "BlendTestSupport"]),
        .testTarget(name: "KafkaTests", dependencies: ["Kafka", "CRdKafka", "BlendTestSupport"]),
        .testTarget(name: "InferenceTests", dependencies: ["Inference", "BlendCore"]),
        .testTarget(name: "WorkerTests", dependencies: ["Worker", "Inference", "BlendCore", "Postgres", "BlendTestSupport"]),
        .testTarget(name: "SupervisorTests", dependencies: [
            "Supervisor", "Health", "BlendCore", "Kafka", "Postgres", "BlendTestSupport",
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        // Runs the built executable; depends on it so `swift build --build-tests` builds it first.
        .testTarget(name: "CLITests", dependencies: [
            "blendd", "Health", "BlendTestSupport",
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
    ]
)
