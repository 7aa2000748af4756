#!/usr/bin/env bash
# Installs every system package blendd needs on Debian 12. Idempotent and quiet;
# run as root (or with sudo available).
set -euo pipefail

packages=(
  pkg-config
  libpq-dev postgresql-15      # libpq client, and the server the tests and `blendd dev` start
  librdkafka-dev               # Kafka client and its mock cluster (embedded broker)
  libopenblas-dev              # sgemm for the models
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v swift >/dev/null || { echo "setup: swift is not on PATH (Swift 6.1 or newer is needed)" >&2; exit 1; }
