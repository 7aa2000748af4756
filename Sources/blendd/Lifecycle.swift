import Foundation
import Logging
import ServiceLifecycle

extension ServiceGroupConfiguration {
    /// blendd's long-running commands: SIGTERM and SIGINT shut down gracefully; a shutdown that
    /// outlasts the drain time (plus a margin for leaving the group and flushing) is cancelled.
    static func lifecycle(services: [ServiceConfiguration], drainSeconds: Double, logger: Logger) -> ServiceGroupConfiguration {
        var configuration = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        configuration.maximumGracefulShutdownDuration = .milliseconds(Int64((drainSeconds + 10) * 1000))
        return configuration
    }
}

/// The path of the running executable (not argv[0], which may be a bare name found on PATH).
enum ExecutablePath {
    static var current: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}
