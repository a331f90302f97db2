#!/usr/bin/env bash
# Lookups and creates on the Galera cluster (directly on node 1, through
# HAProxy, with wsrep_sync_wait = 1) beside the single MariaDB server: the
# figures of docs/galera.md. Starts the cluster if it is not running, and
# stops it afterwards only if it started it.
#
#   scripts/bench-galera.sh            # ~1 min after the build
#   scripts/bench-galera.sh --quick    # smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p mapping-bench --features all-backends --bin galera-bench
status=$(bash scripts/galera.sh status)
if [[ $status != *"node1 pid"* ]]; then
    trap 'bash scripts/galera.sh stop >/dev/null 2>&1 || true' EXIT
    bash scripts/galera.sh start
fi
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
env "$(bash scripts/galera.sh env)" ./target/release/galera-bench "$@"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
