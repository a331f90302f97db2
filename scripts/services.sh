#!/usr/bin/env bash
# Makes sure what the full test suite needs is on this machine: the C client
# libraries diesel links for PostgreSQL and MySQL/MariaDB, and both servers
# running and reachable. Installs and starts what is missing; fails loudly.
set -euo pipefail

log() { echo "services: $*" >&2; }
die() { echo "services: ERROR: $*" >&2; exit 1; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
need_pkg() {
  local missing=()
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  if [ $apt_updated = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Client libraries and headers for pq-sys and mysqlclient-sys, plus the CLI clients.
need_pkg libpq-dev libmariadb-dev-compat libmariadb-dev pkg-config postgresql-client mariadb-client

PG_HOST=127.0.0.1 PG_PORT=5432
MY_HOST=127.0.0.1 MY_PORT=3306

pg_up() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; }
my_up() { mysqladmin --protocol=tcp -h "$MY_HOST" -P "$MY_PORT" -uroot ping >/dev/null 2>&1; }

wait_for() { # name check
  for _ in $(seq 1 60); do "$2" && return 0; sleep 1; done
  return 1
}

if ! pg_up; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    need_pkg postgresql
  fi
  ver=$(ls /etc/postgresql | sort -V | tail -n1)
  log "starting PostgreSQL $ver"
  as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  wait_for postgres pg_up || die "PostgreSQL is not reachable on $PG_HOST:$PG_PORT"
fi

if ! my_up; then
  [ -x /usr/sbin/mariadbd ] || need_pkg mariadb-server
  log "starting MariaDB"
  as_root mkdir -p /run/mysqld && as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
  # --pidfile: the Galera test nodes are mariadbd processes too; without it
  # start-stop-daemon would take one of them for this server and start nothing.
  as_root start-stop-daemon --start --oknodo --background --pidfile /run/mysqld/mysqld.pid \
    --exec /usr/sbin/mariadbd -- --user=mysql || true
  wait_for mariadb my_up || die "MariaDB is not reachable on $MY_HOST:$MY_PORT"
fi

# The test kit connects as postgres (trust) and root (empty password) by default.
psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -Atc 'select 1' >/dev/null \
  || die "cannot log in to PostgreSQL as postgres on $PG_HOST:$PG_PORT (set MAPPING_TEST_POSTGRES_URL)"
psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -Atc "select 1 from pg_database where datname='test'" | grep -q 1 \
  || psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -qc 'create database test' \
  || die "cannot create database test on PostgreSQL"
mysql --protocol=tcp -h "$MY_HOST" -P "$MY_PORT" -uroot -e 'create database if not exists test' \
  || die "cannot log in to MariaDB as root on $MY_HOST:$MY_PORT (set MAPPING_TEST_MYSQL_URL)"
# The non-English locale of the locale tests (tests/locale.rs).
"$(dirname "$0")/locales.sh"
log "PostgreSQL and MariaDB are up"

# memcached instances for the cache tier's tests (127.0.0.1:11311 and :11312).
bash "$(dirname "$0")/memcached.sh" start || die "memcached did not start"
