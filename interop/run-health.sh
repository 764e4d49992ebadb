#!/usr/bin/env bash
# Cross-implementation checks of health checking: ferrogrpc <-> grpcio.
#
#   interop/run-health.sh OUR_INTEROP_SERVER OUR_HEALTH_CLIENT VENV_DIR
#
# OUR_INTEROP_SERVER is ferrogrpc's interop_server, OUR_HEALTH_CLIENT its
# health_client. VENV_DIR is the grpcio venv of run-cross.sh (made by
# peers/python/setup_venv.sh unless SKIP_VENV_SETUP=1; it brings
# grpcio-health-checking). Steps:
#
#   grpcio->ours   health/check_health.py (grpcio's health client) against
#                  OUR_INTEROP_SERVER: Check and Watch of "" and
#                  grpc.testing.TestService (SERVING) and of an unknown
#                  service (NOT_FOUND / SERVICE_UNKNOWN)
#   ours->grpcio   OUR_HEALTH_CLIENT with one channel (round_robin,
#                  healthCheckConfig grpc.testing.TestService) over two
#                  health/health_server.py backends, "serving" and
#                  "not_serving" (started NOT_SERVING): client-side health
#                  checking (gRFC A17) must keep every call off
#                  "not_serving", follow status changes, and fail calls with
#                  UNAVAILABLE while no backend is SERVING
#   control        the same client and backends with a service config
#                  without healthCheckConfig must reach "not_serving" (so
#                  the backends answer whatever their health, and the pass
#                  above is the health checking's doing)
#   grpcio->grpcio only with PY_SELF_CHECK=1 (checks the peers themselves):
#                  check_health.py against "serving", then SIGUSR1 flips
#                  "not_serving" to SERVING and check_health.py passes
#                  against it too
#
# Output: one line per check, "PASS step check" or "FAIL step check: why",
# then exactly "health interop: N passed, M failed". The client's INFO lines
# (how many calls each backend answered) go to stderr. Exit status 1 if
# M > 0 (a crashed or timed-out client, a server that did not come up or
# died, or a client that reported nothing each count as a failure), 2 on bad
# usage.
#
# Env:
#   SKIP_VENV_SETUP=1     do not run peers/python/setup_venv.sh VENV_DIR
#   PY_SELF_CHECK=1       also run grpcio->grpcio
#   LOG_DIR=DIR           where logs go (default: a new temp dir, kept)
#   STEP_TIMEOUT=S        hard limit per client run (default 120)
#   SERVER_START_TIMEOUT=S  how long a server may take to say its port
#                         (default 30)
#   SERVER_MAX_SECONDS=S  hard limit on a server's life (default 1800)
#   VENV_SETUP_TIMEOUT=S  hard limit on the venv setup (default 900)
set -euo pipefail

usage() {
  echo "usage: $0 OUR_INTEROP_SERVER OUR_HEALTH_CLIENT VENV_DIR" >&2
  exit 2
}
[[ $# -eq 3 ]] || usage

OUR_SERVER=$1
OUR_CLIENT=$2
VENV_DIR=$3

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PEERS="$HERE/peers/python"
HEALTH_PEERS="$HERE/health"
STEP_TIMEOUT=${STEP_TIMEOUT:-120}
SERVER_START_TIMEOUT=${SERVER_START_TIMEOUT:-30}
SERVER_MAX_SECONDS=${SERVER_MAX_SECONDS:-1800}
VENV_SETUP_TIMEOUT=${VENV_SETUP_TIMEOUT:-900}
LOG_DIR=${LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/run-health.XXXXXX")}
mkdir -p "$LOG_DIR"

for b in "$OUR_SERVER" "$OUR_CLIENT"; do
  [[ -x "$b" ]] || { echo "run-health: not an executable: $b" >&2; exit 2; }
done

# The control's service config: round_robin without healthCheckConfig.
NO_HEALTH_CONFIG='{"loadBalancingConfig": [{"round_robin": {}}]}'

log() { echo "run-health: $*" >&2; }

# shellcheck source=lib/steps.sh
source "$HERE/lib/steps.sh"

# ----- grpcio venv ------------------------------------------------------------
if [[ "${SKIP_VENV_SETUP:-0}" != 1 ]]; then
  if ! timeout -k 10 "$VENV_SETUP_TIMEOUT" "$PEERS/setup_venv.sh" "$VENV_DIR"; then
    log "venv setup failed"
    fail setup "venv setup in $VENV_DIR failed"
    echo "health interop: $PASSED passed, $FAILED failed"
    exit 1
  fi
fi
VPY="$VENV_DIR/bin/python"
export INTEROP_GEN_DIR="$VENV_DIR/gen"


# ----- the steps ----------------------------------------------------------------

# (a) grpcio's health client against our interop_server.
if start_server interop_server log "$OUR_SERVER" --port 0; then
  OURS_PID=$SERVER_PID
  run_client "grpcio->ours" "$VPY" "$HEALTH_PEERS/check_health.py" "127.0.0.1:$SERVER_PORT"
  collect_checks "grpcio->ours"
  server_alive interop_server "$OURS_PID"
fi

# (b) our health-checking channel over grpcio backends.
if start_server serving out "$VPY" "$HEALTH_PEERS/health_server.py" --port 0 --name serving; then
  SERVING_PID=$SERVER_PID
  SERVING_PORT=$SERVER_PORT
  if start_server not_serving out "$VPY" "$HEALTH_PEERS/health_server.py" --port 0 \
       --name not_serving --not-serving; then
    NOT_SERVING_PID=$SERVER_PID
    NOT_SERVING_PORT=$SERVER_PORT
    ADDRESSES="127.0.0.1:$SERVING_PORT,127.0.0.1:$NOT_SERVING_PORT"

    run_client "ours->grpcio" "$OUR_CLIENT" --server_addresses "$ADDRESSES" \
      --not_serving_servers not_serving
    collect_checks "ours->grpcio"

    # Control: without healthCheckConfig the NOT_SERVING backend gets calls.
    step="control"
    run_client "$step" "$OUR_CLIENT" --server_addresses "$ADDRESSES" \
      --not_serving_servers not_serving --toggle_checks false \
      --service_config_json "$NO_HEALTH_CONFIG"
    f=$(step_file "$step")
    if [[ $CLIENT_RC -eq 1 ]] &&
       grep -q '^PASS backends_as_expected$' "$f.out" &&
       grep -q '^FAIL not_serving_gets_no_calls: ' "$f.out"; then
      pass "$step no_health_check_config_reaches_not_serving"
    elif [[ $CLIENT_RC -eq 0 || $CLIENT_RC -eq 1 ]]; then
      fail "$step no_health_check_config_reaches_not_serving" \
        "want backends_as_expected to pass and not_serving_gets_no_calls to fail (exit status 1); got exit status $CLIENT_RC: $(grep -E '^(PASS|FAIL) ' "$f.out" | head -c 400 | tr '\n' ' ')"
    fi

    if [[ "${PY_SELF_CHECK:-0}" == 1 ]]; then
      run_client "grpcio->grpcio" "$VPY" "$HEALTH_PEERS/check_health.py" \
        "127.0.0.1:$SERVING_PORT"
      collect_checks "grpcio->grpcio"

      step="grpcio->grpcio_sigusr1"
      # The signal goes to the server itself, not to its timeout wrapper
      # (which SIGUSR1 would end).
      py_pid=$(ps -o pid= --ppid "$NOT_SERVING_PID" | head -n 1 | tr -d ' ')
      [[ -n "$py_pid" ]] && kill -USR1 "$py_pid" 2>/dev/null || true
      deadline=$((SECONDS + 5))
      until grep -q 'is SERVING (SIGUSR1)' "$LOG_DIR/not_serving.log" ||
            ((SECONDS >= deadline)); do
        sleep 0.1
      done
      run_client "$step" "$VPY" "$HEALTH_PEERS/check_health.py" \
        "127.0.0.1:$NOT_SERVING_PORT"
      collect_checks "$step"
    fi

    server_alive not_serving "$NOT_SERVING_PID"
  fi
  server_alive serving "$SERVING_PID"
fi

cleanup
echo "health interop: $PASSED passed, $FAILED failed (logs: $LOG_DIR)" >&2
echo "health interop: $PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]] || exit 1
exit 0
