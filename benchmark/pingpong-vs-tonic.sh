#!/usr/bin/env bash
# Ping-pong on bidi streams, ferrogrpc (`bench`) against tonic (`tonic_bench`),
# measured in one run: the same workload, proto, measurement and report code,
# only the gRPC stack differs. As in ../shared/bench/unary-vs-tonic.sh, each
# server is pinned to CPU 0 and each client to CPU 1 (one runtime thread
# each), and the rounds alternate tonic then ours.
#
# usage: benchmark/pingpong-vs-tonic.sh [rounds]          (default 3)
# env:   SIZE (1: request and response payload bytes) CONCURRENCY (1: streams)
#        DURATION (5 s measured per run) WARMUP (1 s)
# prints per round: round trips/s (each = 1 request + 1 response message),
# p50/p99 latency and CPU per round trip of each side, then on its last line
# the median ratios ours/tonic: "ratio msgs/s=R p50=R ...".
set -euo pipefail
rounds=${1:-3}
size=${SIZE:-1}
concurrency=${CONCURRENCY:-1}
duration=${DURATION:-5}
warmup=${WARMUP:-1}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build -q --release -p benchmark --bin bench --bin tonic_bench
work=$(mktemp -d "${TMPDIR:-/tmp}/pingpong-vs-tonic.XXXXXX")
trap 'rm -rf "$work"' EXIT
port=$((40000 + RANDOM % 20000))

run_one() { # tool port -> writes the client's JSON line to $work/<tool>.json
  local tool=$1 addr="127.0.0.1:$2" pid
  taskset -c 0 "target/release/$tool" --mode server --addr "$addr" --runtime-threads 1 \
    --serve-for 600 2>"$work/$tool.server.log" &
  pid=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && break; sleep 0.1; done
  taskset -c 1 "target/release/$tool" --mode client --addr "$addr" --runtime-threads 1 \
    --workload streaming --req-size "$size" --resp-size "$size" --concurrency "$concurrency" \
    --warmup "$warmup" --duration "$duration" --json 2>>"$work/$tool.client.log" \
    | grep '^{' >"$work/$tool.json" || true
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [ -s "$work/$tool.json" ] || { echo "$tool: no result" >&2; cat "$work/$tool".*.log >&2; exit 1; }
}

for r in $(seq "$rounds"); do
  run_one tonic_bench $((port++))
  run_one bench $((port++))
  python3 - "$r" "$work/bench.json" "$work/tonic_bench.json" "$work/rounds.jsonl" <<'PY'
import json, sys
r, ours, tonic = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
def side(j):
    return (f"{j['ops_per_sec']:.0f} rt/s p50={j['p50_us']:.1f}us p99={j['p99_us']:.1f}us "
            f"cpu/rt client={j['client_cpu_us_per_op']:.1f}us server={j['server_cpu_us_per_op'] or 0:.1f}us "
            f"allocs/rt={j['allocs_per_op']:.1f}")
print(f"round {r}: ours {side(ours)} | tonic {side(tonic)}", flush=True)
with open(sys.argv[4], "a") as out:
    out.write(json.dumps({"ours": ours, "tonic": tonic}) + "\n")
PY
done
python3 - "$work/rounds.jsonl" <<'PY'
import json, sys, statistics
rounds = [json.loads(l) for l in open(sys.argv[1])]
def ratio(key):
    vals = [r["ours"][key] / r["tonic"][key] for r in rounds if r["tonic"].get(key)]
    return statistics.median(vals) if vals else float("nan")
print(f"ratio msgs/s={ratio('ops_per_sec'):.2f} p50={ratio('p50_us'):.2f} p99={ratio('p99_us'):.2f} "
      f"client_cpu/msg={ratio('client_cpu_us_per_op'):.2f} server_cpu/msg={ratio('server_cpu_us_per_op'):.2f}"
      "  (ours/tonic, median of rounds; msgs/s higher is better, the others lower)")
PY
