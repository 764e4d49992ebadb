#!/usr/bin/env bash
# Fuzz smoke test: builds every target, replays the saved regressions, and
# fuzzes each target for a short time from its seed corpus; fails on any
# crash, panic, timeout or out-of-memory.
#
# Environment:
#   SMOKE_SECONDS    seconds of fuzzing per target (default 20)
#   SMOKE_TARGETS    space-separated targets (default: all of them)
#   FUZZ_SANITIZER   none (default, stable toolchain) or address (ASan;
#                    uses RUSTC_BOOTSTRAP=1 on stable, or set
#                    FUZZ_TOOLCHAIN=nightly)
#   FUZZ_TOOLCHAIN   rustup toolchain for the build (default: the current)
#   FUZZ_TARGET_DIR  cargo target directory (default fuzz/target); a
#                    directory kept between runs makes the build incremental
#   SMOKE_WORK       scratch directory (default: a fresh temporary one)
set -euo pipefail
cd "$(dirname "$0")"

SECONDS_EACH=${SMOKE_SECONDS:-20}
SANITIZER=${FUZZ_SANITIZER:-none}
TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/target}
ALL_TARGETS="server_conn client_conn deframer decompress metadata grpc_timeout grpc_message service_config dns_txt target"
TARGETS=${SMOKE_TARGETS:-$ALL_TARGETS}
started=$(date +%s)
elapsed() { echo "$(( $(date +%s) - started ))s"; }

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

toolchain=()
[ -n "${FUZZ_TOOLCHAIN:-}" ] && toolchain=("+$FUZZ_TOOLCHAIN")
if [ "$SANITIZER" != none ] && [ -z "${FUZZ_TOOLCHAIN:-}" ]; then
  # -Zsanitizer needs nightly features.
  export RUSTC_BOOTSTRAP=1
fi

echo "== fuzz smoke: build ($SANITIZER sanitizer) ($(elapsed))"
for t in $TARGETS; do
  nice -n 10 cargo "${toolchain[@]}" fuzz build -O --sanitizer "$SANITIZER" --target-dir "$TARGET_DIR" "$t"
done
bin_dir="$TARGET_DIR/$(rustc -vV | sed -n 's/^host: //p')/release"

work=${SMOKE_WORK:-$(mktemp -d)}
mkdir -p "$work"
failed=()

dict_for() {
  case "$1" in
    server_conn | client_conn | metadata) echo dictionaries/http2.dict ;;
    service_config | dns_txt) echo dictionaries/json.dict ;;
    target) echo dictionaries/target.dict ;;
  esac
}

for t in $TARGETS; do
  bin="$bin_dir/$t"
  mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
  # Saved reproducers must pass (each runs once).
  regressions=()
  for f in regressions/"$t"-*; do
    [ -f "$f" ] && regressions+=("$f")
  done
  if [ ${#regressions[@]} -gt 0 ]; then
    echo "== $t: ${#regressions[@]} regression input(s) ($(elapsed))"
    if ! "$bin" -timeout=20 -rss_limit_mb=2048 "${regressions[@]}" >"$work/$t/regressions.log" 2>&1; then
      tail -40 "$work/$t/regressions.log"
      failed+=("$t (regression)")
      continue
    fi
  fi
  echo "== $t: ${SECONDS_EACH}s ($(elapsed))"
  dict=$(dict_for "$t")
  args=(
    -max_total_time="$SECONDS_EACH"
    -timeout=20
    -rss_limit_mb=2048
    -print_final_stats=1
    -artifact_prefix="$work/$t/artifacts/"
  )
  [ -n "$dict" ] && args+=(-dict="$dict")
  # The first corpus directory takes new inputs; the seeds stay untouched.
  seeds=()
  [ -d "corpus/$t" ] && seeds+=("corpus/$t")
  if nice -n 10 "$bin" "${args[@]}" "$work/$t/corpus" "${seeds[@]}" >"$work/$t/fuzz.log" 2>&1; then
    grep -E '^#[0-9]+[[:space:]]+DONE' "$work/$t/fuzz.log" | tail -1 || true
  else
    tail -60 "$work/$t/fuzz.log"
    ls "$work/$t/artifacts"
    failed+=("$t")
  fi
done

echo "== fuzz smoke done ($(elapsed)); logs and artifacts in $work"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  echo "Reproduce: $bin_dir/<target> <artifact>   (see fuzz/README.md)"
  exit 1
fi
[ -z "${SMOKE_WORK:-}" ] && rm -rf "$work"
exit 0
