/// A small, bounded pool of connections to one database. Connections are opened on demand,
/// checked before reuse (so the dead ones left by a server restart are replaced, not handed
/// out), discarded when a statement breaks them, and shared fairly: callers beyond
/// `maxConnections` wait in arrival order.
public actor PostgresPool {
    public let url: String
    public let maxConnections: Int
    public let options: PostgresConnection.Options
    private var idle: [PostgresConnection] = []
    private var open = 0
    private var waiters: [CheckedContinuation<PostgresConnection, Error>] = []
    private var isClosed = false

    public init(url: String, maxConnections: Int, options: PostgresConnection.Options = .init()) {
        precondition(maxConnections >= 1, "a pool needs at least one connection")
        self.url = url
        self.maxConnections = maxConnections
        self.options = options
    }

    /// Runs `body` with a connection of its own; the connection returns to the pool after.
    @discardableResult
    public func withConnection<T: Sendable>(_ body: @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        let connection = try await acquire()
        do {
            let value = try await body(connection)
            await release(connection, broken: false)
            return value
        } catch {
            var broken = (error as? PostgresError)?.kind == .connection
            if !broken { broken = !(await connection.isUsable) }
            await release(connection, broken: broken)
            throw error
        }
    }

    /// A transaction on a pooled connection.
    @discardableResult
    public func transaction<T: Sendable>(_ body: @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        try await withConnection { connection in try await connection.transaction(body) }
    }

    /// Connections open now (idle and in use), for metrics.
    public var openConnections: Int { open }

    public func close() async {
        isClosed = true
        let toClose = idle
        idle.removeAll()
        open -= toClose.count
        for connection in toClose { await connection.close() }
        let pending = waiters
        waiters.removeAll()
        for waiter in pending { waiter.resume(throwing: PostgresError(.connection, message: "the connection pool was closed")) }
    }

    private func acquire() async throws -> PostgresConnection {
        guard !isClosed else { throw PostgresError(.connection, message: "the connection pool is closed") }
        while let connection = idle.popLast() {
            if await connection.isUsable { return connection }
            open -= 1
            await connection.close()
        }
        if open < maxConnections {
            open += 1
            do {
                return try await PostgresConnection.connect(url, options: options)
            } catch {
                open -= 1
                throw error
            }
        }
        return try await withCheckedThrowingContinuation { waiters.append($0) }
    }

    private func release(_ connection: PostgresConnection, broken: Bool) async {
        if broken || isClosed {
            open -= 1
            await connection.close()
            guard !waiters.isEmpty, !isClosed else { return }
            let waiter = waiters.removeFirst()
            open += 1
            do {
                waiter.resume(returning: try await PostgresConnection.connect(url, options: options))
            } catch {
                open -= 1
                waiter.resume(throwing: error)
            }
            return
        }
        if !waiters.isEmpty {
            waiters.removeFirst().resume(returning: connection)
        } else {
            idle.append(connection)
        }
    }
}
