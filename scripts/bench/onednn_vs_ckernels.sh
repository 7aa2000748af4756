#!/usr/bin/env bash
# Builds and runs onednn_vs_ckernels.c: oneDNN's bf16 matmul and int8 GEMM beside blendd's AVX512-BF16 kernel,
# single-threaded (OMP_NUM_THREADS=1: Debian's oneDNN is OpenMP-threaded). Installs libdnnl-dev if missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
dpkg-query -W -f='${Status}' libdnnl-dev 2>/dev/null | grep -q "install ok installed" || {
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get install -y -qq --no-install-recommends libdnnl-dev >/dev/null
}
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cc -O2 -ISources/CKernels/include scripts/bench/onednn_vs_ckernels.c Sources/CKernels/ckernels.c -o "$out/bench" -ldnnl -lm
[ $# -gt 0 ] || set -- 192 1
for m in "$@"; do OMP_NUM_THREADS=1 "$out/bench" "$m"; done
