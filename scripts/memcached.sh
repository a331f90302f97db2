#!/usr/bin/env bash
# memcached for the tests and benchmarks of the memcached cache tier.
#
#   scripts/memcached.sh start   # installs memcached (Debian package) if missing,
#                                # starts one instance per port on 127.0.0.1
#   scripts/memcached.sh stop    # stops the instances this script started
#   scripts/memcached.sh status
#
# Ports: MAPPING_MEMCACHED_PORTS (default "11311 11312"); pid files and logs
# under target/memcached/. Idempotent: an instance already answering is left
# alone. Fails loudly when memcached cannot be installed or does not answer.
# Tests that must kill a server start their own instance on a free port with
# the same binary; these shared ones are never stopped by a test.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "memcached: $*" >&2; }
die() { echo "memcached: ERROR: $*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

PORTS=${MAPPING_MEMCACHED_PORTS:-"11311 11312"}
DIR=target/memcached
BIN=${MAPPING_TEST_MEMCACHED_BIN:-/usr/bin/memcached}

answers() { # port
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && printf 'version\r\n' >&3 && head -n1 <&3" 2>/dev/null \
    | grep -q '^VERSION'
}

install() {
  [ -x "$BIN" ] && return 0
  log "installing memcached"
  as_root apt-get update -qq
  # The package's own service (port 11211) is not used; do not start it.
  as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq memcached >/dev/null \
    || die "apt-get install memcached failed"
  [ -x "$BIN" ] || die "memcached is not at $BIN after installing it"
}

start() {
  install
  mkdir -p "$DIR"
  local user=()
  # memcached refuses to run as root without -u.
  [ "$(id -u)" = 0 ] && user=(-u "$(id -un nobody 2>/dev/null || echo nobody)")
  for port in $PORTS; do
    if answers "$port"; then
      log "127.0.0.1:$port already answers"
      continue
    fi
    rm -f "$DIR/$port.pid"
    # The pid file is written by the daemon, which may run as nobody.
    chmod 0777 "$DIR"
    "$BIN" -d -l 127.0.0.1 -p "$port" -U 0 -m 64 -c 1024 "${user[@]}" -P "$(pwd)/$DIR/$port.pid" \
      || die "memcached on port $port did not start"
    for _ in $(seq 1 50); do answers "$port" && break; sleep 0.1; done
    answers "$port" || die "memcached on 127.0.0.1:$port does not answer"
    log "started 127.0.0.1:$port (pid $(cat "$DIR/$port.pid" 2>/dev/null || echo '?'))"
  done
}

stop() {
  for port in $PORTS; do
    local pidfile="$DIR/$port.pid"
    [ -f "$pidfile" ] || continue
    local pid
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null && grep -q memcached "/proc/$pid/comm" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && die "memcached $pid (port $port) did not stop"
      log "stopped 127.0.0.1:$port"
    fi
    rm -f "$pidfile"
  done
}

status() {
  local bad=0
  for port in $PORTS; do
    if answers "$port"; then log "127.0.0.1:$port up"; else log "127.0.0.1:$port DOWN"; bad=1; fi
  done
  return $bad
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: $0 start|stop|status" ;;
esac
