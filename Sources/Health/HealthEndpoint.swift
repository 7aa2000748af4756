/// The HTTP endpoints blendd serves for probes, scrapes and `blendd status`.
public enum HealthEndpoint: String, Sendable, CaseIterable {
    /// Liveness: the process answers. Never depends on a dependency.
    case healthz = "/healthz"
    /// Readiness: the process can do its work (dependencies reachable, workers running).
    case readyz = "/readyz"
    /// Prometheus text exposition.
    case metrics = "/metrics"
    /// A JSON view of the process for `blendd status`.
    case status = "/status"
}

/// What an endpoint answers; the HTTP service adds framing and headers.
public struct HealthResponse: Sendable, Equatable {
    public var status: Int
    public var contentType: String
    public var body: String

    public init(status: Int, contentType: String = "text/plain; charset=utf-8", body: String) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    public static func text(_ status: Int, _ body: String) -> HealthResponse { HealthResponse(status: status, body: body) }
}
