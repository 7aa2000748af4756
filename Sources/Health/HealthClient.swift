import NIOCore
import NIOHTTP1
import NIOPosix

/// A GET against blendd's own HTTP endpoints, for `blendd status` and the tests. Runs on NIO's
/// event loops, bounded by one deadline for connecting, sending and reading.
public enum HealthClient {
    public static func get(host: String, port: Int, path: String, timeout: Duration = .seconds(5)) async throws -> HealthResponse {
        try await withThrowingTaskGroup(of: HealthResponse.self) { group in
            group.addTask { try await exchange(host: host, port: port, path: path, connectTimeout: timeout) }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw HealthClientError(target: "\(host):\(port)\(path)", reason: "no answer within \(timeout)")
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
    }

    /// The same against a listen setting such as `*:9464` or `localhost:9464`.
    public static func get(_ address: ListenAddress, path: String, timeout: Duration = .seconds(5)) async throws -> HealthResponse {
        try await get(host: address.loopbackHost, port: address.port, path: path, timeout: timeout)
    }

    private static func exchange(host: String, port: Int, path: String, connectTimeout: Duration) async throws -> HealthResponse {
        let target = "\(host):\(port)\(path)"
        let channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(TimeAmount(connectTimeout))
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw HealthClientError(target: target, reason: "cannot connect: \(error)")
        }
        return try await channel.executeThenClose { inbound, outbound in
            var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path)
            head.headers.add(name: "Host", value: host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)")
            head.headers.add(name: "Connection", value: "close")
            try await outbound.write(.head(head))
            try await outbound.write(.end(nil))
            var response: HTTPResponseHead?
            var body = ByteBuffer()
            for try await part in inbound {
                switch part {
                case .head(let h): response = h
                case .body(var chunk): body.writeBuffer(&chunk)
                case .end:
                    guard let response else { break }
                    return HealthResponse(status: Int(response.status.code), contentType: response.headers["content-type"].first ?? "",
                                          body: String(buffer: body))
                }
            }
            throw HealthClientError(target: target, reason: "the connection closed before a complete response")
        }
    }
}

public struct HealthClientError: Error, CustomStringConvertible {
    public let target: String
    public let reason: String
    public var description: String { "http://\(target): \(reason)" }
}
