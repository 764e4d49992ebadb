#!/usr/bin/env bash
# Side-by-side unary benchmark: a helloworld.Greeter/SayHello server of the
# project against the same server on tonic, under the same h2load load, in one
# run. Each server is pinned to CPU 0, h2load to CPU 1.
#
# usage: unary-vs-tonic.sh 'SERVER COMMAND with {ADDR}' [name_bytes] [rounds]
#   e.g. unary-vs-tonic.sh 'target/release/examples/greeter_server {ADDR}'
# env:   REQUESTS (200000) CONNS (50) STREAMS (20: concurrent streams per conn)
# prints per round: qps and p50/p99 latency for both, then the median ratio
# ours/tonic as the last line: "ratio qps=R p99=R".
#
# This is ../shared/bench/unary-vs-tonic.sh (the project's shared benchmark
# kit) with one change: h2load's per-request latency log of every run is kept
# as $BENCH_DIR/lat-{ours,tonic}-r<round>.log (the original overwrites one
# lat.log), so benchmark/plot_latency.py can draw both distributions. The
# tonic baseline is still built from the kit's tonic-greeter (BENCH_KIT, default
# ../shared/bench beside this repository).
set -euo pipefail
ours_cmd=${1:?usage: unary-vs-tonic.sh 'SERVER COMMAND with {ADDR}' [name_bytes] [rounds]}
name_bytes=${2:-100}
rounds=${3:-3}
here=${BENCH_KIT:-$(cd "$(dirname "$0")/../../shared/bench" && pwd)}
work=${BENCH_DIR:-${TMPDIR:-/tmp}/unary-vs-tonic}
mkdir -p "$work"
command -v h2load >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client protobuf-compiler >/dev/null; }
command -v protoc >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null; }
tonic_bin="$work/target/release/tonic-greeter-server"
if [ ! -x "$tonic_bin" ]; then
  (cd "$here/tonic-greeter" && PROTOC=$(command -v protoc) CARGO_TARGET_DIR="$work/target" cargo build -q --release)
fi
# One gRPC frame: flag 0, 4-byte length, HelloRequest{name: 'x' * name_bytes}.
python3 - "$name_bytes" "$work/req.bin" <<'PY'
import sys
n = int(sys.argv[1]); name = b"x" * n
def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F; v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v: return bytes(out)
msg = b"\x0a" + varint(n) + name
open(sys.argv[2], "wb").write(b"\x00" + len(msg).to_bytes(4, "big") + msg)
PY
port_base=$((40000 + RANDOM % 20000))
run_one() { # label command -> prints "qps p50_us p99_us"
  local label=$1 cmd=$2 port=$((port_base++))
  local addr="127.0.0.1:$port"
  taskset -c 0 bash -c "exec env ${cmd//\{ADDR\}/$addr}" >"$work/$label.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
  rm -f "$work/lat.log"
  local out
  out=$(taskset -c 1 h2load -n "${REQUESTS:-200000}" -c "${CONNS:-50}" -m "${STREAMS:-20}" -t 1 \
        -d "$work/req.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
        --log-file="$work/lat.log" "http://$addr/helloworld.Greeter/SayHello" 2>&1) || true
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  cp "$work/lat.log" "$work/lat-$label-r${ROUND:-0}.log" 2>/dev/null || true
  local ok
  ok=$(echo "$out" | sed -n 's/.* \([0-9]*\) succeeded.*/\1/p')
  [ "${ok:-0}" -gt 0 ] || { echo "$label: no successful request" >&2; echo "$out" | tail -5 >&2; echo "0 0 0"; return; }
  python3 - "$work/lat.log" "$out" <<'PY'
import sys, re
lat = sorted(int(l.split()[2]) for l in open(sys.argv[1]) if l.strip())
m = re.search(r"finished in [0-9.]+m?s, ([0-9.]+) req/s", sys.argv[2])
q = lambda f: lat[min(len(lat) - 1, int(len(lat) * f))]
print(f"{float(m.group(1)):.0f} {q(0.5)} {q(0.99)}")
PY
}
ratios_q=(); ratios_p=()
for r in $(seq "$rounds"); do
  read -r tq t50 t99 < <(ROUND=$r THREADS=1 run_one tonic "$tonic_bin {ADDR}")
  read -r oq o50 o99 < <(ROUND=$r run_one ours "$ours_cmd")
  echo "round $r: ours qps=$oq p50=${o50}us p99=${o99}us | tonic qps=$tq p50=${t50}us p99=${t99}us"
  ratios_q+=("$(python3 -c "print(${oq}/${tq} if ${tq} else 0)")")
  ratios_p+=("$(python3 -c "print(${o99}/${t99} if ${t99} else 0)")")
done
python3 - "${ratios_q[*]}" "${ratios_p[*]}" <<'PY'
import sys, statistics
q = [float(x) for x in sys.argv[1].split()]; p = [float(x) for x in sys.argv[2].split()]
print(f"ratio qps={statistics.median(q):.2f} p99={statistics.median(p):.2f}  (ours/tonic; qps higher is better, p99 lower is better)")
PY
