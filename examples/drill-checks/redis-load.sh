#!/bin/sh
# A restore-drill check for Redis (a policy's drill.check; `meshback drill` runs it with
# MESHBACK_RESTORE_DIR set to the directory the snapshot was restored into and verified).
#
# It starts redis-server with the restored configuration on a private Unix socket (no TCP port),
# waits until it has loaded its data (the AOF with appendonly yes, else dump.rdb), checks it holds
# at least MIN_KEYS keys, and shuts it down without saving. A server that refuses the data (a torn
# AOF), or holds too few keys, exits non-zero with the reason on stderr.
#
# usage: redis-load.sh CONF [MIN_KEYS]
#   CONF      the redis.conf below MESHBACK_RESTORE_DIR (e.g. redis.conf), or absolute; its
#             relative paths (dir) are taken relative to its folder, as the live server had them
#   MIN_KEYS  keys the restored data must hold at least (default 1)
set -eu
case "$1" in /*) conf=$1 ;; *) conf="${MESHBACK_RESTORE_DIR:?MESHBACK_RESTORE_DIR is not set: run me as a drill check}/$1" ;; esac
min=${2:-1}
[ -f "$conf" ] || { echo "redis-load: no configuration at $conf: check the CONF argument" >&2; exit 2; }
dir=$(dirname "$conf")
sock=$(mktemp -d /tmp/meshback-drill-redis.XXXXXX)
log="$sock/server.log"
cd "$dir"
redis-server "$conf" --port 0 --unixsocket "$sock/redis.sock" --unixsocketperm 700 --daemonize no \
  --logfile "$log" --save '' --appendfsync no >/dev/null 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$sock"' EXIT
cli() { redis-cli -s "$sock/redis.sock" "$@"; }
i=0
while :; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "redis-load: redis-server refused the restored data: $(tail -3 "$log" | tr '\n' ' ')" >&2
    exit 1
  fi
  if [ "$(cli INFO persistence 2>/dev/null | tr -d '\r' | sed -n 's/^loading://p')" = 0 ]; then break; fi
  i=$((i + 1))
  [ "$i" -lt "${REDIS_LOAD_TIMEOUT_TENTHS:-3000}" ] || { echo "redis-load: redis-server did not finish loading in time" >&2; exit 1; }
  sleep 0.1
done
keys=$(cli DBSIZE | tr -d '\r')
[ "$keys" -ge "$min" ] || { echo "redis-load: the restored data holds $keys key(s), fewer than $min" >&2; exit 1; }
cli SHUTDOWN NOSAVE >/dev/null 2>&1 || true
echo "redis-load: redis-server loaded the restored data: $keys key(s)"
