#!/bin/sh
# docker-compose.yml's ca-init: the offline CA step (countersign ca init) for a compose install,
# run without a network. The root key goes to $OFFLINE, a volume only this service mounts; the
# issuer's volume gets the intermediate, its key and the root certificate, never the root key.
# Does nothing once the issuer has an intermediate, so an operator who made the CA on an offline
# machine and copied its issuer/ files into the issuer's volume keeps that CA and no root here.
set -eu
OFFLINE=${CA_OFFLINE_DIR:-/var/lib/countersign/ca-offline}
ISSUER=${CA_ISSUER_DIR:-/var/lib/countersign/ca}
CLI=${COUNTERSIGN_CLI:-/app/packages/cli/bin/countersign.mjs}
countersign() { node "$CLI" "$@"; }

if [ -f "$ISSUER/intermediate.crt.pem" ]; then
  echo "ca-init: the issuer's intermediate is in place; nothing to do"
elif [ -f "$OFFLINE/root.key.pem" ]; then
  # The issuer's volume was lost: a new intermediate from the same root keeps every issued certificate valid.
  countersign ca rotate-intermediate --root-dir "$OFFLINE" --out "$ISSUER"
else
  countersign ca init --out "$OFFLINE" --issuer-out "$ISSUER"
fi
