#!/bin/sh
# A restore-drill check for PostgreSQL (a policy's drill.check; `meshback drill` runs it with
# MESHBACK_RESTORE_DIR set to the directory the snapshot was restored into and verified).
#
# It starts a PostgreSQL server on the restored data directory, on a private Unix socket only (no
# TCP port, so it can never be mistaken for the live server), lets it recover (a backup made with
# the postgres preset replays its WAL from backup_label), then in every database runs amcheck:
# bt_index_check(heapallindexed) on every valid B-tree index and verify_heapam on every table.
# Any problem, or a server that does not start, exits non-zero with the reason on stderr; the
# server is stopped at the end either way.
#
# usage: postgres-amcheck.sh DATA [BINDIR] [MIN_ROWS_SQL]
#   DATA    the data directory's path below MESHBACK_RESTORE_DIR (e.g. pgdata: a snapshot of one source
#           path holds that path's content at its root), or absolute
#   BINDIR  PostgreSQL's bin directory (default: pg_config --bindir, else the newest /usr/lib/postgresql/*/bin)
#   MIN_ROWS_SQL  optional: a query returning one number that must be > 0 (e.g. "SELECT count(*) FROM orders")
# The server runs as the owner of DATA (via runuser when started as root); superuser: PGUSER, default postgres.
set -eu
case "$1" in /*) data=$1 ;; *) data="${MESHBACK_RESTORE_DIR:?MESHBACK_RESTORE_DIR is not set: run me as a drill check}/$1" ;; esac
bindir=${2:-}
if [ -z "$bindir" ]; then
  bindir=$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
fi
[ -x "$bindir/pg_ctl" ] || { echo "postgres-amcheck: no pg_ctl in '$bindir': give PostgreSQL's bin directory as the second argument" >&2; exit 2; }
[ -f "$data/PG_VERSION" ] || { echo "postgres-amcheck: $data is not a PostgreSQL data directory (no PG_VERSION): check the DATA argument" >&2; exit 2; }
owner=$(stat -c %U "$data")
as_owner() {
  if [ "$(id -u)" = 0 ] && [ "$owner" != root ]; then runuser -u "$owner" -- "$@"; else "$@"; fi
}
# the restore directory is private to the drill (0700): the server's user must reach the data
if [ "$(id -u)" = 0 ] && [ -n "${MESHBACK_RESTORE_DIR:-}" ]; then chmod o+x "$MESHBACK_RESTORE_DIR"; fi
sock=$(mktemp -d /tmp/meshback-drill-pg.XXXXXX)
chmod 0755 "$sock"
[ "$(id -u)" = 0 ] && chown "$owner" "$sock"
stop() {
  as_owner "$bindir/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
  rm -rf "$sock"
}
trap stop EXIT
# a pid file names the live server on the host it came from: stale here
rm -f "$data/postmaster.pid"
if ! as_owner "$bindir/pg_ctl" -D "$data" -l "$sock/server.log" -w -t "${PG_START_TIMEOUT:-300}" \
  -o "-c listen_addresses='' -c unix_socket_directories='$sock' -c port=5432 -c archive_mode=off" start >/dev/null; then
  echo "postgres-amcheck: PostgreSQL did not start on the restored data: $(tail -3 "$sock/server.log" | tr '\n' ' ')" >&2
  exit 1
fi
psql() { as_owner "$bindir/psql" -h "$sock" -p 5432 -U "${PGUSER:-postgres}" -X -v ON_ERROR_STOP=1 -qAt "$@"; }
indexes=0
for db in $(psql -d postgres -c "SELECT datname FROM pg_database WHERE datallowconn AND datname <> 'template0' ORDER BY 1"); do
  out=$(psql -d "$db" <<'SQL'
CREATE EXTENSION IF NOT EXISTS amcheck;
SELECT count(bt_index_check(c.oid, true))
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE a.amname = 'btree' AND i.indisvalid AND i.indisready AND c.relpersistence <> 't'
   AND n.nspname NOT IN ('pg_toast') AND n.nspname NOT LIKE 'pg_temp%';
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
       LATERAL verify_heapam(c.oid) v
 WHERE c.relkind IN ('r', 'm', 't') AND c.relpersistence <> 't' AND n.nspname NOT LIKE 'pg_temp%';
SQL
) || { echo "postgres-amcheck: amcheck failed in database $db: $out" >&2; exit 1; }
  n=$(echo "$out" | sed -n 1p)
  bad=$(echo "$out" | sed -n 2p)
  [ "$bad" = 0 ] || { echo "postgres-amcheck: verify_heapam found $bad problem(s) in database $db" >&2; exit 1; }
  indexes=$((indexes + n))
done
if [ -n "${3:-}" ]; then
  rows=$(psql -d "${PGDATABASE:-postgres}" -c "$3")
  [ "${rows:-0}" -gt 0 ] 2>/dev/null || { echo "postgres-amcheck: '$3' gave '$rows', not a number above 0" >&2; exit 1; }
  echo "postgres-amcheck: $3 = $rows"
fi
echo "postgres-amcheck: started on the restored data; bt_index_check (heapallindexed) on $indexes index(es) and verify_heapam on every table: no problem"
