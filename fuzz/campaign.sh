#!/usr/bin/env bash
# A longer fuzzing campaign at the lowest priority: one target at a time,
# each for up to CAMPAIGN_SECONDS (default one hour; libFuzzer runs one
# process, so that is one CPU-hour), the most valuable first. Records each
# target's executions, coverage (cov/ft) and crashes in a summary file.
#
#   nohup setsid fuzz/campaign.sh >/dev/null 2>&1 &
#
# Environment:
#   CAMPAIGN_SECONDS  per target (default 3600)
#   CAMPAIGN_TARGETS  space-separated targets, in order
#   CAMPAIGN_DIR      logs, corpora, artifacts, summary (default /tmp/fuzz-campaign)
#   FUZZ_TARGET_DIR   cargo target directory (default fuzz/target)
#
# Outputs: $CAMPAIGN_DIR/<target>.log (libFuzzer's output, final stats at
# the end), $CAMPAIGN_DIR/corpus/<target> (the grown corpus, seeded from
# fuzz/corpus), $CAMPAIGN_DIR/artifacts/<target>-* (crash-, timeout-,
# oom-, slow-unit- files), $CAMPAIGN_DIR/summary.txt.
set -uo pipefail
cd "$(dirname "$0")"

SECONDS_EACH=${CAMPAIGN_SECONDS:-3600}
TARGETS=${CAMPAIGN_TARGETS:-"server_conn deframer decompress metadata client_conn grpc_message grpc_timeout service_config dns_txt target"}
DIR=${CAMPAIGN_DIR:-/tmp/fuzz-campaign}
TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/target}
SUMMARY="$DIR/summary.txt"
mkdir -p "$DIR/corpus" "$DIR/artifacts"

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
nice -n 19 cargo fuzz build -O --sanitizer none --target-dir "$TARGET_DIR" >"$DIR/build.log" 2>&1 || {
  echo "$(date -Is) build failed, see $DIR/build.log" >>"$SUMMARY"
  exit 1
}
bin_dir="$TARGET_DIR/$(rustc -vV | sed -n 's/^host: //p')/release"

dict_for() {
  case "$1" in
    server_conn | client_conn | metadata) echo "-dict=dictionaries/http2.dict" ;;
    service_config | dns_txt) echo "-dict=dictionaries/json.dict" ;;
    target) echo "-dict=dictionaries/target.dict" ;;
  esac
}

echo "$(date -Is) campaign started (pid $$): $SECONDS_EACH s per target: $TARGETS" >>"$SUMMARY"
for t in $TARGETS; do
  log="$DIR/$t.log"
  mkdir -p "$DIR/corpus/$t"
  [ -d "corpus/$t" ] && cp -n corpus/"$t"/* "$DIR/corpus/$t/" 2>/dev/null
  before=$(ls "$DIR/artifacts" | grep -c "^$t-" || true)
  start=$(date +%s)
  : >"$log"
  runs=0
  rc=0
  quick=0
  # One process at a time (faster than -fork); after a crash, timeout or
  # OOM (saved under artifacts/) it starts again for the time left, so one
  # finding does not end the hour.
  while :; do
    left=$(( SECONDS_EACH - ($(date +%s) - start) ))
    [ "$left" -ge 5 ] || break
    runs=$((runs + 1))
    echo "=== run $runs, ${left}s left" >>"$log"
    nice -n 19 "$bin_dir/$t" -max_total_time="$left" -timeout=20 -rss_limit_mb=2048 \
      -print_final_stats=1 $(dict_for "$t") \
      -artifact_prefix="$DIR/artifacts/$t-" "$DIR/corpus/$t" >>"$log" 2>&1
    rc=$?
    [ "$rc" -eq 0 ] && break
    # An input that fails at once, every time (a crashing seed), must not
    # make this a tight loop.
    if [ $(( SECONDS_EACH - ($(date +%s) - start) )) -gt $((left - 10)) ]; then
      quick=$((quick + 1))
      [ "$quick" -ge 3 ] && break
    else
      quick=0
    fi
  done
  took=$(( $(date +%s) - start ))
  after=$(ls "$DIR/artifacts" | grep -c "^$t-" || true)
  # Executions: the sum of each run's final stat; coverage: the last
  # status line ("#N  DONE/pulse/NEW  cov: C ft: F ...").
  execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | awk '{s += $1} END {print s + 0}')
  last=$(grep -E '^#[0-9]+' "$log" | grep -E 'cov: ' | tail -1)
  cov=$(echo "$last" | sed -nE 's/.*cov: ([0-9]+).*/\1/p')
  ft=$(echo "$last" | sed -nE 's/.*ft: ([0-9]+).*/\1/p')
  corp=$(ls "$DIR/corpus/$t" | wc -l)
  printf '%s %-15s %5ss runs=%s exit=%s execs=%s cov=%s ft=%s corpus=%s new_artifacts=%s\n' \
    "$(date -Is)" "$t" "$took" "$runs" "$rc" "$execs" "${cov:-?}" "${ft:-?}" "$corp" "$((after - before))" >>"$SUMMARY"
done
echo "$(date -Is) campaign finished" >>"$SUMMARY"
