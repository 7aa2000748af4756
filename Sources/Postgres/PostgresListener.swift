import CLibPQ
import Dispatch
import Foundation
import Logging

/// LISTENs on PostgreSQL channels over a connection of its own, on a thread of its own. The
/// thread sleeps in poll(2) on the connection's socket and a wake pipe, so waiting for a
/// notification costs no queries and no CPU, and never blocks Swift's cooperative pool.
///
/// A broken connection is reopened with backoff; every (re)connect is reported as `.listening`
/// because notifications sent while the listener was away are lost, so the caller should look
/// for work it may have missed.
public final class PostgresListener: @unchecked Sendable {
    public enum Event: Sendable, Equatable {
        /// LISTEN is in effect (first connect or after a reconnect).
        case listening
        case notification(channel: String, payload: String)
    }

    private let url: String
    private let channels: [String]
    private let options: PostgresConnection.Options
    private let logger: Logger
    private let handler: @Sendable (Event) -> Void
    private let lock = NSLock()
    private var stopping = false
    private var started = false
    private var wakeRead: Int32 = -1
    private var wakeWrite: Int32 = -1
    private let finished = DispatchSemaphore(value: 0)

    public init(url: String, channels: [String], options: PostgresConnection.Options = .init(),
                logger: Logger = Logger(label: "blendd.postgres.listener"), handler: @escaping @Sendable (Event) -> Void) {
        self.url = url
        self.channels = channels
        self.options = options
        self.logger = logger
        self.handler = handler
    }

    deinit {
        if wakeRead >= 0 { Glibc.close(wakeRead); Glibc.close(wakeWrite) }
    }

    public func start() {
        lock.withLock {
            guard !started else { return }
            started = true
            var fds: [Int32] = [-1, -1]
            if pipe(&fds) == 0 {
                wakeRead = fds[0]
                wakeWrite = fds[1]
                _ = fcntl(wakeRead, F_SETFL, fcntl(wakeRead, F_GETFL) | O_NONBLOCK)
            }
        }
        let thread = Thread { [self] in
            loop()
            finished.signal()
        }
        thread.name = "blendd.postgres.listen"
        thread.start()
    }

    /// Stops listening and closes the connection; returns once the thread ended (at most `timeout`).
    public func stop(timeout: Double = 5) {
        let wasStarted = lock.withLock { () -> Bool in
            stopping = true
            return started
        }
        guard wasStarted else { return }
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
        _ = finished.wait(timeout: .now() + timeout)
    }

    private var isStopping: Bool { lock.withLock { stopping } }

    private func loop() {
        let target = PostgresConnection.maskedTarget(url)
        var delay = 0.25
        while !isStopping {
            let conn: OpaquePointer
            do {
                conn = try PostgresConnection.openSync(url, options: options, target: target)
            } catch {
                logger.warning("listener: \(error); reconnecting in \(String(format: "%.2f", delay)) s")
                if sleepOrWake(seconds: delay) { return }
                delay = min(delay * 2, 15)
                continue
            }
            defer { PQfinish(conn) }
            guard listen(on: conn, target: target) else {
                if sleepOrWake(seconds: delay) { return }
                delay = min(delay * 2, 15)
                continue
            }
            delay = 0.25
            handler(.listening)
            if serve(conn) { return }
        }
    }

    private func listen(on conn: OpaquePointer, target: String) -> Bool {
        let sql = channels.map { "LISTEN \"" + $0.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }.joined(separator: "; ")
        guard let result = PQexec(conn, sql) else { return false }
        defer { PQclear(result) }
        guard PQresultStatus(result) == PGRES_COMMAND_OK else {
            logger.warning("listener: LISTEN on \(target) failed: \(PostgresConnection.errorMessage(conn))")
            return false
        }
        return true
    }

    /// Delivers notifications until the connection breaks (returns false) or `stop()` (true).
    private func serve(_ conn: OpaquePointer) -> Bool {
        while true {
            var fds = [pollfd(fd: PQsocket(conn), events: Int16(POLLIN), revents: 0),
                       pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&fds, 2, -1)
            if ready < 0 && errno == EINTR { continue }
            if isStopping || fds[1].revents != 0 { return true }
            guard PQconsumeInput(conn) == 1 else {
                logger.warning("listener: connection lost: \(PostgresConnection.errorMessage(conn)); reconnecting")
                return false
            }
            while let notification = PQnotifies(conn) {
                let channel = String(cString: notification.pointee.relname)
                let payload = notification.pointee.extra.map { String(cString: $0) } ?? ""
                PQfreemem(notification)
                handler(.notification(channel: channel, payload: payload))
            }
            guard PQstatus(conn) == CONNECTION_OK else { return false }
        }
    }

    /// Sleeps on the wake pipe; true when woken by `stop()`.
    private func sleepOrWake(seconds: Double) -> Bool {
        var fd = pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)
        _ = poll(&fd, 1, Int32(seconds * 1000))
        return isStopping
    }
}
