#!/bin/sh
# Starts one Countersign service, or runs the CLI: `countersign db migrate`, `countersign bootstrap ...`.
set -e
case "$1" in
  api|approval|issuer|notifier|reaper)
    # The bundle built in the image (scripts/build-services.ts): plain node, no TypeScript loader.
    exec node "/app/services/$1/dist/main.mjs" ;;
  countersign)
    shift
    exec node /app/packages/cli/bin/countersign.mjs "$@" ;;
  *)
    echo "usage: <api|approval|issuer|notifier|reaper> | countersign <command>" >&2
    exit 64 ;;
esac
