#!/usr/bin/env bash
# The README's first command: installs what is missing, then brings up the whole
# stack on loopback (PostgreSQL, Redis, an SMTP sink and the five services) with
# its data under .data/, and prints how to use it. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec pnpm exec tsx scripts/stack-up.ts "$@"
