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
#   SERVER_START_TIMEOUT=S  how long the server may take to say its port (default 30)
#   SERVER_MAX_SECONDS=S    hard limit on the server's life (default 600)
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

SERVER_MAX_SECONDS=${SERVER_MAX_SECONDS:-600}
# shellcheck source=lib/steps.sh
source "$HERE/lib/steps.sh"
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

# ----- the server, then grpcio's channelz client against it -----------------------
if start_server interop_server log "$OUR_SERVER" --port 0; then
  run_client "grpcio->ours" "$VPY" "$HERE/channelz/check_channelz.py" "$SERVER_PORT"
  collect_checks "grpcio->ours"
  server_alive interop_server "$SERVER_PID"
fi

cleanup
summary
[[ $FAILED -eq 0 ]] || exit 1
exit 0
