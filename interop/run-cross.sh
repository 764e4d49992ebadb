#!/usr/bin/env bash
# Cross-implementation interop run: ferrogrpc <-> grpcio (gRPC C core).
#
#   interop/run-cross.sh OUR_SERVER_BIN OUR_CLIENT_BIN VENV_DIR [TEST_CASES]
#
# Directions (client->server), each on its own loopback port:
#   ours->ours   OUR_CLIENT_BIN  -> OUR_SERVER_BIN
#   ours->py     OUR_CLIENT_BIN  -> peers/python/interop_server.py
#   py->ours     peers/python/interop_client.py -> OUR_SERVER_BIN
#   py->py       python -> python; only with PY_SELF_CHECK=1 or ONLY_PY=1
#
# TEST_CASES: "all" (default) or a comma separated list of case names; it is
# passed to every client as --test_case, and each listed case is expected in
# every direction.
#
# Every client prints one line per case on stdout: "CASE PASS|FAIL|SKIP ..."
# (only the first two fields are read). The script prints a matrix (row per
# case, column per direction; cells PASS / FAIL / SKIP / XFAIL / — for
# missing) and exits non-zero if any cell is FAIL, an expected case is
# missing, a client crashed (exit status other than 0/1, or timed out), or a
# server did not come up.
#
# XFAIL: client_compressed_unary / client_compressed_streaming against the
# Python server. grpcio hides request compression from a servicer, so that
# server cannot reject the uncompressed feature probe; a FAIL there is shown
# as XFAIL and not counted. (The Python client, run against the Python server,
# is told so and reports SKIP instead.)
#
# Env:
#   ONLY_PY=1           run py->py only; OUR_*_BIN may be any placeholder
#   PY_SELF_CHECK=1     also run py->py
#   USE_TLS=1           TLS everywhere: servers get --use_tls true
#                       --tls_cert_file --tls_key_file, clients get --use_tls
#                       true --use_test_ca true --ca_file
#                       --server_host_override (files: TLS_CERT_FILE,
#                       TLS_KEY_FILE, TLS_CA_FILE, default interop/certs/
#                       server1.pem, server1.key, ca.pem; override host:
#                       TLS_SERVER_HOST_OVERRIDE, default foo.test.google.fr)
#   SKIP_VENV_SETUP=1   do not run peers/python/setup_venv.sh VENV_DIR first
#   LOG_DIR=DIR         where logs go (default: a new temp dir, kept)
#   CLIENT_TIMEOUT=S    hard limit per client run (default 600)
#   SERVER_START_TIMEOUT=S  how long to wait for a port to accept (default 30)
#   EXTRA_CLIENT_ARGS / EXTRA_SERVER_ARGS   appended to every client / server
set -uo pipefail

usage() {
  echo "usage: $0 OUR_SERVER_BIN OUR_CLIENT_BIN VENV_DIR [TEST_CASES]" >&2
  exit 2
}
[[ $# -ge 3 && $# -le 4 ]] || usage

OUR_SERVER=$1
OUR_CLIENT=$2
VENV_DIR=$3
TEST_CASES=${4:-all}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PEERS="$HERE/peers/python"
CLIENT_TIMEOUT=${CLIENT_TIMEOUT:-600}
SERVER_START_TIMEOUT=${SERVER_START_TIMEOUT:-30}
LOG_DIR=${LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/run-cross.XXXXXX")}
mkdir -p "$LOG_DIR"

# Same order as interop_client.py --test_case all.
ALL_CASES=(
  empty_unary large_unary client_compressed_unary server_compressed_unary
  client_streaming client_compressed_streaming server_streaming
  server_compressed_streaming ping_pong empty_stream cancel_after_begin
  cancel_after_first_response timeout_on_sleeping_server custom_metadata
  status_code_and_message special_status_message unimplemented_method
  unimplemented_service rpc_soak channel_soak concurrent_large_unary
)
# Cases whose FAIL against the Python server is expected (see header).
PY_SERVER_XFAIL=" client_compressed_unary client_compressed_streaming "

if [[ "$TEST_CASES" == all ]]; then
  EXPECTED=("${ALL_CASES[@]}")
else
  IFS=',' read -r -a EXPECTED <<< "$TEST_CASES"
fi

DIRECTIONS=()
if [[ "${ONLY_PY:-0}" == 1 ]]; then
  DIRECTIONS=(py-\>py)
else
  for b in "$OUR_SERVER" "$OUR_CLIENT"; do
    [[ -x "$b" ]] || { echo "run-cross: not an executable: $b" >&2; exit 2; }
  done
  DIRECTIONS=(ours-\>ours ours-\>py py-\>ours)
  [[ "${PY_SELF_CHECK:-0}" == 1 ]] && DIRECTIONS+=(py-\>py)
fi

log() { echo "run-cross: $*" >&2; }

# ----- Python peer ----------------------------------------------------------
if [[ "${SKIP_VENV_SETUP:-0}" != 1 ]]; then
  "$PEERS/setup_venv.sh" "$VENV_DIR" || { log "venv setup failed"; exit 1; }
fi
VPY="$VENV_DIR/bin/python"
export INTEROP_GEN_DIR="$VENV_DIR/gen"

# ----- TLS flags ------------------------------------------------------------
SERVER_TLS=()
CLIENT_TLS=()
if [[ "${USE_TLS:-0}" == 1 ]]; then
  SERVER_TLS=(--use_tls true
    --tls_cert_file "${TLS_CERT_FILE:-$HERE/certs/server1.pem}"
    --tls_key_file "${TLS_KEY_FILE:-$HERE/certs/server1.key}")
  CLIENT_TLS=(--use_tls true --use_test_ca true
    --ca_file "${TLS_CA_FILE:-$HERE/certs/ca.pem}"
    --server_host_override "${TLS_SERVER_HOST_OVERRIDE:-foo.test.google.fr}")
fi
read -r -a EXTRA_CLIENT <<< "${EXTRA_CLIENT_ARGS:-}"
read -r -a EXTRA_SERVER <<< "${EXTRA_SERVER_ARGS:-}"

# ----- process handling -----------------------------------------------------
SERVER_PIDS=()
cleanup() {
  local pid
  for pid in "${SERVER_PIDS[@]}"; do
    kill "$pid" 2>/dev/null
  done
  for pid in "${SERVER_PIDS[@]}"; do
    wait "$pid" 2>/dev/null
  done
  SERVER_PIDS=()
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

free_port() {
  # Ask the kernel for an unused port; tiny race until the server binds it.
  "$VPY" - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

# wait_port PORT PID: wait until PORT accepts or PID dies / time runs out.
wait_port() {
  local port=$1 pid=$2 deadline=$((SECONDS + SERVER_START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      return 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

stop_server() {
  local pid=$1 i
  kill "$pid" 2>/dev/null
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  local keep=()
  for i in "${SERVER_PIDS[@]}"; do [[ "$i" == "$pid" ]] || keep+=("$i"); done
  SERVER_PIDS=("${keep[@]+"${keep[@]}"}")
}

# ----- results --------------------------------------------------------------
declare -A CELL REASON
EXTRA_ROWS=()
PROBLEMS=()

record() {  # record DIR CASE STATUS REASON
  local key="$1|$2"
  [[ -n "${CELL[$key]+x}" ]] && return  # first line for a case wins
  CELL[$key]=$3
  REASON[$key]=$4
  local c known=0
  for c in "${EXPECTED[@]}" "${EXTRA_ROWS[@]+"${EXTRA_ROWS[@]}"}"; do
    [[ "$c" == "$2" ]] && { known=1; break; }
  done
  ((known)) || EXTRA_ROWS+=("$2")
}

run_direction() {
  local dir=$1 client_kind=${1%%->*} server_kind=${1##*->}
  local tag=${dir/->/_to_}
  local port pid rc
  port=$(free_port)
  local slog="$LOG_DIR/$tag.server.log" cout="$LOG_DIR/$tag.client.out"
  local cerr="$LOG_DIR/$tag.client.log"

  local server_cmd client_cmd
  if [[ "$server_kind" == py ]]; then
    server_cmd=("$VPY" "$PEERS/interop_server.py" --port "$port")
  else
    server_cmd=("$OUR_SERVER" --port "$port")
  fi
  server_cmd+=("${SERVER_TLS[@]+"${SERVER_TLS[@]}"}"
               "${EXTRA_SERVER[@]+"${EXTRA_SERVER[@]}"}")
  if [[ "$client_kind" == py ]]; then
    client_cmd=("$VPY" "$PEERS/interop_client.py")
    if [[ "$server_kind" == py ]]; then
      client_cmd+=(--server_checks_compressed_requests false)
    fi
  else
    client_cmd=("$OUR_CLIENT")
  fi
  client_cmd+=(--server_host 127.0.0.1 --server_port "$port"
               --test_case "$TEST_CASES"
               "${CLIENT_TLS[@]+"${CLIENT_TLS[@]}"}"
               "${EXTRA_CLIENT[@]+"${EXTRA_CLIENT[@]}"}")

  log "[$dir] server: ${server_cmd[*]}"
  "${server_cmd[@]}" >"$slog" 2>&1 &
  pid=$!
  SERVER_PIDS+=("$pid")
  if ! wait_port "$port" "$pid"; then
    PROBLEMS+=("$dir: server did not accept on port $port (log: $slog)")
    tail -n 20 "$slog" >&2
    stop_server "$pid"
    return
  fi

  log "[$dir] client: ${client_cmd[*]}"
  local t0=$SECONDS
  timeout -k 10 "$CLIENT_TIMEOUT" "${client_cmd[@]}" >"$cout" 2>"$cerr"
  rc=$?
  log "[$dir] client exit $rc after $((SECONDS - t0)) s"
  if [[ $rc -ne 0 && $rc -ne 1 ]]; then
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
      PROBLEMS+=("$dir: client timed out after ${CLIENT_TIMEOUT}s (log: $cerr)")
    else
      PROBLEMS+=("$dir: client crashed, exit status $rc (log: $cerr)")
    fi
    tail -n 20 "$cerr" >&2
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    PROBLEMS+=("$dir: server exited during the run (log: $slog)")
    tail -n 20 "$slog" >&2
  fi
  stop_server "$pid"

  local name status rest
  while IFS= read -r line; do
    if [[ "$line" =~ ^([A-Za-z0-9_]+)\ (PASS|FAIL|SKIP)(\ (.*))?$ ]]; then
      name=${BASH_REMATCH[1]}
      status=${BASH_REMATCH[2]}
      rest=${BASH_REMATCH[4]}
      if [[ "$status" == FAIL && "$server_kind" == py &&
            "$PY_SERVER_XFAIL" == *" $name "* ]]; then
        status=XFAIL
      fi
      record "$dir" "$name" "$status" "$rest"
    fi
  done <"$cout"
}

for d in "${DIRECTIONS[@]}"; do
  run_direction "$d"
done

# ----- matrix ---------------------------------------------------------------
ROWS=("${EXPECTED[@]}" "${EXTRA_ROWS[@]+"${EXTRA_ROWS[@]}"}")
w=4
for r in "${ROWS[@]}"; do ((${#r} > w)) && w=${#r}; done
cw=11
pad() {  # pad TEXT WIDTH (the missing mark is one column wide)
  local t=$1 n=$2 len=${#1}
  [[ "$t" == "—" ]] && len=1
  printf '%s%*s' "$t" $((n - len)) ''
}

declare -A COUNT=([PASS]=0 [FAIL]=0 [SKIP]=0 [XFAIL]=0 [MISSING]=0)
echo
pad "case" "$w"
for d in "${DIRECTIONS[@]}"; do printf '  '; pad "$d" "$cw"; done
echo
for r in "${ROWS[@]}"; do
  pad "$r" "$w"
  for d in "${DIRECTIONS[@]}"; do
    key="$d|$r"
    cell=${CELL[$key]:-—}
    if [[ "$cell" == "—" ]]; then
      if [[ " ${EXPECTED[*]} " == *" $r "* ]]; then
        COUNT[MISSING]=$((COUNT[MISSING] + 1))
        PROBLEMS+=("$d: $r: no result line")
      fi
    else
      COUNT[$cell]=$((COUNT[$cell] + 1))
    fi
    printf '  '
    pad "$cell" "$cw"
  done
  echo
done
echo

for r in "${ROWS[@]}"; do
  for d in "${DIRECTIONS[@]}"; do
    key="$d|$r"
    case "${CELL[$key]:-}" in
      FAIL) PROBLEMS+=("$d: $r FAIL ${REASON[$key]}") ;;
      SKIP | XFAIL) echo "note: $d: $r ${CELL[$key]} ${REASON[$key]}" ;;
    esac
  done
done

echo "cross-interop summary: PASS=${COUNT[PASS]} FAIL=${COUNT[FAIL]}" \
  "SKIP=${COUNT[SKIP]} XFAIL=${COUNT[XFAIL]} MISSING=${COUNT[MISSING]}" \
  "(logs: $LOG_DIR)"
if ((${#PROBLEMS[@]})); then
  echo "cross-interop problems:"
  printf '  %s\n' "${PROBLEMS[@]}"
  exit 1
fi
echo "cross-interop: OK"
exit 0
