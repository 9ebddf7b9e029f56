#!/usr/bin/env bash
# The web console's part of setup: Debian's Chromium for the browser tests
# (playwright-core drives it; nothing downloads a browser of its own), and the
# console bundle the api serves under /ui. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = "0" ]; then
    echo "setup-browser: installing chromium with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq chromium >/dev/null || echo "setup-browser: chromium could not be installed; the browser tests will be skipped" >&2
  else
    echo "setup-browser: /usr/bin/chromium is missing (sudo apt-get install -y chromium); the browser tests will be skipped" >&2
  fi
fi

pnpm build:console
