# Shared by the interop check scripts (run-retry.sh, run-health.sh,
# run-channelz.sh, run-cli.sh, run-error-details.sh): the PASS/FAIL counters,
# starting and stopping servers, running clients whose stdout is
# "PASS name" / "FAIL name: why" / "INFO ..." lines, and venv extras.
#
# The sourcing script sets, before sourcing: LOG_DIR, SERVER_MAX_SECONDS,
# SERVER_START_TIMEOUT, STEP_TIMEOUT, and defines log().

PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "PASS $1"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL $1: $2"; }

# ----- servers ------------------------------------------------------------------
SERVER_PIDS=()
cleanup() {
  local pid i
  for pid in "${SERVER_PIDS[@]+"${SERVER_PIDS[@]}"}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${SERVER_PIDS[@]+"${SERVER_PIDS[@]}"}"; do
    for i in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  SERVER_PIDS=()
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

# start_server NAME WHERE CMD...: starts a server and waits until it says
# its port, in a line "...listening on HOST:PORT..." of its stdout (WHERE =
# out: the grpcio peers print "listening on 127.0.0.1:PORT") or of its stderr
# (WHERE = log: interop_server logs "interop_server: listening on
# [::]:PORT (plaintext)"). Sets SERVER_PID and SERVER_PORT, or returns 1
# (and records a failure) if it does not come up.
start_server() {
  local name=$1 where=$2
  shift 2
  local out="$LOG_DIR/$name.out" err="$LOG_DIR/$name.log" watched line
  [[ "$where" == out ]] && watched=$out || watched=$err
  log "server $name: $*"
  timeout -k 5 "$SERVER_MAX_SECONDS" "$@" >"$out" 2>"$err" &
  SERVER_PID=$!
  SERVER_PIDS+=("$SERVER_PID")
  SERVER_PORT=
  local deadline=$((SECONDS + SERVER_START_TIMEOUT))
  while ((SECONDS < deadline)); do
    line=$(grep -m1 -oE 'listening on [^ ]*:[0-9]+' "$watched" || true)
    if [[ -n "$line" ]]; then
      SERVER_PORT=${line##*:}
      return 0
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      fail "$name" "server exited before saying its port (log: $err)"
      tail -n 20 "$err" >&2 || true
      return 1
    fi
    sleep 0.1
  done
  fail "$name" "server did not say its port within ${SERVER_START_TIMEOUT}s (log: $err)"
  tail -n 20 "$err" >&2 || true
  return 1
}

server_alive() {  # server_alive NAME PID
  if ! kill -0 "$2" 2>/dev/null; then
    fail "$1" "server exited during the run (log: $LOG_DIR/$1.log)"
    tail -n 20 "$LOG_DIR/$1.log" >&2 || true
  fi
}

# ----- clients ------------------------------------------------------------------

# The log file prefix of a step: "ours->grpcio" -> $LOG_DIR/ours_to_grpcio.
step_file() { echo "$LOG_DIR/${1//->/_to_}"; }

# run_client STEP CMD...: runs a client under the step timeout; its stdout
# goes to $(step_file STEP).out, its stderr to .log. Sets CLIENT_RC; a crash
# or timeout is recorded as a failure.
run_client() {
  local step=$1 f
  shift
  f=$(step_file "$step")
  log "[$step] $*"
  CLIENT_RC=0
  timeout -k 10 "$STEP_TIMEOUT" "$@" >"$f.out" 2>"$f.log" || CLIENT_RC=$?
  case $CLIENT_RC in
    0 | 1) ;;
    124 | 137) fail "$step" "client timed out after ${STEP_TIMEOUT}s (log: $f.log)" ;;
    *) fail "$step" "client crashed, exit status $CLIENT_RC (log: $f.log)" ;;
  esac
  if [[ $CLIENT_RC -ne 0 && $CLIENT_RC -ne 1 ]]; then
    tail -n 20 "$f.log" >&2 || true
  fi
}

# collect_checks STEP: reads "PASS name" / "FAIL name: why" lines; "INFO ..."
# lines go to stderr.
collect_checks() {
  local step=$1 line n=0 f
  f=$(step_file "$step")
  while IFS= read -r line; do
    if [[ "$line" =~ ^PASS\ ([A-Za-z0-9_]+)$ ]]; then
      pass "$step ${BASH_REMATCH[1]}"
      n=$((n + 1))
    elif [[ "$line" =~ ^FAIL\ ([A-Za-z0-9_]+):\ ?(.*)$ ]]; then
      fail "$step ${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
      n=$((n + 1))
    elif [[ "$line" == INFO\ * ]]; then
      log "[$step] ${line#INFO }"
    fi
  done <"$f.out"
  ((n > 0)) || fail "$step" "no check results (log: $f.log)"
  if [[ $CLIENT_RC -eq 1 && $n -gt 0 ]] && ! grep -q '^FAIL ' "$f.out"; then
    fail "$step" "client exited 1 without a failed check (log: $f.log)"
  fi
}

# ----- venv extras -----------------------------------------------------------------

# install_grpcio_status: grpcio-status of the venv's grpcio version (the two
# are released together) into the venv of $VPY ($VENV_DIR), for the scripts
# whose peers send or read rich error details; skipped when that version is
# already there. Needs VPY, VENV_DIR and VENV_SETUP_TIMEOUT.
install_grpcio_status() {
  local version have
  version=$("$VPY" -c 'import grpc; print(grpc.__version__)') || return 1
  have=$("$VPY" -c 'from importlib.metadata import version; print(version("grpcio-status"))' \
    2>/dev/null || true)
  if [[ "$have" == "$version" ]] &&
     "$VPY" -c 'import grpc_status.rpc_status, google.rpc.error_details_pb2' >/dev/null 2>&1; then
    return 0
  fi
  log "installing grpcio-status==$version into $VENV_DIR"
  timeout -k 10 "$VENV_SETUP_TIMEOUT" "$VPY" -m pip install --quiet \
    --disable-pip-version-check "grpcio-status==$version"
}
