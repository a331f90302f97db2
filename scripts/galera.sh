#!/usr/bin/env bash
# A 3-node MariaDB Galera cluster on loopback, plus HAProxy in front of it, for
# the cluster tests (tests/galera.rs) and the bench. Everything lives under
# target/galera/ and only what this script started is ever stopped.
#
#   scripts/galera.sh start       install what is missing, start nodes 1-3 and HAProxy,
#                                 wait until wsrep_cluster_size = 3 on every node
#   scripts/galera.sh stop        stop HAProxy and the three nodes (clean shutdown)
#   scripts/galera.sh status      one line per node and for HAProxy
#   scripts/galera.sh kill N      kill -9 node N (mid-load crash)
#   scripts/galera.sh restart N   start node N again and wait until it is synced
#   scripts/galera.sh pause N     SIGSTOP node N (it stops answering, as if cut off)
#   scripts/galera.sh resume N    SIGCONT node N
#   scripts/galera.sh env         prints MAPPING_TEST_GALERA=... for the tests
#
# Ports (clear of the MariaDB on 3306): node N listens for SQL on 4405+N,
# for Galera replication on 4567+10(N-1), IST on 4568+10(N-1) and rsync SST
# on 4569+10(N-1). HAProxy listens on 127.0.0.1:4410 (node 1 active, nodes 2
# and 3 backups) with its stats page on 127.0.0.1:4411.
#
# Fails loudly (non-zero exit, message on stderr) if the cluster cannot form.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD/target/galera
HAPROXY_PORT=4410
NODES="1 2 3"

die() { echo "galera.sh: $*" >&2; exit 1; }
dir() { echo "$ROOT/node$1"; }
sql_port() { echo $((4405 + $1)); }
gcomm_port() { echo $((4567 + 10 * ($1 - 1))); }
ist_port() { echo $((4568 + 10 * ($1 - 1))); }
sst_port() { echo $((4569 + 10 * ($1 - 1))); }
pidof_node() { cat "$(dir "$1")/mysqld.pid" 2>/dev/null || true; }
alive() { local p; p=$(pidof_node "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }
q() { mariadb --no-defaults -uroot -S "$(dir "$1")/mysqld.sock" -N -B -e "$2" 2>/dev/null; }
status_var() { q "$1" "SHOW GLOBAL STATUS LIKE '$2'" | awk '{print $2}'; }

install_packages() {
    local missing=()
    [ -e /usr/lib/galera/libgalera_smm.so ] || missing+=(galera-4)
    command -v rsync >/dev/null || missing+=(rsync)
    command -v haproxy >/dev/null || missing+=(haproxy)
    command -v mariadb-install-db >/dev/null || missing+=(mariadb-server)
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "== installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

write_config() {
    local n=$1 d
    d=$(dir "$n")
    mkdir -p "$d"
    cat >"$d/my.cnf" <<EOF
[mysqld]
user=mysql
datadir=$d/data
socket=$d/mysqld.sock
pid-file=$d/mysqld.pid
log-error=$d/error.log
port=$(sql_port "$n")
bind-address=127.0.0.1
skip-name-resolve
character-set-server=utf8mb4
collation-server=utf8mb4_general_ci
default-storage-engine=InnoDB
binlog_format=ROW
innodb_autoinc_lock_mode=2
innodb_buffer_pool_size=32M
innodb_log_file_size=16M
innodb_flush_log_at_trx_commit=2
performance_schema=OFF
max_connections=200
wsrep_on=ON
wsrep_provider=/usr/lib/galera/libgalera_smm.so
wsrep_cluster_name=mapping_test
wsrep_cluster_address=gcomm://127.0.0.1:$(gcomm_port 1),127.0.0.1:$(gcomm_port 2),127.0.0.1:$(gcomm_port 3)
wsrep_node_name=node$n
wsrep_node_address=127.0.0.1:$(gcomm_port "$n")
wsrep_node_incoming_address=127.0.0.1:$(sql_port "$n")
wsrep_sst_method=rsync
wsrep_sst_receive_address=127.0.0.1:$(sst_port "$n")
wsrep_provider_options="gmcast.listen_addr=tcp://127.0.0.1:$(gcomm_port "$n");ist.recv_addr=127.0.0.1:$(ist_port "$n");gcache.size=64M;evs.keepalive_period=PT0.5S;evs.suspect_timeout=PT3S;evs.inactive_timeout=PT6S;evs.inactive_check_period=PT0.5S;evs.install_timeout=PT6S;pc.wait_prim_timeout=PT10S"
wsrep_slave_threads=2
EOF
}

wait_for() { # seconds, description, command...
    local secs=$1 what=$2
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@"; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.2
    done
    echo "   $what (${SECONDS}s)"
}

synced() { [ "$(status_var "$1" wsrep_local_state_comment)" = Synced ] && [ "$(status_var "$1" wsrep_ready)" = ON ]; }
# True once node N is synced, or once the process we started has died (no point waiting).
synced_or_dead() { synced "$1" || ! kill -0 "$(cat "$(dir "$1")/started.pid")" 2>/dev/null; }
size_is() { [ "$(status_var "$1" wsrep_cluster_size)" = "$2" ]; }
all_three() { for n in $NODES; do size_is "$n" 3 && synced "$n" || return 1; done; }

start_node() { # N [--wsrep-new-cluster]
    local n=$1 d
    d=$(dir "$n")
    alive "$n" && return 0
    shift
    rm -f "$d/mysqld.sock" "$d/mysqld.pid"
    # The nodes run as mysql (so does the rsync daemon of an SST, which could
    # not write into a root-owned data directory).
    chown -R mysql:mysql "$d"
    runuser -u mysql -- test -w "$d" || die "user mysql cannot write to $d (is a parent directory private?)"
    if [ ! -d "$d/data/mysql" ]; then
        mariadb-install-db --defaults-file="$d/my.cnf" --user=mysql --auth-root-authentication-method=normal \
            --skip-test-db >"$d/install.log" 2>&1 || { cat "$d/install.log" >&2; die "mariadb-install-db failed for node $n"; }
    fi
    setsid /usr/sbin/mariadbd --defaults-file="$d/my.cnf" "$@" >>"$d/stdout.log" 2>&1 </dev/null &
    echo $! >"$d/started.pid"
    if ! wait_for 120 "node $n synced" synced_or_dead "$n" || ! synced "$n"; then
        tail -n 30 "$d/error.log" >&2 || true
        die "node $n did not reach Synced (see $d/error.log)"
    fi
}

stop_node() {
    local n=$1 p
    p=$(pidof_node "$n")
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 0
    kill -CONT "$p" 2>/dev/null || true
    kill -TERM "$p"
    wait_for 60 "node $n stopped" bash -c "! kill -0 $p 2>/dev/null" || { kill -9 "$p" 2>/dev/null || true; }
}

write_haproxy() {
    cat >"$ROOT/haproxy.cfg" <<EOF
global
    maxconn 512
    pidfile $ROOT/haproxy.pid
defaults
    mode tcp
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    retries 2
    option redispatch
listen nova_api
    bind 127.0.0.1:$HAPROXY_PORT
    option mysql-check user haproxy_check
    default-server inter 500ms rise 2 fall 2 on-marked-down shutdown-sessions
    server node1 127.0.0.1:$(sql_port 1) check
    server node2 127.0.0.1:$(sql_port 2) check backup
    server node3 127.0.0.1:$(sql_port 3) check backup
listen stats
    mode http
    bind 127.0.0.1:$((HAPROXY_PORT + 1))
    stats enable
    stats uri /
EOF
}

haproxy_serving() { mariadb --no-defaults -uroot -h127.0.0.1 -P$HAPROXY_PORT -N -B -e 'SELECT 1' >/dev/null 2>&1; }
haproxy_alive() { local p; p=$(cat "$ROOT/haproxy.pid" 2>/dev/null || true); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

start_haproxy() {
    haproxy_alive && return 0
    write_haproxy
    haproxy -c -q -f "$ROOT/haproxy.cfg" || die "invalid HAProxy configuration $ROOT/haproxy.cfg"
    haproxy -D -f "$ROOT/haproxy.cfg" || die "HAProxy did not start"
    wait_for 30 "HAProxy serving on 127.0.0.1:$HAPROXY_PORT" haproxy_serving \
        || die "HAProxy on 127.0.0.1:$HAPROXY_PORT does not reach the cluster"
}

stop_haproxy() {
    local p
    p=$(cat "$ROOT/haproxy.pid" 2>/dev/null || true)
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then kill -TERM "$p"; fi
    rm -f "$ROOT/haproxy.pid"
}

cmd=${1:-}
case "$cmd" in
start)
    install_packages
    mkdir -p "$ROOT"
    for n in $NODES; do write_config "$n"; done
    echo "== Galera: starting 3 nodes under $ROOT"
    # Bootstrap from node 1 unless some node already runs (a partial restart).
    if alive 1 || alive 2 || alive 3; then
        for n in $NODES; do start_node "$n"; done
    else
        start_node 1 --wsrep-new-cluster
        # Users are created once, on the bootstrap node: the others get them by SST.
        q 1 "CREATE USER IF NOT EXISTS 'haproxy_check'@'127.0.0.1'; \
             CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; \
             GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;" \
            || die "could not create users on node 1"
        start_node 2
        start_node 3
    fi
    wait_for 60 "wsrep_cluster_size = 3 on every node" all_three || die "the cluster did not form (wsrep_cluster_size != 3)"
    start_haproxy
    "$0" env
    ;;
stop)
    stop_haproxy
    for n in 3 2 1; do stop_node "$n"; done
    ;;
status)
    for n in $NODES; do
        if alive "$n"; then
            echo "node$n pid $(pidof_node "$n") port $(sql_port "$n"): size=$(status_var "$n" wsrep_cluster_size) \
state=$(status_var "$n" wsrep_local_state_comment) ready=$(status_var "$n" wsrep_ready) \
status=$(status_var "$n" wsrep_cluster_status)"
        else
            echo "node$n down"
        fi
    done
    if haproxy_alive; then echo "haproxy 127.0.0.1:$HAPROXY_PORT up"; else echo "haproxy down"; fi
    ;;
kill)
    n=${2:?node number}
    p=$(pidof_node "$n")
    [ -n "$p" ] || die "node $n is not running"
    kill -9 "$p"
    ;;
restart)
    n=${2:?node number}
    write_config "$n"
    start_node "$n"
    ;;
pause)
    n=${2:?node number}
    kill -STOP "$(pidof_node "$n")"
    ;;
resume)
    n=${2:?node number}
    kill -CONT "$(pidof_node "$n")"
    ;;
env)
    echo "MAPPING_TEST_GALERA=mysql://root@127.0.0.1:$(sql_port 1)/,mysql://root@127.0.0.1:$(sql_port 2)/,mysql://root@127.0.0.1:$(sql_port 3)/;mysql://root@127.0.0.1:$HAPROXY_PORT/"
    ;;
*)
    sed -n '2,19p' "$0" >&2
    exit 2
    ;;
esac
