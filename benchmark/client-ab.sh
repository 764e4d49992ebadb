#!/usr/bin/env bash
# A/B of client builds (or client settings) against one server, in one run:
# the server (`bench --mode server`, one thread) pinned to CPU 0, each client
# (`bench --mode client`, one thread) pinned to CPU 1, the variants taking
# turns for ROUNDS rounds so that machine noise spreads over all of them.
#
#   benchmark/client-ab.sh SERVER_BENCH 'NAME=BENCH [flags]' 'NAME=BENCH [flags]' ...
#   e.g. benchmark/client-ab.sh target/release/bench \
#          'before=/tmp/old/bench' 'after=target/release/bench' \
#          "policy=target/release/bench --service-config $RETRY_JSON"
#
# env: ROUNDS (3) DURATION (5) WARMUP (1) CONCURRENCY (1,32) WORKLOAD (unary)
# Prints each client's report rows tagged with its name and round; compare
# ops/s and cpu/op (client and server together) across the names.
set -euo pipefail
[[ $# -ge 2 ]] || { sed -n 2,14p "$0"; exit 2; }
server_bin=$1
shift
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
CONCURRENCY=${CONCURRENCY:-1,32}
WORKLOAD=${WORKLOAD:-unary}
port=$((20000 + RANDOM % 20000))
addr=127.0.0.1:$port

taskset -c 0 "$server_bin" --mode server --addr "$addr" --runtime-threads 1 \
  --serve-for $((ROUNDS * $# * (DURATION + WARMUP + 5) * 3 + 60)) >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
sleep 1

for round in $(seq 1 "$ROUNDS"); do
  for variant in "$@"; do
    name=${variant%%=*}
    cmd=${variant#*=}
    # shellcheck disable=SC2086 # the variant's flags are meant to split
    timeout $((DURATION * 4 + WARMUP * 4 + 60)) taskset -c 1 $cmd --mode client --addr "$addr" \
      --runtime-threads 1 --workload "$WORKLOAD" --concurrency "$CONCURRENCY" \
      --duration "$DURATION" --warmup "$WARMUP" 2>&1 |
      grep -E '^ferrogrpc|^ +client:' | sed "s/^/$name r$round: /" || true
  done
done
