#!/usr/bin/env bash
# Cross-implementation check of the ferrogrpc command (ferrogrpc-cli) against
# a grpcio server with reflection and health, which ferrogrpc did not write.
#
#   interop/run-cli.sh OUR_FERROGRPC_BINARY VENV_DIR
#
# OUR_FERROGRPC_BINARY is the built command (target/release/ferrogrpc, from
# `cargo build --release -p ferrogrpc-cli`). VENV_DIR is the grpcio venv of
# run-cross.sh (made by peers/python/setup_venv.sh unless SKIP_VENV_SETUP=1);
# this script adds grpcio-status to it, of the venv's grpcio version, as
# run-error-details.sh does, whether or not SKIP_VENV_SETUP is set.
#
# cli/grpcio_server.py serves grpc.testing.TestService, grpcio-health-checking
# and grpcio-reflection (v1alpha only, so every command also goes through the
# fallback from v1). The command learns the schema by reflection in every
# step; the steps, each with its own checks:
#
#   list                    the services, exactly
#   list_methods            TestService's methods, exactly, in order
#   describe_message        grpc.testing.SimpleRequest: the same text as
#                           from the .proto files compiled locally (--proto),
#                           and field lines checked by hand
#   describe_service        grpc.testing.TestService, likewise
#   describe_all            no symbol: every service the server lists
#   call_empty / call_unary / call_server_streaming / call_bidi
#                           the JSON printed, exactly
#   call_client_streaming   two requests from stdin (-d @), the sum back
#   call_echo_status        a status the server echoes: exit 64+code, Code
#                           and Message on stderr, no Details
#   call_error_details      grpcio-status's rich error: exit 64+3, Code,
#                           Message (not ASCII) and the BadRequest detail
#                           decoded, with its @type
#   call_unimplemented      UNIMPLEMENTED: exit 64+12
#   health*                 "" and TestService SERVING (exit 0), a
#                           NOT_SERVING service (exit 4), an unknown one
#                           (exit 3)
#   bench / bench_errors    -n 50 -c 5 (and -n 20 -c 4 failing calls),
#                           --format json: the count, the status codes, and
#                           the calls the server's log says it handled, each
#                           exactly the count asked for
#   channelz                grpcio-channelz's view as a tree: the server
#                           with at least the bench's calls, its listen
#                           socket, a connection with streams and messages
#
# Output: one line per check, "PASS step check" or "FAIL step check: why",
# then exactly "cli interop: N passed, M failed". Exit status 1 if M > 0 (a
# command that timed out, a server that did not come up or died count as
# failures), 2 on bad usage.
#
# Env:
#   SKIP_VENV_SETUP=1       do not run peers/python/setup_venv.sh VENV_DIR
#   LOG_DIR=DIR             where logs go (default: a new temp dir, kept)
#   STEP_TIMEOUT=S          hard limit per command run (default 60)
#   SERVER_START_TIMEOUT=S  how long the server may take to say its port
#                           (default 30)
#   SERVER_MAX_SECONDS=S    hard limit on the server's life (default 1800)
#   VENV_SETUP_TIMEOUT=S    hard limit on the venv setup (default 900)
set -euo pipefail

usage() {
  echo "usage: $0 OUR_FERROGRPC_BINARY VENV_DIR" >&2
  exit 2
}
[[ $# -eq 2 ]] || usage

CLI=$1
VENV_DIR=$2

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PEERS="$HERE/peers/python"
PROTO_DIR="$HERE/proto"
STEP_TIMEOUT=${STEP_TIMEOUT:-60}
SERVER_START_TIMEOUT=${SERVER_START_TIMEOUT:-30}
SERVER_MAX_SECONDS=${SERVER_MAX_SECONDS:-1800}
VENV_SETUP_TIMEOUT=${VENV_SETUP_TIMEOUT:-900}
LOG_DIR=${LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/run-cli.XXXXXX")}
mkdir -p "$LOG_DIR"

[[ -x "$CLI" ]] || { echo "run-cli: not an executable: $CLI" >&2; exit 2; }
CLI=$(cd "$(dirname "$CLI")" && pwd)/$(basename "$CLI")

log() { echo "run-cli: $*" >&2; }

# shellcheck source=lib/steps.sh
source "$HERE/lib/steps.sh"

summary() {
  echo "cli interop: $PASSED passed, $FAILED failed (logs: $LOG_DIR)" >&2
  echo "cli interop: $PASSED passed, $FAILED failed"
}

# ----- grpcio venv, plus grpcio-status ------------------------------------------
if [[ "${SKIP_VENV_SETUP:-0}" != 1 ]]; then
  if ! timeout -k 10 "$VENV_SETUP_TIMEOUT" "$PEERS/setup_venv.sh" "$VENV_DIR"; then
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

# ----- the server ---------------------------------------------------------------
if ! start_server grpcio_server out "$VPY" "$HERE/cli/grpcio_server.py" --port 0; then
  summary
  exit 1
fi
PY_PID=$SERVER_PID
ADDR="127.0.0.1:$SERVER_PORT"
SERVER_LOG="$LOG_DIR/grpcio_server.log"

# The TestService calls the server has handled so far (one log line each,
# written before the call's first response).
handled() { grep -c '^grpcio_server: handled ' "$SERVER_LOG" || true; }

# ----- running the command and checking what it did ------------------------------

# run STEP [--stdin TEXT] ARGS...: runs the command under the step timeout,
# stdout to $LOG_DIR/STEP.out, stderr to STEP.err; sets RC. A timeout is a
# failure of the step.
run() {
  local step=$1 stdin=
  shift
  if [[ "${1:-}" == --stdin ]]; then
    stdin=$2
    shift 2
  fi
  log "[$step] ferrogrpc $*"
  RC=0
  timeout -k 5 "$STEP_TIMEOUT" "$CLI" "$@" >"$LOG_DIR/$step.out" 2>"$LOG_DIR/$step.err" \
    <<<"$stdin" || RC=$?
  if [[ $RC -eq 124 || $RC -eq 137 ]]; then
    fail "$step" "timed out after ${STEP_TIMEOUT}s (stderr: $LOG_DIR/$step.err)"
  fi
}

# A file's first lines, on one line, for a FAIL message.
show() { head -c 400 "$1" | tr '\n' '|'; }

# expect_rc STEP WANT: the last run's exit status.
expect_rc() {
  if [[ $RC -eq $2 ]]; then
    pass "$1 exit_status"
  else
    fail "$1 exit_status" "want $2, got $RC; stderr: $(show "$LOG_DIR/$1.err")"
  fi
}

# expect_stdout STEP WANT: the whole of stdout, exactly (trailing newline
# aside).
expect_stdout() {
  local got
  got=$(cat "$LOG_DIR/$1.out")
  if [[ "$got" == "$2" ]]; then
    pass "$1 stdout"
  else
    fail "$1 stdout" "want $(printf '%s' "$2" | tr '\n' '|'), got $(show "$LOG_DIR/$1.out")"
  fi
}

# expect_line STEP CHECK out|err LINE: that exact line is in stdout / stderr.
expect_line() {
  local f="$LOG_DIR/$1.$3"
  if grep -qxF -- "$4" "$f"; then
    pass "$1 $2"
  else
    fail "$1 $2" "no line '$4' in std$3: $(show "$f")"
  fi
}

# no_line STEP CHECK out|err REGEX: no line of stdout / stderr matches.
no_line() {
  local f="$LOG_DIR/$1.$3"
  if grep -qE -- "$4" "$f"; then
    fail "$1 $2" "a line matches '$4' in std$3: $(grep -E -- "$4" "$f" | head -c 300)"
  else
    pass "$1 $2"
  fi
}

# expect_same STEP CHECK OTHER_STEP: stdout equal to another run's.
expect_same() {
  if cmp -s "$LOG_DIR/$1.out" "$LOG_DIR/$3.out"; then
    pass "$1 $2"
  else
    fail "$1 $2" "differs from $3's: $(diff "$LOG_DIR/$3.out" "$LOG_DIR/$1.out" | head -c 400 | tr '\n' '|')"
  fi
}

# expect_json STEP CHECK FILE PYTHON_EXPR [SHOWN]: PYTHON_EXPR, of `v` (FILE
# parsed as JSON), is true; else SHOWN (default: v) is printed.
expect_json() {
  local why
  if why=$("$VPY" - "$3" "$4" "${5:-v}" 2>&1 <<'EOF'
import json, sys
path, expr, shown = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    with open(path, encoding="utf-8") as f:
        v = json.load(f)
except Exception as e:
    print("not JSON: %s" % e)
    sys.exit(1)
if not eval(expr, {"v": v}):
    try:
        got = eval(shown, {"v": v})
    except Exception:
        got = v
    print("want %s, got %s" % (expr, json.dumps(got, ensure_ascii=False)[:400]))
    sys.exit(1)
EOF
  ); then
    pass "$1 $2"
  else
    fail "$1 $2" "$why"
  fi
}

TS=grpc.testing.TestService
P=(--plaintext "$ADDR")

# ----- list ---------------------------------------------------------------------
want_services="grpc.health.v1.Health
grpc.reflection.v1alpha.ServerReflection
grpc.testing.TestService"
if "$VPY" -c 'import grpc_reflection.v1' 2>/dev/null; then
  want_services="grpc.health.v1.Health
grpc.reflection.v1.ServerReflection
grpc.reflection.v1alpha.ServerReflection
grpc.testing.TestService"
fi
run list list "${P[@]}"
expect_rc list 0
expect_stdout list "$want_services"

run list_methods list "${P[@]}" "$TS"
expect_rc list_methods 0
expect_stdout list_methods "$TS.EmptyCall
$TS.UnaryCall
$TS.CacheableUnaryCall
$TS.StreamingOutputCall
$TS.StreamingInputCall
$TS.FullDuplexCall
$TS.HalfDuplexCall
$TS.UnimplementedCall"

# ----- describe -----------------------------------------------------------------
# What grpcio serves by reflection must read as our .proto files do.
LOCAL=(--plaintext 127.0.0.1:1 --proto "$PROTO_DIR/grpc/testing/test.proto" --import-path "$PROTO_DIR")
run describe_message describe "${P[@]}" grpc.testing.SimpleRequest
expect_rc describe_message 0
expect_line describe_message is_a_message out "grpc.testing.SimpleRequest is a message:"
expect_line describe_message field_response_size out "  int32 response_size = 2;"
expect_line describe_message field_response_status out "  .grpc.testing.EchoStatus response_status = 7;"
run describe_message_local describe "${LOCAL[@]}" grpc.testing.SimpleRequest
expect_same describe_message same_as_proto_files describe_message_local

run describe_service describe "${P[@]}" "$TS"
expect_rc describe_service 0
expect_line describe_service is_a_service out "$TS is a service:"
expect_line describe_service client_streaming out \
  "  rpc StreamingInputCall ( stream .grpc.testing.StreamingInputCallRequest ) returns ( .grpc.testing.StreamingInputCallResponse );"
expect_line describe_service bidi out \
  "  rpc FullDuplexCall ( stream .grpc.testing.StreamingOutputCallRequest ) returns ( stream .grpc.testing.StreamingOutputCallResponse );"
run describe_service_local describe "${LOCAL[@]}" "$TS"
expect_same describe_service same_as_proto_files describe_service_local

run describe_all describe "${P[@]}"
expect_rc describe_all 0
while IFS= read -r service; do
  expect_line describe_all "has_$(echo "${service##*.}" | tr -c 'A-Za-z0-9_\n' _)" out \
    "$service is a service:"
done <<<"$want_services"

# ----- call ---------------------------------------------------------------------
run call_empty call "${P[@]}" "$TS/EmptyCall"
expect_rc call_empty 0
expect_stdout call_empty '{}'

run call_unary call "${P[@]}" "$TS/UnaryCall" -d '{"responseSize": 3}'
expect_rc call_unary 0
expect_stdout call_unary '{"payload":{"body":"AAAA"}}'

run call_server_streaming call "${P[@]}" "$TS/StreamingOutputCall" \
  -d '{"response_parameters": [{"size": 1}, {"size": 2}, {"size": 0}, {"size": 4}]}'
expect_rc call_server_streaming 0
expect_stdout call_server_streaming '{"payload":{"body":"AA=="}}
{"payload":{"body":"AAA="}}
{"payload":{}}
{"payload":{"body":"AAAAAA=="}}'

run call_client_streaming --stdin '{"payload": {"body": "AAAA"}}
{"payload": {"body": "AAAAAA=="}}
{"payload": {"body": "AAAAAAAA"}}' call "${P[@]}" "$TS/StreamingInputCall" -d @
expect_rc call_client_streaming 0
expect_stdout call_client_streaming '{"aggregatedPayloadSize":13}'

run call_bidi call "${P[@]}" "$TS/FullDuplexCall" \
  -d '{"responseParameters": [{"size": 1}]} {"responseParameters": [{"size": 2}, {"size": 3}]}'
expect_rc call_bidi 0
expect_stdout call_bidi '{"payload":{"body":"AA=="}}
{"payload":{"body":"AAA="}}
{"payload":{"body":"AAAA"}}'

# Echo Status: FAILED_PRECONDITION (9) and its message; no details.
run call_echo_status call "${P[@]}" "$TS/UnaryCall" \
  -d '{"responseStatus": {"code": 9, "message": "echoed by grpcio"}}'
expect_rc call_echo_status $((64 + 9))
expect_line call_echo_status code err "  Code: FAILED_PRECONDITION"
expect_line call_echo_status message err "  Message: echoed by grpcio"
no_line call_echo_status no_details err '^  Details:'
expect_stdout call_echo_status ''

# grpcio-status's rich error: INVALID_ARGUMENT (3) with a BadRequest.
run call_error_details call "${P[@]}" "$TS/UnaryCall" -d '{"responseSize": -1}'
expect_rc call_error_details $((64 + 3))
expect_line call_error_details code err "  Code: INVALID_ARGUMENT"
expect_line call_error_details message err "  Message: response_size must be ≥ 0"
expect_line call_error_details details_header err "  Details:"
grep -E '^  1\) ' "$LOG_DIR/call_error_details.err" | sed -E 's/^  1\) //' \
  >"$LOG_DIR/call_error_details.detail1" || true
expect_json call_error_details bad_request "$LOG_DIR/call_error_details.detail1" \
  'v == {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [{"field": "response_size", "description": "-1 is negative"}]}'
# ... and printed as grpcurl does: "@type" first, the fields in their order.
expect_line call_error_details detail_in_field_order err \
  '  1) {"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"response_size","description":"-1 is negative"}]}'
no_line call_error_details one_detail err '^  2\) '

run call_unimplemented call "${P[@]}" "$TS/UnimplementedCall"
expect_rc call_unimplemented $((64 + 12))
expect_line call_unimplemented code err "  Code: UNIMPLEMENTED"

# ----- health -------------------------------------------------------------------
run health health "${P[@]}"
expect_rc health 0
expect_stdout health "status: SERVING"

run health_service health "${P[@]}" "$TS"
expect_rc health_service 0
expect_stdout health_service "status: SERVING"

run health_not_serving health "${P[@]}" ferrogrpc.cli.NotServing
expect_rc health_not_serving 4
expect_stdout health_not_serving "status: NOT_SERVING"

run health_unknown health "${P[@]}" no.Such.Service
expect_rc health_unknown 3
expect_stdout health_unknown ''

# ----- bench --------------------------------------------------------------------
# bench_step STEP N C DATA STATUS: a bounded run whose JSON summary must count
# N calls, all with STATUS, and the server N more handled calls.
bench_step() {
  local step=$1 n=$2 c=$3 data=$4 status=$5 before after
  before=$(handled)
  run "$step" bench "${P[@]}" "$TS/UnaryCall" -d "$data" -n "$n" -c "$c" --format json
  after=$(handled)
  expect_rc "$step" 0
  expect_json "$step" count "$LOG_DIR/$step.out" "v['count'] == $n" "v['count']"
  expect_json "$step" status "$LOG_DIR/$step.out" "v['status'] == {'$status': $n}" "v['status']"
  if [[ $((after - before)) -eq $n ]]; then
    pass "$step server_handled"
  else
    fail "$step server_handled" "want the server to have handled $n calls, it handled $((after - before)) (log: $SERVER_LOG)"
  fi
}
bench_step bench 50 5 '{"responseSize": 10}' OK
bench_step bench_errors 20 4 '{"responseStatus": {"code": 8, "message": "no"}}' RESOURCE_EXHAUSTED

# ----- channelz -----------------------------------------------------------------
# grpcio-channelz's view of the server: the calls above counted (each run's
# reflection stream too, so at least the 70 bench calls), its listen socket
# and the channelz command's own connection.
run channelz channelz "${P[@]}"
expect_rc channelz 0
if grep -qE '^server [0-9]+: calls started ([7-9][0-9]|[1-9][0-9]{2,}) succeeded [0-9]+ failed [0-9]+$' \
  "$LOG_DIR/channelz.out"; then
  pass "channelz server_counts"
else
  fail "channelz server_counts" "no server line with at least 70 calls: $(show "$LOG_DIR/channelz.out")"
fi
# (grpcio reports the port it was asked for: 0 when it chose one.)
if grep -qE '^  listen socket [0-9]+: 127\.0\.0\.1:[0-9]+$' "$LOG_DIR/channelz.out"; then
  pass "channelz listen_socket"
else
  fail "channelz listen_socket" "no listen socket on 127.0.0.1: $(show "$LOG_DIR/channelz.out")"
fi
if grep -qE '^    streams started [1-9][0-9]* succeeded [0-9]+ failed [0-9]+, messages sent [0-9]+ received [1-9]' \
  "$LOG_DIR/channelz.out"; then
  pass "channelz socket_counts"
else
  fail "channelz socket_counts" "no connection with streams and messages: $(show "$LOG_DIR/channelz.out")"
fi

server_alive grpcio_server "$PY_PID"
cleanup
summary
[[ $FAILED -eq 0 ]] || exit 1
exit 0
