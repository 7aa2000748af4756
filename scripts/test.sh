#!/usr/bin/env bash
# Runs the whole test suite against a throwaway PostgreSQL server.
# Arguments are passed to `swift test` (e.g. --filter PostgresTests).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/validate-manifests.sh
. scripts/lib/pg.sh

trap pg_stop EXIT INT TERM
pg_start
export BLENDD_TEST_DATABASE_URL="$BLENDD_DATABASE_URL"
# The PostgreSQL binaries let tests stop and restart the server (reconnect tests).
export BLENDD_TEST_PG_DIR="$PG_DIR" BLENDD_TEST_PG_BIN="$(pg_bindir)"
# Debian's OpenBLAS 0.3.21 misdetects AVX-512 CPUs (Zen 4/5) and falls back to AVX2 kernels.
grep -qw avx512f /proc/cpuinfo 2>/dev/null && export OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-SkylakeX}"
echo "test: PostgreSQL at $BLENDD_TEST_DATABASE_URL" >&2
swift build --build-tests
swift test --skip-build "$@"

# Bit-exactness depends on OpenBLAS's kernels, so its tests (and the mixed-kind batches' invariance) run again under the other core type: Haswell's
# AVX2 kernels if the first pass used the CPU's AVX-512 ones, the CPU's own if the environment exported Haswell.
if [[ $# -eq 0 || "$*" == *BitExactness* ]]; then
    first="${OPENBLAS_CORETYPE:-}"
    if [[ "${first,,}" != haswell ]]; then
        other=Haswell
    elif grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
        other=SkylakeX
    else
        other=""
    fi
    if [[ -n "$other" ]]; then
        echo "test: bit-exactness again under OPENBLAS_CORETYPE=$other (first pass: ${first:-detected})" >&2
        OPENBLAS_CORETYPE="$other" swift test --skip-build --filter 'BitExactnessTests|JobKindsRankerTests'
    else
        echo "test: no AVX-512 on this CPU, so the bit-exactness tests ran under Haswell's kernels only" >&2
    fi
fi
