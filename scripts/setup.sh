#!/usr/bin/env bash
# Installs what Countersign needs on a fresh Debian machine with Node.js 20+:
# pnpm, the workspace dependencies, and (as root) Redis and PostgreSQL server
# packages when they are missing. Safe to run again; it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PNPM_VERSION=12.21.0

if ! command -v node >/dev/null 2>&1; then
  echo "setup: Node.js 20 or newer is required (https://nodejs.org)" >&2
  exit 1
fi
node -e 'const [maj, min] = process.versions.node.split(".").map(Number); if (maj < 20 || (maj === 20 && min < 19)) { console.error("setup: Node.js >= 20.19 is required, found " + process.versions.node); process.exit(1); }'

if ! command -v pnpm >/dev/null 2>&1; then
  echo "setup: installing pnpm ${PNPM_VERSION}"
  npm install -g "pnpm@${PNPM_VERSION}" >/dev/null
fi

apt_missing=()
command -v redis-server >/dev/null 2>&1 || apt_missing+=(redis-server)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || apt_missing+=(postgresql)
command -v openssl >/dev/null 2>&1 || apt_missing+=(openssl)
if [ "${#apt_missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = "0" ]; then
    echo "setup: installing ${apt_missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${apt_missing[@]}" >/dev/null
    # The packages start system services; Countersign runs its own on loopback.
    (service redis-server stop || true) >/dev/null 2>&1
    (service postgresql stop || true) >/dev/null 2>&1
  else
    echo "setup: please install ${apt_missing[*]} (sudo apt-get install -y ${apt_missing[*]})" >&2
    exit 1
  fi
fi

if [ "${CI:-}" = "true" ]; then
  pnpm install --frozen-lockfile --reporter=append-only
else
  pnpm install --frozen-lockfile
fi
