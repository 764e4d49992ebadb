#!/usr/bin/env bash
# Soak test: builds the `soak` binary (release) and runs it for DURATION
# (default 90s, the CI run; e.g. `benchmark/soak.sh 10m`). Further arguments
# go to `soak` (see the top of benchmark/src/bin/soak.rs).
#
#   benchmark/soak.sh [DURATION] [soak flags...]
#
# The samples go to $SOAK_CSV (default $target/soak.csv), the Markdown tables
# to $SOAK_MD (default $target/soak.md). Exit status: soak's (1 when the
# verdict fails: growth, unexpected call outcomes, a stalled load).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-90s}
[[ $# -gt 0 ]] && shift
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p benchmark --bin soak
exec "$target/release/soak" --duration "$duration" \
  --csv "${SOAK_CSV:-$target/soak.csv}" --markdown "${SOAK_MD:-$target/soak.md}" "$@"
