// Postgres: a Swift API over libpq (connections, bound parameters, transactions, pool, migrations).
