#!/usr/bin/env bash
# Cross-implementation checks of gRFC A6 retries: ferrogrpc <-> grpcio.
#
#   interop/run-retry.sh RETRY_SERVER_BIN INTEROP_CLIENT_BIN VENV_DIR [RETRY_CLIENT_BIN]
#
# RETRY_SERVER_BIN is ferrogrpc's retry_server, INTEROP_CLIENT_BIN its
# interop_client; RETRY_CLIENT_BIN (ferrogrpc's retry_client) defaults to the
# retry_client next to INTEROP_CLIENT_BIN. VENV_DIR is the grpcio venv of
# run-cross.sh (made by peers/python/setup_venv.sh unless SKIP_VENV_SETUP=1).
#
# The servers fail the first x-retry-fail attempts of each call with
# UNAVAILABLE (optionally with grpc-retry-pushback-ms) and report the
# grpc-previous-rpc-attempts of the attempt that got through in the response
# header x-attempts-seen; the clients use a retryPolicy of maxAttempts 4,
# backoff 0.05 s x2 up to 0.2 s, UNAVAILABLE retryable. Steps:
#
#   grpcio->ours     retry/retry_client.py      -> RETRY_SERVER_BIN
#   ours->grpcio     RETRY_CLIENT_BIN           -> retry/flaky_server.py
#   interop_client   INTEROP_CLIENT_BIN --service_config_json (the policy)
#                    --additional_metadata x-retry-fail:2, a few interop
#                    cases           -> retry/flaky_server.py; a control
#                    run without the config (empty_unary must fail), and a
#                    check that invalid service config JSON is refused
#   ours->ours       RETRY_CLIENT_BIN           -> RETRY_SERVER_BIN
#   grpcio->grpcio   only with PY_SELF_CHECK=1 (checks the peers themselves)
#
# Output: one line per check, "PASS step check" or "FAIL step check: why",
# then exactly "retry interop: N passed, M failed". Exit status 1 if M > 0
# (a crashed or timed-out client, a server that did not come up or died, or
# a client that reported nothing each count as a failure), 2 on bad usage.
#
# Env:
#   SKIP_VENV_SETUP=1     do not run peers/python/setup_venv.sh VENV_DIR
#   PY_SELF_CHECK=1       also run grpcio->grpcio
#   LOG_DIR=DIR           where logs go (default: a new temp dir, kept)
#   STEP_TIMEOUT=S        hard limit per client run (default 120)
#   SERVER_START_TIMEOUT=S  how long a server may take to print its port
#                         (default 30)
#   SERVER_MAX_SECONDS=S  hard limit on a server's life (default 1800)
#   VENV_SETUP_TIMEOUT=S  hard limit on the venv setup (default 900)
set -euo pipefail

usage() {
  echo "usage: $0 RETRY_SERVER_BIN INTEROP_CLIENT_BIN VENV_DIR [RETRY_CLIENT_BIN]" >&2
  exit 2
}
[[ $# -ge 3 && $# -le 4 ]] || usage

OUR_SERVER=$1
OUR_INTEROP_CLIENT=$2
VENV_DIR=$3
OUR_RETRY_CLIENT=${4:-$(dirname "$OUR_INTEROP_CLIENT")/retry_client}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PEERS="$HERE/peers/python"
RETRY_PEERS="$HERE/retry"
STEP_TIMEOUT=${STEP_TIMEOUT:-120}
SERVER_START_TIMEOUT=${SERVER_START_TIMEOUT:-30}
SERVER_MAX_SECONDS=${SERVER_MAX_SECONDS:-1800}
VENV_SETUP_TIMEOUT=${VENV_SETUP_TIMEOUT:-900}
LOG_DIR=${LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/run-retry.XXXXXX")}
mkdir -p "$LOG_DIR"

for b in "$OUR_SERVER" "$OUR_INTEROP_CLIENT" "$OUR_RETRY_CLIENT"; do
  [[ -x "$b" ]] || { echo "run-retry: not an executable: $b" >&2; exit 2; }
done

# The retry policy of the checks, as in retry/retry_client.py and
# src/bin/retry_client.rs.
SERVICE_CONFIG='{"methodConfig":[{"name":[{"service":"grpc.testing.TestService"}],"retryPolicy":{"maxAttempts":4,"initialBackoff":"0.05s","maxBackoff":"0.2s","backoffMultiplier":2,"retryableStatusCodes":["UNAVAILABLE"]}}]}'
# interop_client cases run with x-retry-fail:2 on every RPC: each passes only
# if its calls were retried twice. Not large_unary: its 271828-byte request is
# over the 256 KiB a call buffers for retries, so gRPC (C core too) commits it
# at once and never retries it.
INTEROP_CASES=empty_unary,client_streaming,server_streaming,ping_pong,empty_stream

log() { echo "run-retry: $*" >&2; }

# shellcheck source=lib/steps.sh
source "$HERE/lib/steps.sh"

# ----- grpcio venv ------------------------------------------------------------
if [[ "${SKIP_VENV_SETUP:-0}" != 1 ]]; then
  if ! timeout -k 10 "$VENV_SETUP_TIMEOUT" "$PEERS/setup_venv.sh" "$VENV_DIR"; then
    log "venv setup failed"
    fail setup "venv setup in $VENV_DIR failed"
    echo "retry interop: $PASSED passed, $FAILED failed"
    exit 1
  fi
fi
VPY="$VENV_DIR/bin/python"
export INTEROP_GEN_DIR="$VENV_DIR/gen"


# collect_cases STEP: reads interop_client's "CASE PASS|FAIL|SKIP ..." lines.
collect_cases() {
  local step=$1 line n=0 f
  f=$(step_file "$step")
  while IFS= read -r line; do
    if [[ "$line" =~ ^([A-Za-z0-9_]+)\ PASS(\ .*)?$ ]]; then
      pass "$step ${BASH_REMATCH[1]}"
      n=$((n + 1))
    elif [[ "$line" =~ ^([A-Za-z0-9_]+)\ FAIL\ ?(.*)$ ]]; then
      fail "$step ${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
      n=$((n + 1))
    elif [[ "$line" =~ ^([A-Za-z0-9_]+)\ SKIP\ ?(.*)$ ]]; then
      fail "$step ${BASH_REMATCH[1]}" "skipped (a skip is not a pass here): ${BASH_REMATCH[2]}"
      n=$((n + 1))
    fi
  done <"$f.out"
  ((n > 0)) || fail "$step" "no case results (log: $f.log)"
}

# ----- the steps ----------------------------------------------------------------

if start_server retry_server out "$OUR_SERVER" --port 0; then
  OURS_PID=$SERVER_PID
  OURS_PORT=$SERVER_PORT

  run_client "grpcio->ours" "$VPY" "$RETRY_PEERS/retry_client.py" "127.0.0.1:$OURS_PORT"
  collect_checks "grpcio->ours"

  run_client "ours->ours" "$OUR_RETRY_CLIENT" --server_host 127.0.0.1 \
    --server_port "$OURS_PORT" --pushback_checks true
  collect_checks "ours->ours"

  server_alive retry_server "$OURS_PID"
fi

if start_server flaky_server out "$VPY" "$RETRY_PEERS/flaky_server.py" --port 0; then
  PY_PID=$SERVER_PID
  PY_PORT=$SERVER_PORT

  run_client "ours->grpcio" "$OUR_RETRY_CLIENT" --server_host 127.0.0.1 \
    --server_port "$PY_PORT" --pushback_checks true
  collect_checks "ours->grpcio"

  run_client "interop_client->grpcio" "$OUR_INTEROP_CLIENT" \
    --server_host 127.0.0.1 --server_port "$PY_PORT" \
    --service_config_json "$SERVICE_CONFIG" \
    --additional_metadata "x-retry-fail:2" \
    --test_case "$INTEROP_CASES"
  collect_cases "interop_client->grpcio"

  # Control: without the service config the same metadata fails the call,
  # so the passes above are the flag's doing.
  step="interop_client->grpcio"
  ctl_log="$LOG_DIR/interop_client-no-config"
  rc=0
  timeout -k 10 "$STEP_TIMEOUT" "$OUR_INTEROP_CLIENT" \
    --server_host 127.0.0.1 --server_port "$PY_PORT" \
    --additional_metadata "x-retry-fail:2" --test_case empty_unary \
    >"$ctl_log.out" 2>"$ctl_log.log" || rc=$?
  if [[ $rc -eq 1 ]] && grep -q '^empty_unary FAIL .*UNAVAILABLE "attempt 1 ' "$ctl_log.out"; then
    pass "$step no_service_config_no_retry"
  else
    fail "$step no_service_config_no_retry" \
      "want empty_unary to fail with UNAVAILABLE on attempt 1 and exit status 1; got exit status $rc: $(head -c 300 "$ctl_log.out" | tr '\n' ' ')"
  fi

  # Invalid JSON must be refused as a bad flag (exit 2) that names it.
  bad_log="$LOG_DIR/interop_client-bad-config.log"
  rc=0
  timeout -k 10 "$STEP_TIMEOUT" "$OUR_INTEROP_CLIENT" \
    --server_host 127.0.0.1 --server_port "$PY_PORT" \
    --service_config_json '{"methodConfig": [' --test_case empty_unary \
    >"$bad_log" 2>&1 || rc=$?
  if [[ $rc -eq 2 ]] && grep -q -- '--service_config_json' "$bad_log"; then
    pass "$step invalid_service_config_refused"
  else
    fail "$step invalid_service_config_refused" \
      "exit status $rc, want 2 and a message naming --service_config_json (log: $bad_log)"
  fi

  if [[ "${PY_SELF_CHECK:-0}" == 1 ]]; then
    run_client "grpcio->grpcio" "$VPY" "$RETRY_PEERS/retry_client.py" "127.0.0.1:$PY_PORT"
    collect_checks "grpcio->grpcio"
  fi

  server_alive flaky_server "$PY_PID"
fi

cleanup
echo "retry interop: $PASSED passed, $FAILED failed (logs: $LOG_DIR)" >&2
echo "retry interop: $PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]] || exit 1
exit 0
