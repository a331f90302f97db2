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
set +e
env "$galera" MAPPING_TEST_RESTART_SERVERS=1 cargo test --workspace --all-features "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
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
