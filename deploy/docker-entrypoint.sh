#!/bin/sh
# Debian's OpenBLAS does not recognise recent AVX-512 CPUs (e.g. AMD Zen 4/5) and falls back to
# slower AVX2 kernels; it reads OPENBLAS_CORETYPE only at process start, so set it here.
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
  export OPENBLAS_CORETYPE=SkylakeX
fi
exec /usr/local/bin/blendd "$@"
