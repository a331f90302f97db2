#!/usr/bin/env bash
# Benchmark of map_instances (crates/mapping-bench/src/bin/map_instances.rs):
# N instances in a Nova cell database mapped into nova_api on each backend
# (this machine's SQLite, PostgreSQL and MariaDB test services; override with
# MAPPING_TEST_POSTGRES_URL / MAPPING_TEST_MYSQL_URL). Prints a Markdown table
# for docs/benchmarks.md.
#
#   scripts/bench-cellv2.sh                       # 1,000,000 instances per backend
#   scripts/bench-cellv2.sh --size 100000 --backends sqlite
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p mapping-bench --features all-backends --bin map_instances
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
./target/release/map_instances "$@"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
