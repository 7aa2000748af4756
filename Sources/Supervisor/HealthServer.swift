import Foundation

/// A small HTTP/1.1 server for /healthz, /readyz, /metrics and /status: GET only, one
/// request per connection, on its own thread. Enough for probes and Prometheus scrapes
/// without a web framework in the image.
final class HealthServer: @unchecked Sendable {
    struct Response: Sendable {
        var status: Int
        var contentType: String
        var body: String
    }

    private let socketFD: Int32
    let port: UInt16
    private let handler: @Sendable (String) async -> Response

    /// - Parameter address: `host:port`; port 0 picks a free one.
    init(address: String, handler: @escaping @Sendable (String) async -> Response) throws {
        guard let colon = address.lastIndex(of: ":"), let requested = UInt16(address[address.index(after: colon)...]) else {
            throw SupervisorError.listen("listen address must be host:port, got \(address)")
        }
        let host = String(address[..<colon])
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SupervisorError.listen("socket: \(String(cString: strerror(errno)))") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = requested.bigEndian
        let ip = host.isEmpty || host == "0.0.0.0" || host == "*" ? "0.0.0.0" : (host == "localhost" ? "127.0.0.1" : host)
        guard inet_pton(AF_INET, ip, &addr.sin_addr) == 1 else {
            close(fd)
            throw SupervisorError.listen("listen host must be an IPv4 address, got \(host)")
        }
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(fd, 64) == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw SupervisorError.listen("cannot listen on \(address): \(message)")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        socketFD = fd
        port = UInt16(bigEndian: actual.sin_port)
        self.handler = handler
        let thread = Thread { [self] in self.acceptLoop() }
        thread.name = "blendd.supervisor.http"
        thread.start()
    }

    private func acceptLoop() {
        while true {
            let client = accept(socketFD, nil, nil)
            if client < 0 { if errno == EINTR { continue }; return }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            Task { await self.serve(client) }
        }
    }

    private func serve(_ client: Int32) async {
        defer { close(client) }
        var request: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while request.count < 16384 {
            let n = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            request += buffer[0..<n]
            if request.count >= 4, request.suffix(4) == [13, 10, 13, 10] { break }
            if let text = String(bytes: request, encoding: .utf8), text.contains("\r\n\r\n") || text.contains("\n\n") { break }
        }
        let line = String(decoding: request.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self).split(separator: " ")
        let response: Response
        if line.count < 2 {
            response = Response(status: 400, contentType: "text/plain", body: "bad request\n")
        } else if line[0] != "GET" && line[0] != "HEAD" {
            response = Response(status: 405, contentType: "text/plain", body: "only GET\n")
        } else {
            let path = String(line[1].split(separator: "?").first ?? "")
            response = await handler(path)
        }
        let reason = [200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"][response.status] ?? "Status"
        let body = Array(response.body.utf8)
        let head = "HTTP/1.1 \(response.status) \(reason)\r\nContent-Type: \(response.contentType)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        let bytes = Array(head.utf8) + (line.first == "HEAD" ? [] : body)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }

    func shutdown() { Glibc.close(socketFD) }
}
