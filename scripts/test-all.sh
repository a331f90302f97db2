#!/usr/bin/env bash
# The whole test suite on all three backends (SQLite, PostgreSQL, MariaDB):
# installs and starts what is missing, then runs every test. A backend that
# cannot be reached fails the run; nothing is skipped. Ends with one line
# adding up every test binary's result.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
log=$(mktemp)
# The Galera cluster and HAProxy (tests/galera.rs): started here, stopped on exit.
trap 'bash scripts/galera.sh stop >/dev/null 2>&1 || true; rm -f "$log"' EXIT
bash scripts/galera.sh start || { echo "test-all.sh: the Galera cluster did not form" >&2; exit 1; }
galera=$(bash scripts/galera.sh env)
export MAPPING_TEST_GALERA_DIR=$(bash scripts/galera.sh dir)
set +e
env "$galera" MAPPING_TEST_RESTART_SERVERS=1 cargo test --workspace --all-features "$@" \
  -- --skip galera_cluster_survives 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The cluster test on its own, bounded in time: it once hung in a MySQL read
# that never returned (see docs/galera.md). A hang is reported loudly, with
# its threads' stacks, and retried once on a fresh cluster; a failure is
# never retried.
for attempt in 1 2; do
  # Shortly before the bound, where a hung test stands, for the record.
  (
    sleep 880
    for p in $(pgrep -f 'target/debug/deps/galera-' || true); do
      echo "test-all.sh: the Galera test (pid $p) is still running; its threads:" >&2
      gdb -p "$p" -batch -ex 'thread apply all bt 12' 2>/dev/null | grep -E '^(Thread|#)' | head -200 >&2 || true
    done
  ) &
  watcher=$!
  env "$galera" timeout -k 10 900 cargo test --all-features --test galera 2>&1 | tee -a "$log"
  rc=${PIPESTATUS[0]}
  kill "$watcher" 2>/dev/null || true
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    pkill -f 'target/debug/deps/galera-' || true
    echo "test-all.sh: WARNING: the Galera test hung (attempt $attempt)" >&2
    if [ "$attempt" -eq 1 ]; then
      bash scripts/galera.sh stop || true
      # A fresh cluster: nodes killed mid-test cannot bootstrap again.
      rm -rf "$(bash scripts/galera.sh dir)"
      bash scripts/galera.sh start || { status=1; break; }
      continue
    fi
  fi
  [ "$rc" -eq 0 ] || status=1
  break
done
# Adoption and migrations behave on the cluster (through HAProxy) as on one server.
MAPPING_TEST_MYSQL_URL="${galera##*;}" cargo test --all-features --test schema -- mysql 2>&1 | tee -a "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
set -e
awk '/^test result:/ {
       for (i = 1; i <= NF; i++) {
         if ($(i+1) ~ /^passed/) p += $i
         if ($(i+1) ~ /^failed/) f += $i
         if ($(i+1) ~ /^ignored/) s += $i
       }
     }
     END { printf "\ntests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
