import Foundation

/// Clients that hold a server's connections the way broken or hostile ones do: connected and
/// silent, stopped in the middle of a request head, or sending a head of a megabyte. Plain
/// blocking sockets, driven from their own threads.
final class BadHTTPClients: @unchecked Sendable {
    private let lock = NSLock()
    private var sockets: [Int32] = []
    private var _hugeHeaderAnswer = ""
    private let hugeHeaderDone = DispatchSemaphore(value: 0)

    /// - Parameter host: an IPv4 address.
    init(host: String = "127.0.0.1", port: Int, idle: Int, halfSent: Int, hugeHeaderBytes: Int) throws {
        for _ in 0..<idle { sockets.append(try Self.connect(host, port)) }
        for i in 0..<halfSent {
            let fd = try Self.connect(host, port)
            sockets.append(fd)
            Self.send(fd, "GET /healthz HTTP/1.1\r\nHost: \(host)\r\nX-Slow-\(i): waiting for the rest")
        }
        let huge = try Self.connect(host, port)
        sockets.append(huge)
        let thread = Thread { [self] in
            Self.send(huge, "GET /healthz HTTP/1.1\r\nHost: \(host)\r\nX-Huge: " + String(repeating: "a", count: hugeHeaderBytes) + "\r\n\r\n")
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = buffer.withUnsafeMutableBytes { recv(huge, $0.baseAddress, $0.count, 0) }
            lock.withLock { _hugeHeaderAnswer = n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : "" }
            hugeHeaderDone.signal()
        }
        thread.start()
    }

    var count: Int { lock.withLock { sockets.count } }

    /// The first bytes the server answered the huge head with ("" if it only closed).
    func hugeHeaderAnswer(timeout: Double) -> String? {
        guard hugeHeaderDone.wait(timeout: .now() + timeout) == .success else { return nil }
        return lock.withLock { _hugeHeaderAnswer }
    }

    /// How many of the idle and half-sent connections the server still keeps open.
    func stillOpen() -> Int {
        lock.withLock {
            sockets.dropLast().filter { fd in
                var byte: UInt8 = 0
                let n = recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
                return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
            }.count
        }
    }

    func closeAll() {
        lock.withLock {
            sockets.forEach { Glibc.close($0) }
            sockets = []
        }
    }

    deinit { sockets.forEach { Glibc.close($0) } }

    private static func connect(_ host: String, _ port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        inet_pton(AF_INET, host, &address.sin_addr)
        let rc = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard fd >= 0, rc == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            throw NSError(domain: "BadHTTPClients", code: Int(errno), userInfo: [NSLocalizedDescriptionKey: "connect to \(host):\(port): \(reason)"])
        }
        return fd
    }

    /// Sends until done or the server stops taking bytes.
    private static func send(_ fd: Int32, _ text: String) {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }
}
