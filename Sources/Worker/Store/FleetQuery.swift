import Foundation
import Postgres

/// The workers table as lines for `blendd status`.
public enum FleetQuery {
    public static func rows(url: String) async throws -> [String] {
        let conn = try await PostgresConnection.connect(url, applicationName: "blendd status")
        let rows = try await conn.query("""
            SELECT worker_id, host, pid, state, in_flight, assigned_partitions::text AS partitions,
                   extract(epoch FROM now() - last_heartbeat)::float8 AS age
              FROM workers ORDER BY host, worker_id
            """)
        await conn.close()
        return try rows.map { r in
            let age: Double = try r.decode("age")
            let state: String = try r.decode("state")
            let shown = state != "stopped" && age > 60 ? "\(state), silent \(Int(age)) s" : state
            return "\(try r.decode("worker_id", as: String.self)) on \(try r.decode("host", as: String.self)) pid \(try r.decode("pid", as: Int.self)): \(shown), in flight \(try r.decode("in_flight", as: Int.self)), partitions \(try r.decode("partitions", as: String.self))"
        }
    }
}
