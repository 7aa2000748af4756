import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import ServiceLifecycle

/// Serves `/healthz /readyz /metrics /status` with Hummingbird, as a lifecycle `Service`.
///
/// Connections live on NIO's event loops, never on Swift's cooperative pool, so idle, half-sent or
/// oversized requests cost a socket each and delay nobody. Graceful shutdown stops accepting, lets
/// in-flight requests finish and returns.
public final class HealthHTTPService: Service, @unchecked Sendable {
    public typealias Responder = @Sendable (HealthEndpoint) async -> HealthResponse

    /// Limits every listener applies; the defaults suit probes and scrapes.
    public struct Limits: Sendable {
        /// A connection with no complete request for this long is closed (slow or stuck clients).
        public var idleTimeout: Duration = .seconds(10)
        /// Request heads larger than this are refused with 431 and the connection closed.
        public var maxHeaderBytes = 16 * 1024
        public var maxHeaderFields = 100
        public var backlog = 256
        public init() {}
    }

    public let address: ListenAddress
    private let limits: Limits
    private let respond: Responder
    private let logger: Logger
    private let lock = NSLock()
    private var boundPort: Int?
    private var bindFailure: (any Error)?
    private var portWaiters: [CheckedContinuation<Int, any Error>] = []

    public init(address: ListenAddress, limits: Limits = Limits(), logger: Logger = Logger(label: "blendd.http"),
                respond: @escaping Responder) {
        self.address = address
        self.limits = limits
        self.logger = logger
        self.respond = respond
    }

    /// The port every listener is bound to, once the first one is; throws if it could not bind.
    public func port() async throws -> Int {
        try await withCheckedThrowingContinuation { continuation in
            let known: Result<Int, any Error>? = lock.withLock {
                if let boundPort { return .success(boundPort) }
                if let bindFailure { return .failure(bindFailure) }
                portWaiters.append(continuation)
                return nil
            }
            if let known { continuation.resume(with: known) }
        }
    }

    public func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.serve(host: self.address.hosts[0], port: self.address.port, first: true) }
            // Further hosts share the first one's port, also when it was picked by the kernel.
            if address.hosts.count > 1 {
                let port = try await port()
                for host in address.hosts.dropFirst() {
                    group.addTask { try await self.serve(host: host, port: port, first: false) }
                }
            }
            try await group.waitForAll()
        }
    }

    private func serve(host: String, port: Int, first: Bool) async throws {
        do {
            try await application(host: host, port: port, first: first).run()
        } catch let error as IOError where host == ListenAddress.anyHost && [EAFNOSUPPORT, EADDRNOTAVAIL].contains(error.errnoCode) {
            logger.notice("no IPv6 on this host: listening on IPv4 only (\(error))")
            try await serve(host: "0.0.0.0", port: port, first: first)
        } catch {
            let failure = HealthHTTPError(address: "\(host):\(port)", underlying: error)
            if first { settle(.failure(failure)) }
            throw failure
        }
    }

    private func application(host: String, port: Int, first: Bool) -> some ApplicationProtocol {
        var decoder = HTTP1Channel.Configuration.DecoderConfiguration()
        decoder.maxHeaderFieldSize = limits.maxHeaderBytes
        decoder.maxHeaderListSize = limits.maxHeaderBytes
        decoder.maxHeaderFieldCount = limits.maxHeaderFields
        let channel = HTTP1Channel.Configuration(idleTimeout: TimeAmount(limits.idleTimeout), httpDecoderConfiguration: decoder)
        return Application(
            responder: EndpointResponder(respond: respond),
            server: .http1(configuration: channel),
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "blendd", backlog: limits.backlog),
            onServerRunning: { [self] channel in
                logger.info("http: listening on \(channel.localAddress.map { "\($0)" } ?? "\(host):\(port)")")
                if first, let bound = channel.localAddress?.port { settle(.success(bound)) }
            },
            logger: logger
        )
    }

    private func settle(_ outcome: Result<Int, any Error>) {
        let waiters = lock.withLock { () -> [CheckedContinuation<Int, any Error>] in
            switch outcome {
            case .success(let port): boundPort = port
            case .failure(let error): bindFailure = error
            }
            defer { portWaiters = [] }
            return portWaiters
        }
        waiters.forEach { $0.resume(with: outcome) }
    }
}

/// Maps a request to an endpoint: GET and HEAD only, the path without its query.
struct EndpointResponder: HTTPResponder {
    typealias Context = BasicRequestContext
    let respond: HealthHTTPService.Responder

    func respond(to request: Request, context: Context) async throws -> Response {
        let answer: HealthResponse
        if request.method != .get && request.method != .head {
            answer = .text(405, "only GET and HEAD\n")
        } else if let endpoint = HealthEndpoint(rawValue: request.uri.path) {
            answer = await respond(endpoint)
        } else {
            answer = .text(404, "not found; try \(HealthEndpoint.allCases.map(\.rawValue).joined(separator: ", "))\n")
        }
        var headers = HTTPFields()
        headers[.contentType] = answer.contentType
        let body = request.method == .head ? ResponseBody() : ResponseBody(byteBuffer: ByteBuffer(string: answer.body))
        return Response(status: HTTPResponse.Status(code: answer.status), headers: headers, body: body)
    }
}

public struct HealthHTTPError: Error, CustomStringConvertible {
    public let address: String
    public let underlying: any Error
    public var description: String { "http: cannot listen on \(address): \(underlying)" }
}
