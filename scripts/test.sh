#!/usr/bin/env bash
# The README's second command: installs what is missing, then runs typecheck,
# lint, and the unit, integration and end-to-end tests against real
# PostgreSQL, Redis, BullMQ and SMTP servers started on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -f scripts/setup-browser.sh ]; then bash scripts/setup-browser.sh; fi
pnpm run check
