#!/usr/bin/env bash
# Cross-implementation check of binary logging (gRFC A16): grpcio's interop
# client (Python, gRPC C core) runs the interop cases against ferrogrpc's
# interop_server with GRPC_BINARY_LOG_FILTER set; the server is stopped with
# SIGTERM (it flushes the log on a graceful stop), then
# binarylog/check_binarylog.py decodes the file with the official
# binarylog.proto compiled by grpcio-tools and checks the entries (types,
# sequence ids, header first and trailer or cancel last, peer, truncation,
# the excluded method absent).
#
#   interop/run-binarylog.sh OUR_INTEROP_SERVER VENV_DIR
#
# VENV_DIR is the grpcio venv of run-cross.sh (made by
# peers/python/setup_venv.sh unless SKIP_VENV_SETUP=1).
#
# Output: one line per check, "PASS check" or "FAIL check: why", then
# "binarylog interop: N passed, M failed". Exit status 1 if M > 0.
#
# Env:
#   SKIP_VENV_SETUP=1       do not run peers/python/setup_venv.sh VENV_DIR
#   LOG_DIR=DIR             where logs go (default: a new temp dir, kept)
#   STEP_TIMEOUT=S          hard limit on the client run (default 60)
#   SERVER_START_TIMEOUT=S  how long the server may take to accept (default 30)
set -euo pipefail

[[ $# -eq 2 ]] || { echo "usage: $0 OUR_INTEROP_SERVER VENV_DIR" >&2; exit 2; }
OUR_SERVER=$1
VENV_DIR=$2

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PEERS="$HERE/peers/python"
PROTO_ROOT=$(cd "$HERE/../ferrogrpc/proto" && pwd)
STEP_TIMEOUT=${STEP_TIMEOUT:-60}
SERVER_START_TIMEOUT=${SERVER_START_TIMEOUT:-30}
LOG_DIR=${LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/run-binarylog.XXXXXX")}
mkdir -p "$LOG_DIR"
[[ -x "$OUR_SERVER" ]] || { echo "run-binarylog: not an executable: $OUR_SERVER" >&2; exit 2; }

# Everything but EmptyCall, whose absence shows the exclusion works;
# messages cut at 1 KiB so large_unary shows truncation.
EXCLUDED=/grpc.testing.TestService/EmptyCall
FILTER='*{h:4096;m:1024},-grpc.testing.TestService/EmptyCall'
# Quick cases covering the four kinds of call, metadata, errors and
# cancellation (the soaks add time, not coverage).
CASES=large_unary,client_streaming,server_streaming,ping_pong,empty_stream,cancel_after_begin,cancel_after_first_response,custom_metadata,status_code_and_message,special_status_message,empty_unary

log() { echo "run-binarylog: $*" >&2; }
PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "PASS $1"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL $1: $2"; }
summary() {
  echo "binarylog interop: $PASSED passed, $FAILED failed (logs: $LOG_DIR)" >&2
  echo "binarylog interop: $PASSED passed, $FAILED failed"
}

if [[ "${SKIP_VENV_SETUP:-0}" != 1 ]]; then
  if ! timeout -k 10 900 "$PEERS/setup_venv.sh" "$VENV_DIR"; then
    fail setup "venv setup in $VENV_DIR failed"
    summary
    exit 1
  fi
fi
VPY="$VENV_DIR/bin/python"

SERVER_PID=
cleanup() {
  if [[ -n "$SERVER_PID" ]]; then
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

PORT=$("$VPY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BINLOG="$LOG_DIR/server.binlog"
SERVER_LOG="$LOG_DIR/interop_server.log"
log "server: GRPC_BINARY_LOG_FILTER='$FILTER' $OUR_SERVER --port $PORT"
GRPC_BINARY_LOG_FILTER="$FILTER" FERROGRPC_BINARY_LOG_FILE="$BINLOG" \
  "$OUR_SERVER" --port "$PORT" >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!

up=0
deadline=$((SECONDS + SERVER_START_TIMEOUT))
while ((SECONDS < deadline)); do
  kill -0 "$SERVER_PID" 2>/dev/null || break
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    up=1
    break
  fi
  sleep 0.1
done
if ((!up)); then
  fail server "interop_server did not accept on port $PORT (log: $SERVER_LOG)"
  tail -n 20 "$SERVER_LOG" >&2 || true
  summary
  exit 1
fi
grep -q "binary log" "$SERVER_LOG" && pass "server announced its log" ||
  fail "server announced its log" "no 'binary log' line in $SERVER_LOG"

rc=0
timeout -k 10 "$STEP_TIMEOUT" "$VPY" "$PEERS/interop_client.py" \
  --server_host 127.0.0.1 --server_port "$PORT" --test_case "$CASES" \
  >"$LOG_DIR/client.out" 2>"$LOG_DIR/client.log" || rc=$?
if [[ $rc -eq 0 ]]; then
  pass "grpcio client ran $CASES"
else
  fail "grpcio client" "exit status $rc (log: $LOG_DIR/client.log)"
  tail -n 20 "$LOG_DIR/client.log" >&2 || true
fi

# A graceful stop flushes the log.
kill -TERM "$SERVER_PID"
stopped=0
for _ in $(seq 100); do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    stopped=1
    break
  fi
  sleep 0.1
done
if ((stopped)); then
  wait "$SERVER_PID" && pass "server stopped on SIGTERM" ||
    fail "server stopped on SIGTERM" "exit status $? (log: $SERVER_LOG)"
  SERVER_PID=
else
  fail "server stopped on SIGTERM" "still running after 10 s"
fi

crc=0
"$VPY" "$HERE/binarylog/check_binarylog.py" "$PROTO_ROOT" "$BINLOG" "$EXCLUDED" \
  >"$LOG_DIR/check.out" 2>"$LOG_DIR/check.log" || crc=$?
cat "$LOG_DIR/check.log" >&2
n=0
while IFS= read -r line; do
  if [[ "$line" =~ ^PASS\ (.+)$ ]]; then
    pass "${BASH_REMATCH[1]}"
    n=$((n + 1))
  elif [[ "$line" =~ ^FAIL\ ([^:]+):\ ?(.*)$ ]]; then
    fail "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
    n=$((n + 1))
  fi
done <"$LOG_DIR/check.out"
((n > 0)) || fail check "no check results, exit status $crc (log: $LOG_DIR/check.log)"

summary
[[ $FAILED -eq 0 ]] || exit 1
