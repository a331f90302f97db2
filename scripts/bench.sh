#!/usr/bin/env bash
# Reproduces every figure of docs/benchmarks.md: builds the benchmark binary
# (release, all three backends) and runs it against this machine's SQLite
# (temporary file, WAL), PostgreSQL and MariaDB (the test services; override
# with MAPPING_TEST_POSTGRES_URL / MAPPING_TEST_MYSQL_URL). Each backend gets a
# fresh database that is dropped at the end. Writes target/bench/report.md.
#
#   scripts/bench.sh                 # full run: 10k and 1M rows (~15 min)
#   scripts/bench.sh --quick --sizes 10000   # smoke test (~20 s)
#   MAPPING_BENCH_ONLY=lookup_one scripts/bench.sh --sizes 10000
#
# Instruction counts (stable on a loaded machine): the bench's --profile
# mode under callgrind, see "Instruction counts per call" in
# docs/notes/benchmarks-history.md and crates/mapping-bench/src/profile.rs.
#
# Take figures on a quiet machine: the load average is printed before and
# after, and recorded in the report.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p mapping-bench --features all-backends
export BENCH_RUSTC="$(rustc --version)"
export BENCH_DIESEL="diesel $(awk '/^name = "diesel"$/ {getline; print $3}' Cargo.lock | tr -d '"')"
# Client and server on one vCPU: see pin_server in crates/mapping-bench/src/main.rs.
export MAPPING_BENCH_CPU="${MAPPING_BENCH_CPU:-1}"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
taskset -c "$MAPPING_BENCH_CPU" ./target/release/mapping-bench "$@"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
