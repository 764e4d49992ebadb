#!/usr/bin/env bash
# Cross-implementation checks of rich error details (google.rpc.Status in
# grpc-status-details-bin): ferrogrpc <-> grpcio with grpcio-status.
#
#   interop/run-error-details.sh OUR_ERROR_DETAILS_SERVER OUR_ERROR_DETAILS_CLIENT VENV_DIR
#
# OUR_ERROR_DETAILS_SERVER and OUR_ERROR_DETAILS_CLIENT are ferrogrpc's
# error_details_server and error_details_client. VENV_DIR is the grpcio venv
# of run-cross.sh (made by peers/python/setup_venv.sh unless
# SKIP_VENV_SETUP=1); this script adds grpcio-status to it, of the venv's
# grpcio version (it brings googleapis-common-protos, the google.rpc
# messages), whether or not SKIP_VENV_SETUP is set. Steps:
#
#   grpcio->ours   peers/error_details_client.py (rpc_status.from_call, Any
#                  unpacking) against OUR_ERROR_DETAILS_SERVER
#                  (Status::with_error_details): ErrorInfo, BadRequest,
#                  RetryInfo and an opaque StringValue, in a Trailers-Only
#                  response and after a streamed message; details whose code
#                  is not the call's are refused
#   ours->grpcio   OUR_ERROR_DETAILS_CLIENT (Status::error_details,
#                  error_detail::<T>) against peers/error_details_server.py
#                  (rpc_status.to_status, abort_with_status): the same checks
#   control        both again against servers sending the same errors
#                  without details (--send_details false, --no-details): the
#                  status checks must pass and the detail checks fail, so
#                  that a pass above is the details' doing
#   grpcio->grpcio only with PY_SELF_CHECK=1 (checks the peers themselves)
#
# Output: one line per check, "PASS step check" or "FAIL step check: why",
# then exactly "error details interop: N passed, M failed". Exit status 1 if
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
  echo "usage: $0 OUR_ERROR_DETAILS_SERVER OUR_ERROR_DETAILS_CLIENT VENV_DIR" >&2
  exit 2
}
[[ $# -eq 3 ]] || usage

OUR_SERVER=$1
OUR_CLIENT=$2
VENV_DIR=$3

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PEERS="$HERE/peers"
STEP_TIMEOUT=${STEP_TIMEOUT:-120}
SERVER_START_TIMEOUT=${SERVER_START_TIMEOUT:-30}
SERVER_MAX_SECONDS=${SERVER_MAX_SECONDS:-1800}
VENV_SETUP_TIMEOUT=${VENV_SETUP_TIMEOUT:-900}
LOG_DIR=${LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/run-error-details.XXXXXX")}
mkdir -p "$LOG_DIR"

for b in "$OUR_SERVER" "$OUR_CLIENT"; do
  [[ -x "$b" ]] || { echo "run-error-details: not an executable: $b" >&2; exit 2; }
done

log() { echo "run-error-details: $*" >&2; }

# shellcheck source=lib/steps.sh
source "$HERE/lib/steps.sh"

summary() {
  echo "error details interop: $PASSED passed, $FAILED failed (logs: $LOG_DIR)" >&2
  echo "error details interop: $PASSED passed, $FAILED failed"
}

# ----- grpcio venv, plus grpcio-status ------------------------------------------
if [[ "${SKIP_VENV_SETUP:-0}" != 1 ]]; then
  if ! timeout -k 10 "$VENV_SETUP_TIMEOUT" "$PEERS/python/setup_venv.sh" "$VENV_DIR"; then
    log "venv setup failed"
    fail setup "venv setup in $VENV_DIR failed"
    summary
    exit 1
  fi
fi
VPY="$VENV_DIR/bin/python"
export INTEROP_GEN_DIR="$VENV_DIR/gen"

if ! install_grpcio_status >"$LOG_DIR/grpcio-status.log" 2>&1; then
  cat "$LOG_DIR/grpcio-status.log" >&2
  fail setup "installing grpcio-status into $VENV_DIR failed (log: $LOG_DIR/grpcio-status.log)"
  summary
  exit 1
fi

# control_step STEP: the client's run against a server without details must
# pass unary_status and fail unary_error_info (exit status 1).
control_step() {
  local step=$1 f
  f=$(step_file "$step")
  if [[ $CLIENT_RC -eq 1 ]] &&
     grep -q '^PASS unary_status$' "$f.out" &&
     grep -q '^FAIL unary_error_info: ' "$f.out"; then
    pass "$step no_details_fail_the_detail_checks"
  elif [[ $CLIENT_RC -eq 0 || $CLIENT_RC -eq 1 ]]; then
    fail "$step no_details_fail_the_detail_checks" \
      "want unary_status to pass and unary_error_info to fail (exit status 1); got exit status $CLIENT_RC: $(grep -E '^(PASS|FAIL) ' "$f.out" | head -c 400 | tr '\n' ' ')"
  fi
}

# ----- the steps ----------------------------------------------------------------

# (a) grpcio's reader against our server.
if start_server error_details_server log "$OUR_SERVER" --port 0; then
  OURS_PID=$SERVER_PID
  run_client "grpcio->ours" "$VPY" "$PEERS/error_details_client.py" "127.0.0.1:$SERVER_PORT"
  collect_checks "grpcio->ours"
  server_alive error_details_server "$OURS_PID"
fi

# (b) our reader against grpcio's server.
if start_server error_details_server_py out "$VPY" "$PEERS/error_details_server.py" --port 0; then
  PY_PID=$SERVER_PID
  PY_PORT=$SERVER_PORT
  run_client "ours->grpcio" "$OUR_CLIENT" --server_port "$PY_PORT"
  collect_checks "ours->grpcio"
  if [[ "${PY_SELF_CHECK:-0}" == 1 ]]; then
    run_client "grpcio->grpcio" "$VPY" "$PEERS/error_details_client.py" "127.0.0.1:$PY_PORT"
    collect_checks "grpcio->grpcio"
  fi
  server_alive error_details_server_py "$PY_PID"
fi

# (c) controls: the same errors without details.
if start_server control_server log "$OUR_SERVER" --port 0 --send_details false; then
  CONTROL_PID=$SERVER_PID
  run_client "control_grpcio->ours" "$VPY" "$PEERS/error_details_client.py" \
    "127.0.0.1:$SERVER_PORT"
  control_step "control_grpcio->ours"
  server_alive control_server "$CONTROL_PID"
fi
if start_server control_server_py out "$VPY" "$PEERS/error_details_server.py" --port 0 \
     --no-details; then
  CONTROL_PY_PID=$SERVER_PID
  run_client "control_ours->grpcio" "$OUR_CLIENT" --server_port "$SERVER_PORT"
  control_step "control_ours->grpcio"
  server_alive control_server_py "$CONTROL_PY_PID"
fi

cleanup
summary
[[ $FAILED -eq 0 ]] || exit 1
exit 0
