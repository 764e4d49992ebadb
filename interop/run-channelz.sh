#!/usr/bin/env bash
# Cross-implementation check of channelz (gRFC A14): grpcio-channelz's client
# (Python, gRPC C core) reads ferrogrpc's interop_server after a Python
# client made a known set of calls, and checks the counts exactly: the
# server's calls started / succeeded / failed, its sockets' streams and
# messages, the sockets' addresses, NOT_FOUND, and paging with
# start_*_id / max_results. channelz/check_channelz.py lists the checks.
#
#   interop/run-channelz.sh OUR_INTEROP_SERVER VENV_DIR
#
# OUR_INTEROP_SERVER is ferrogrpc's interop_server (which serves the admin
# services, channelz among them); it is started here, fresh, since the
# checks count every call it ever served. VENV_DIR is the grpcio venv of
# run-cross.sh (made by peers/python/setup_venv.sh unless SKIP_VENV_SETUP=1).
#
# Output: one line per check, "PASS check" or "FAIL check: why", then
# exactly "channelz interop: N passed, M failed". Exit status 1 if M > 0 (a
# crashed or timed-out client, a server that did not come up or died, or a
# client that reported nothing each count as a failure), 2 on bad usage.
#
# Env:
#   SKIP_VENV_SETUP=1       do not run peers/python/setup_venv.sh VENV_DIR
#   LOG_DIR=DIR             where logs go (default: a new temp dir, kept)
#   STEP_TIMEOUT=S          hard limit on the client run (default 60)
#   SERVER_START_TIMEOUT=S  how long the server may take to accept (default 30)
#   VENV_SETUP_TIMEOUT=S    hard limit on the venv setup (default 900)
set -euo pipefail

usage() {
  echo "usage: $0 OUR_INTEROP_SERVER VENV_DIR" >&2
  exit 2
}
[[ $# -eq 2 ]] || usage

OUR_SERVER=$1
VENV_DIR=$2

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PEERS="$HERE/peers/python"
STEP_TIMEOUT=${STEP_TIMEOUT:-60}
SERVER_START_TIMEOUT=${SERVER_START_TIMEOUT:-30}
VENV_SETUP_TIMEOUT=${VENV_SETUP_TIMEOUT:-900}
LOG_DIR=${LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/run-channelz.XXXXXX")}
mkdir -p "$LOG_DIR"

[[ -x "$OUR_SERVER" ]] || { echo "run-channelz: not an executable: $OUR_SERVER" >&2; exit 2; }

log() { echo "run-channelz: $*" >&2; }

PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "PASS $1"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL $1: $2"; }
summary() {
  echo "channelz interop: $PASSED passed, $FAILED failed (logs: $LOG_DIR)" >&2
  echo "channelz interop: $PASSED passed, $FAILED failed"
}

# ----- grpcio venv ------------------------------------------------------------
if [[ "${SKIP_VENV_SETUP:-0}" != 1 ]]; then
  if ! timeout -k 10 "$VENV_SETUP_TIMEOUT" "$PEERS/setup_venv.sh" "$VENV_DIR"; then
    log "venv setup failed"
    fail setup "venv setup in $VENV_DIR failed"
    summary
    exit 1
  fi
fi
VPY="$VENV_DIR/bin/python"

# ----- the server -----------------------------------------------------------------
SERVER_PID=
cleanup() {
  local i
  if [[ -n "$SERVER_PID" ]]; then
    kill "$SERVER_PID" 2>/dev/null || true
    for i in $(seq 50); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

# An unused port, from the kernel; tiny race until the server binds it.
PORT=$("$VPY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
SERVER_LOG="$LOG_DIR/interop_server.log"
log "server: $OUR_SERVER --port $PORT"
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

# ----- the client -----------------------------------------------------------------
OUT="$LOG_DIR/check_channelz.out"
ERR="$LOG_DIR/check_channelz.log"
log "client: check_channelz.py $PORT"
rc=0
timeout -k 10 "$STEP_TIMEOUT" "$VPY" "$HERE/channelz/check_channelz.py" \
  "$PORT" >"$OUT" 2>"$ERR" || rc=$?
case $rc in
  0 | 1) ;;
  124 | 137) fail client "timed out after ${STEP_TIMEOUT}s (log: $ERR)" ;;
  *) fail client "crashed, exit status $rc (log: $ERR)" ;;
esac
if [[ $rc -ne 0 && $rc -ne 1 ]]; then
  tail -n 20 "$ERR" >&2 || true
fi

n=0
while IFS= read -r line; do
  if [[ "$line" =~ ^PASS\ (.+)$ ]]; then
    pass "${BASH_REMATCH[1]}"
    n=$((n + 1))
  elif [[ "$line" =~ ^FAIL\ ([^:]+):\ ?(.*)$ ]]; then
    fail "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
    n=$((n + 1))
  fi
done <"$OUT"
((n > 0)) || fail client "no check results (log: $ERR)"
if [[ $rc -eq 1 ]] && ! grep -q '^FAIL ' "$OUT"; then
  fail client "exited 1 without a failed check (log: $ERR)"
fi
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  fail server "interop_server exited during the run (log: $SERVER_LOG)"
  tail -n 20 "$SERVER_LOG" >&2 || true
fi

cleanup
summary
[[ $FAILED -eq 0 ]] || exit 1
exit 0
