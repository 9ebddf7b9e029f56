#!/bin/sh
# Starts one Countersign service, or runs the CLI: `countersign db migrate`, `countersign bootstrap ...`.
set -e

# The CLI's database commands read their URLs and passwords from the environment; given as files
# (COUNTERSIGN_<NAME>_FILE, as docker-compose.yml and the migration Job mount them) they are read
# here, for the CLI only. The services read the _FILE variables themselves (packages/config), so
# their secrets never enter their environment.
file_env() {
  var="COUNTERSIGN_$1"
  file_var="${var}_FILE"
  eval "file=\${$file_var:-}"
  [ -n "$file" ] || return 0
  eval "direct=\${$var:-}"
  if [ -n "$direct" ]; then
    echo "countersign: $var and $file_var are both set; set only one" >&2
    exit 78
  fi
  if [ ! -r "$file" ]; then
    echo "countersign: $file_var names $file, which cannot be read" >&2
    exit 78
  fi
  value=$(cat "$file")
  export "$var=$value"
  unset "$file_var"
}

case "$1" in
  api|approval|issuer|notifier|reaper)
    # The bundle built in the image (scripts/build-services.ts): plain node, no TypeScript loader.
    # Heap budget as the stack launcher sets it (packages/stack/src/service-process.ts): V8 would
    # otherwise grow towards a limit derived from the host's memory before collecting.
    exec node --max-old-space-size="${COUNTERSIGN_NODE_HEAP_MB:-96}" --max-semi-space-size=8 \
      "/app/services/$1/dist/main.mjs" ;;
  countersign)
    shift
    file_env DATABASE_URL
    file_env MIGRATION_DATABASE_URL
    file_env SUPERUSER_DATABASE_URL
    file_env OWNER_PASSWORD
    file_env APP_PASSWORD
    exec node /app/packages/cli/bin/countersign.mjs "$@" ;;
  *)
    echo "usage: <api|approval|issuer|notifier|reaper> | countersign <command>" >&2
    exit 64 ;;
esac
