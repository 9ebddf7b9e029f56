#!/bin/sh
# docker-compose.yml's secrets-init (runs as root, once per `up`, before everything else).
#
# Makes every password of the compose stack on the first start and keeps it afterwards: the
# generated values live in $MASTER (the `secrets` volume, mounted by this service alone). From
# them it writes, on every run, one volume per consumer holding only what that consumer reads,
# owned by the user the consumer runs as, mode 0400 in a 0500 directory:
#
#   $OUT/postgres  password        PostgreSQL superuser (postgres image: POSTGRES_PASSWORD_FILE) uid 999
#   $OUT/redis     users.acl       the Redis password's SHA-256 only, and a PING-only health user uid 999
#   $OUT/migrate   superuser-url, owner-password, app-password, migration-url (migrate alone) uid 1000
#   $OUT/app       database-url (countersign_app), redis-url (the five services)               uid 1000
#   $OUT/audit     signing.key (+ .pub): Ed25519 key of the audit checkpoints (api, reaper)     uid 1000
#   $OUT/grafana   admin-password  Grafana's `admin` (GF_SECURITY_ADMIN_PASSWORD__FILE)          uid 472
#
# To rotate one password, delete its file under $MASTER and `docker compose up` again (for the
# PostgreSQL superuser also ALTER ROLE postgres: the image sets it only when it creates the cluster).
set -eu
umask 077

MASTER=${SECRETS_MASTER_DIR:-/master}
OUT=${SECRETS_OUT_DIR:-/out}
PG_HOST=${SECRETS_PG_HOST:-postgres:5432}
REDIS_HOST=${SECRETS_REDIS_HOST:-redis:6379}
DATABASE=${SECRETS_DATABASE:-countersign}
POSTGRES_UID=999
REDIS_UID=999
COUNTERSIGN_UID=1000
GRAFANA_UID=472

random() {
  node -e 'process.stdout.write(require("node:crypto").randomBytes(32).toString("base64url"))'
}

# master NAME COMMAND...: the stored value, made by COMMAND the first time only.
master() {
  name=$1
  shift
  if [ ! -s "$MASTER/$name" ]; then
    "$@" >"$MASTER/$name.tmp"
    mv "$MASTER/$name.tmp" "$MASTER/$name"
    echo "secrets-init: generated $name" >&2
  fi
  cat "$MASTER/$name"
}

# put DIR UID FILE VALUE [MODE]: written whole (temp file, then rename), owned by UID.
put() {
  tmp="$1/.$3.tmp"
  printf '%s' "$4" >"$tmp"
  chown "$2:$2" "$tmp"
  chmod "${5:-0400}" "$tmp"
  mv -f "$tmp" "$1/$3"
}

volume() {
  mkdir -p "$1"
  chown "$2:$2" "$1"
  chmod 0500 "$1"
}

mkdir -p "$MASTER"
chmod 0700 "$MASTER"

postgres_password=$(master postgres-password random)
owner_password=$(master owner-password random)
app_password=$(master app-password random)
redis_password=$(master redis-password random)
grafana_password=$(master grafana-admin-password random)
audit_key=$(master audit-signing.key node -e 'process.stdout.write(require("node:crypto").generateKeyPairSync("ed25519").privateKey.export({type:"pkcs8",format:"pem"}))')
audit_pub=$(printf '%s' "$audit_key" | node -e 'const c=require("node:crypto");process.stdout.write(c.createPublicKey(c.createPrivateKey(require("node:fs").readFileSync(0))).export({type:"spki",format:"pem"}))')
redis_hash=$(printf '%s' "$redis_password" | sha256sum | cut -d' ' -f1)

volume "$OUT/postgres" "$POSTGRES_UID"
put "$OUT/postgres" "$POSTGRES_UID" password "$postgres_password"

volume "$OUT/redis" "$REDIS_UID"
put "$OUT/redis" "$REDIS_UID" users.acl "user default on #$redis_hash ~* &* +@all
user healthcheck on nopass resetchannels -@all +ping
"

volume "$OUT/migrate" "$COUNTERSIGN_UID"
put "$OUT/migrate" "$COUNTERSIGN_UID" superuser-url "postgres://postgres:$postgres_password@$PG_HOST/postgres"
put "$OUT/migrate" "$COUNTERSIGN_UID" owner-password "$owner_password"
put "$OUT/migrate" "$COUNTERSIGN_UID" app-password "$app_password"
put "$OUT/migrate" "$COUNTERSIGN_UID" migration-url "postgres://countersign_owner:$owner_password@$PG_HOST/$DATABASE"

volume "$OUT/app" "$COUNTERSIGN_UID"
put "$OUT/app" "$COUNTERSIGN_UID" database-url "postgres://countersign_app:$app_password@$PG_HOST/$DATABASE"
put "$OUT/app" "$COUNTERSIGN_UID" redis-url "redis://default:$redis_password@$REDIS_HOST"

volume "$OUT/audit" "$COUNTERSIGN_UID"
put "$OUT/audit" "$COUNTERSIGN_UID" signing.key "$audit_key
"
put "$OUT/audit" "$COUNTERSIGN_UID" signing.key.pub "$audit_pub
" 0444

volume "$OUT/grafana" "$GRAFANA_UID"
put "$OUT/grafana" "$GRAFANA_UID" admin-password "$grafana_password"

echo "secrets-init: secrets in place (Grafana: user admin, password in $OUT/grafana/admin-password)"
