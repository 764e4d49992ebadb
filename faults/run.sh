#!/usr/bin/env bash
# Fault-injection tests of ferrogrpc (faults/tests): real server and client
# processes over real sockets while the server is killed and restarted,
# stopped with SIGSTOP, put behind a lossy link (two network namespaces, a
# veth pair, tc netem or iptables), or black-holed with iptables.
#
#   faults/run.sh            (as root: namespaces, tc and iptables need it)
#
# Installs what is missing (iproute2 for ip and tc, iptables), builds in
# release and runs the scenarios one at a time. CI is set for the tests, so
# a test that cannot get root or a usable `ip netns` fails instead of
# skipping. FAULTS_SABOTAGE=no_wait_for_ready,no_deadline,no_retry,no_keepalive
# turns off what the tests check, to see them fail (see faults/src/harness.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
started=$(date +%s)
step() { echo "== faults: $* ($(($(date +%s) - started))s)"; }

if [[ $(id -u) -ne 0 ]]; then
  echo "faults/run.sh: run as root (network namespaces, tc and iptables need it)" >&2
  exit 2
fi

step "tools"
need=()
command -v ip >/dev/null && command -v tc >/dev/null || need+=(iproute2)
command -v iptables >/dev/null || need+=(iptables)
if ((${#need[@]})); then
  echo "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Namespaces left by a run that was killed before it could clean up (their
# names carry the pid of the test process that made them), with the server
# or client that run left in them.
for ns in $(ip netns list | awk '/^faults-[0-9]+x[0-9]+-(srv|cli)/ {print $1}'); do
  pid=${ns#faults-}
  pid=${pid%%x*}
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "removing stale namespace $ns"
    ip netns pids "$ns" | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" || true
  fi
done

step "build (release)"
nice -n 10 cargo test --release -p faults --no-run

step "scenarios"
CI=${CI:-true} cargo test --release -p faults --no-fail-fast -- --test-threads=1 --nocapture

step "done"
