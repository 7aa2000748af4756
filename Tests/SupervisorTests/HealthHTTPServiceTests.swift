import Foundation
import Health
import Logging
import ServiceLifecycle
import XCTest

/// The Hummingbird HTTP service on real sockets: addresses, endpoints, bad clients, shutdown.
final class HealthHTTPServiceTests: XCTestCase {
    private func start(_ listen: String, respond: @escaping HealthHTTPService.Responder = { endpoint in
        .text(200, "\(endpoint.rawValue) ok\n")
    }) async throws -> (HealthHTTPService, ServiceGroup, Task<Void, any Error>) {
        let service = HealthHTTPService(address: try ListenAddress(parsing: listen), respond: respond)
        let group = ServiceGroup(configuration: .init(services: [.init(service: service)], logger: Logger(label: "test")))
        let running = Task { try await group.run() }
        _ = try await service.port()
        return (service, group, running)
    }

    private func stop(_ group: ServiceGroup, _ running: Task<Void, any Error>) async throws {
        await group.triggerGracefulShutdown()
        try await running.value
    }

    /// A raw request, for methods and heads HealthClient does not send.
    private func raw(_ request: String, port: Int) throws -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        let rc = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        XCTAssertEqual(rc, 0)
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = Array(request.utf8).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            answer += buffer[0..<n]
        }
        return String(decoding: answer, as: UTF8.self)
    }

    func testListenAddressesNameTheSocketsToBind() throws {
        let cases: [(String, [String], Int)] = [
            ("127.0.0.1:9464", ["127.0.0.1"], 9464),
            ("*:9464", ["::"], 9464),
            (":80", ["::"], 80),
            ("[::]:0", ["::"], 0),
            ("[::1]:9464", ["::1"], 9464),
            ("localhost:9464", ["127.0.0.1", "::1"], 9464),
            ("0.0.0.0:1", ["0.0.0.0"], 1),
            ("blendd.internal:65535", ["blendd.internal"], 65535),
        ]
        for (text, hosts, port) in cases {
            let address = try ListenAddress(parsing: text)
            XCTAssertEqual(address.hosts, hosts, text)
            XCTAssertEqual(address.port, port, text)
        }
        for bad in ["9464", "::1:9464", "[::1]9464", "[::1", "host:", "host:65536", "host:-1", "host:http", ""] {
            XCTAssertThrowsError(try ListenAddress(parsing: bad), bad) { error in
                XCTAssertTrue("\(error)".hasPrefix("listen address \"\(bad)\": "), "\(error)")
            }
        }
    }

    func testWildcardAndLocalhostListenOnIPv4AndIPv6() async throws {
        for listen in ["*:0", "localhost:0"] {
            let (service, group, running) = try await start(listen)
            let port = try await service.port()
            for host in ["127.0.0.1", "::1"] {
                let answer = try await HealthClient.get(host: host, port: port, path: "/healthz")
                XCTAssertEqual(answer.status, 200, "\(listen) via \(host)")
                XCTAssertEqual(answer.body, "/healthz ok\n", "\(listen) via \(host)")
            }
            try await stop(group, running)
        }
    }

    func testAnIPv6OnlyAddressDoesNotAnswerOnIPv4() async throws {
        let (service, group, running) = try await start("[::1]:0")
        let port = try await service.port()
        let answer = try await HealthClient.get(host: "::1", port: port, path: "/readyz")
        XCTAssertEqual(answer.body, "/readyz ok\n")
        do {
            _ = try await HealthClient.get(host: "127.0.0.1", port: port, path: "/readyz", timeout: .seconds(2))
            XCTFail("127.0.0.1 answered a listener bound to ::1")
        } catch let error as HealthClientError {
            XCTAssertTrue(error.reason.hasPrefix("cannot connect"), error.description)
        }
        try await stop(group, running)
    }

    func testEndpointsMethodsAndUnknownPaths() async throws {
        let (service, group, running) = try await start("127.0.0.1:0") { endpoint in
            endpoint == .readyz ? .text(503, "postgres: down\n") : HealthResponse(status: 200, contentType: "application/json", body: "{}")
        }
        let port = try await service.port()
        let status = try await HealthClient.get(host: "127.0.0.1", port: port, path: "/status?verbose=1")
        XCTAssertEqual(status, HealthResponse(status: 200, contentType: "application/json", body: "{}"), "the query is not part of the path")
        let ready = try await HealthClient.get(host: "127.0.0.1", port: port, path: "/readyz")
        XCTAssertEqual(ready.status, 503)
        XCTAssertEqual(ready.body, "postgres: down\n")
        let missing = try await HealthClient.get(host: "127.0.0.1", port: port, path: "/health")
        XCTAssertEqual(missing.status, 404)
        XCTAssertEqual(missing.body, "not found; try /healthz, /readyz, /metrics, /status\n")
        let post = try raw("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", port: port)
        XCTAssertTrue(post.hasPrefix("HTTP/1.1 405"), post)
        let head = try raw("HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", port: port)
        XCTAssertTrue(head.hasPrefix("HTTP/1.1 200"), head)
        XCTAssertTrue(head.hasSuffix("\r\n\r\n"), "HEAD has no body: \(head)")
        let garbage = try raw("\u{1}\u{2}NOT HTTP AT ALL\r\n\r\n", port: port)
        XCTAssertTrue(garbage.isEmpty || garbage.hasPrefix("HTTP/1.1 400"), garbage)
        try await stop(group, running)
    }

    func testHealthzAnswersWithin100msWhileBadClientsHoldConnections() async throws {
        let (service, group, running) = try await start("127.0.0.1:0")
        let port = try await service.port()
        let clients = try BadHTTPClients(port: port, idle: 200, halfSent: 50, hugeHeaderBytes: 1 << 20)
        // The 1 MB head is refused after its first 16 KB, with 431 or by closing.
        let refusal = try XCTUnwrap(clients.hugeHeaderAnswer(timeout: 5), "the 1 MB head is answered or closed")
        XCTAssertTrue(refusal.isEmpty || refusal.hasPrefix("HTTP/1.1 431") || refusal.hasPrefix("HTTP/1.1 400"), refusal)
        var latencies: [Duration] = []
        for _ in 0..<40 {
            let started = ContinuousClock.now
            let answer = try await HealthClient.get(host: "127.0.0.1", port: port, path: "/healthz", timeout: .seconds(2))
            let took = ContinuousClock.now - started
            XCTAssertEqual(answer.status, 200)
            latencies.append(took)
            try await Task.sleep(for: .milliseconds(25))
        }
        let sorted = latencies.sorted()
        // Other processes share the two cores here: the bound is held by 9 in 10 probes, and none
        // may take long enough to fail a probe.
        XCTAssertLessThan(sorted[35], .milliseconds(100), "90th percentile of /healthz with \(clients.count) bad connections: \(latencies)")
        XCTAssertLessThan(sorted.last!, .seconds(1), "slowest /healthz with \(clients.count) bad connections: \(latencies)")
        print("healthz under bad clients (in process): median \(sorted[20]), slowest \(sorted.last!) of 40 probes")
        XCTAssertEqual(clients.stillOpen(), 250, "idle and half-sent connections are still held while the probes run")
        print("1 MB head answered: \(refusal.split(separator: "\r\n").first ?? "closed")")
        clients.closeAll()
        try await stop(group, running)
    }

    func testIdleConnectionsAreClosedAfterTheIdleTimeout() async throws {
        var limits = HealthHTTPService.Limits()
        limits.idleTimeout = .milliseconds(300)
        let service = HealthHTTPService(address: try ListenAddress(parsing: "127.0.0.1:0"), limits: limits) { _ in .text(200, "ok\n") }
        let group = ServiceGroup(configuration: .init(services: [.init(service: service)], logger: Logger(label: "test")))
        let running = Task { try await group.run() }
        let clients = try BadHTTPClients(port: try await service.port(), idle: 5, halfSent: 5, hugeHeaderBytes: 1)
        XCTAssertEqual(clients.stillOpen(), 10)
        try await Task.sleep(for: .seconds(1.5))
        XCTAssertEqual(clients.stillOpen(), 0, "silent and half-sent connections are dropped")
        try await stop(group, running)
    }

    func testGracefulShutdownStopsListening() async throws {
        let (service, group, running) = try await start("127.0.0.1:0")
        let port = try await service.port()
        try await stop(group, running)
        do {
            _ = try await HealthClient.get(host: "127.0.0.1", port: port, path: "/healthz", timeout: .seconds(2))
            XCTFail("still answering after shutdown")
        } catch let error as HealthClientError {
            XCTAssertTrue(error.reason.hasPrefix("cannot connect"), error.description)
        }
    }

    func testAnAddressInUseFailsTheServiceWithTheAddress() async throws {
        let (first, group, running) = try await start("127.0.0.1:0")
        let port = try await first.port()
        let second = HealthHTTPService(address: try ListenAddress(parsing: "127.0.0.1:\(port)")) { _ in .text(200, "ok\n") }
        do {
            try await second.run()
            XCTFail("bound a port in use")
        } catch {
            XCTAssertTrue("\(error)".hasPrefix("http: cannot listen on 127.0.0.1:\(port): "), "\(error)")
        }
        do {
            _ = try await second.port()
            XCTFail("a failed service has no port")
        } catch {}
        try await stop(group, running)
    }
}
