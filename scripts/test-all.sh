#!/usr/bin/env bash
# The whole test suite on all three backends (SQLite, PostgreSQL, MariaDB):
# installs and starts what is missing, then runs every test. A backend that
# cannot be reached fails the run; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
cargo test --workspace --all-features "$@"
