#!/usr/bin/env bash
# Coverage-guided fuzzing of the hand-written parsers (fuzz/, issue 16):
# builds every target with cargo fuzz (libFuzzer) and runs each for N seconds
# (default 30), one after the other. Fails on the first crash, panic, hang
# (an input running over 10 s) or out-of-memory; libFuzzer then saves the
# input under fuzz/artifacts/<target>/ and prints how to reproduce it.
#
#   scripts/fuzz.sh [seconds] [target...]      (default: 30, every target)
#
# Installs what it needs on a fresh machine: cargo-fuzz (from crates.io,
# pinned) and a C++ compiler (libfuzzer-sys compiles libFuzzer; clang is not
# needed). Runs on the stable toolchain: cargo fuzz passes nightly-only
# compiler flags (-Zsanitizer, sanitizer-coverage passes), which
# RUSTC_BOOTSTRAP=1 allows on stable for these commands only.
#
# Inputs found are kept in fuzz/corpus/<target>/ (not committed); the seeds
# in fuzz/seeds/<target>/ are committed and only read.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "fuzz: $*" >&2; }
die() { echo "fuzz: ERROR: $*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

CARGO_FUZZ_VERSION=0.13.2
SECONDS_PER_TARGET=${1:-30}
shift || true
case "$SECONDS_PER_TARGET" in
  '' | *[!0-9]*) die "seconds must be a whole number, got '$SECONDS_PER_TARGET'" ;;
esac

if ! command -v c++ >/dev/null 2>&1; then
  log "installing g++ (libfuzzer-sys compiles libFuzzer's C++ sources)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null
fi
command -v c++ >/dev/null 2>&1 || die "no C++ compiler (c++) after installing g++"

if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --quiet
fi

# Release code with debug assertions and overflow checks (-O -a). No
# sanitizer (-s none): the code under test is safe Rust, where AddressSanitizer
# finds nothing a panic would not, while it slows every execution and the
# build; SQLite's C code is not instrumented either way.
FLAGS=(-O -a -s none)
export RUSTC_BOOTSTRAP=1

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi
[ ${#targets[@]} -gt 0 ] || die "no fuzz targets found"

start=$(date +%s)
log "building ${targets[*]}"
for target in "${targets[@]}"; do
  cargo fuzz build "${FLAGS[@]}" "$target"
done
log "built in $(( $(date +%s) - start )) s"

for target in "${targets[@]}"; do
  corpus=fuzz/corpus/$target seeds=fuzz/seeds/$target
  [ -d "$seeds" ] || die "no seed corpus $seeds"
  mkdir -p "$corpus"
  log "running $target for ${SECONDS_PER_TARGET} s"
  # -timeout: an input running longer is a hang. -max_len: the largest seed
  # (a whole Nova schema) is under 2 KiB. -print_final_stats: executions.
  # libFuzzer's progress lines go to a log under target/; on a failure its
  # tail (the crash, the input's path) is printed, else its final stats.
  out=target/fuzz-logs/$target.log
  mkdir -p target/fuzz-logs
  if ! cargo fuzz run "${FLAGS[@]}" "$target" "$corpus" "$seeds" -- \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
    -max_len=4096 -print_final_stats=1 >"$out" 2>&1; then
    tail -n 60 "$out" >&2
    die "$target failed: the input is in fuzz/artifacts/$target/ (full log: $out)"
  fi
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^Done [0-9]+ runs' "$out" >&2 || true
done
log "every target ran clean; total $(( $(date +%s) - start )) s"
