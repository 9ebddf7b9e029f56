#!/bin/sh
# Starts one Countersign service, or runs the CLI: `countersign db migrate`, `countersign bootstrap ...`.
set -e
case "$1" in
  api|approval|issuer|notifier|reaper)
    # The bundle built in the image (scripts/build-services.ts): plain node, no TypeScript loader.
    # Heap budget as the stack launcher sets it (packages/stack/src/service-process.ts): V8 would
    # otherwise grow towards a limit derived from the host's memory before collecting.
    exec node --max-old-space-size="${COUNTERSIGN_NODE_HEAP_MB:-96}" --max-semi-space-size=8 \
      "/app/services/$1/dist/main.mjs" ;;
  countersign)
    shift
    exec node /app/packages/cli/bin/countersign.mjs "$@" ;;
  *)
    echo "usage: <api|approval|issuer|notifier|reaper> | countersign <command>" >&2
    exit 64 ;;
esac
