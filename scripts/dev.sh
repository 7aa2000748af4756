#!/usr/bin/env bash
# Runs blendd end to end on this machine: a throwaway PostgreSQL server, the embedded Kafka
# broker, the migrations, a worker, and samples/jobs.jsonl; prints the stored outcomes.
# Arguments go to `blendd dev run` (e.g. --serve to keep running, --jobs FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/pg.sh

trap pg_stop EXIT INT TERM
pg_start
grep -qw avx512f /proc/cpuinfo 2>/dev/null && export OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-SkylakeX}"
echo "dev: building blendd" >&2
swift build -c release --product blendd >&2
"$(swift build -c release --show-bin-path)/blendd" dev run --database-url "$BLENDD_DATABASE_URL" "$@"
