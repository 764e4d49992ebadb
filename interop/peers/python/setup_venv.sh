#!/usr/bin/env bash
# Prepare the Python (grpcio / gRPC C core) interop peer.
#
#   interop/peers/python/setup_venv.sh VENV_DIR
#
# Creates a virtualenv at VENV_DIR (if missing), installs pinned grpcio,
# grpcio-tools, grpcio-health-checking (the grpc_health package, for
# interop/health/), grpcio-reflection (the grpc_reflection package, for
# interop/reflection/) and grpcio-channelz (the grpc_channelz package, for
# interop/channelz/) from PyPI, and generates the Python stubs for
# interop/proto/grpc/testing/*.proto into VENV_DIR/gen (never into the repo).
# Safe to re-run: every step is skipped when already done for the same
# versions and the same .proto contents.
#
# Env:
#   PYTHON          interpreter used to create the venv (default: python3)
#   GRPCIO_VERSION  grpcio / grpcio-tools / grpcio-health-checking /
#                   grpcio-reflection / grpcio-channelz version (default
#                   below)
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 VENV_DIR" >&2
  exit 2
fi

VENV_DIR=$1
PYTHON=${PYTHON:-python3}
GRPCIO_VERSION=${GRPCIO_VERSION:-1.76.0}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROTO_ROOT=$(cd "$HERE/../../proto" && pwd)
PROTOS=(
  grpc/testing/empty.proto
  grpc/testing/messages.proto
  grpc/testing/test.proto
)

log() { echo "setup_venv: $*" >&2; }

# 1. The venv itself.
if [[ ! -x "$VENV_DIR/bin/python" ]]; then
  log "creating venv in $VENV_DIR"
  mkdir -p "$(dirname "$VENV_DIR")"
  "$PYTHON" -m venv "$VENV_DIR"
fi
VPY="$VENV_DIR/bin/python"

# 2. Packages (pinned). A stamp file records what was installed.
PKG_STAMP="$VENV_DIR/.ferrogrpc-pkgs"
WANT_PKGS="grpcio==$GRPCIO_VERSION grpcio-tools==$GRPCIO_VERSION grpcio-health-checking==$GRPCIO_VERSION"
WANT_PKGS+=" grpcio-reflection==$GRPCIO_VERSION grpcio-channelz==$GRPCIO_VERSION"
if [[ "$(cat "$PKG_STAMP" 2>/dev/null || true)" != "$WANT_PKGS" ]] ||
   ! "$VPY" -c 'import grpc, grpc_tools, grpc_health.v1.health, grpc_reflection.v1alpha.proto_reflection_descriptor_database, grpc_channelz.v1.channelz_pb2_grpc' >/dev/null 2>&1; then
  log "installing $WANT_PKGS"
  # shellcheck disable=SC2086
  "$VPY" -m pip install --quiet --disable-pip-version-check $WANT_PKGS
  echo "$WANT_PKGS" > "$PKG_STAMP"
fi

# 3. Generated stubs, regenerated whenever a .proto or the version changes.
GEN_DIR="$VENV_DIR/gen"
GEN_STAMP="$GEN_DIR/.stamp"
want_gen=$(
  {
    echo "$WANT_PKGS"
    for p in "${PROTOS[@]}"; do cat "$PROTO_ROOT/$p"; done
  } | cksum
)
if [[ "$(cat "$GEN_STAMP" 2>/dev/null || true)" != "$want_gen" ]]; then
  log "generating Python stubs into $GEN_DIR"
  rm -rf "$GEN_DIR"
  mkdir -p "$GEN_DIR"
  "$VPY" -m grpc_tools.protoc \
    -I "$PROTO_ROOT" \
    --python_out="$GEN_DIR" \
    --grpc_python_out="$GEN_DIR" \
    "${PROTOS[@]}"
  # The stubs live in GEN_DIR/grpc/testing and import each other as
  # "grpc.testing.*". Since "grpc" is grpcio's own package, the peer scripts
  # append GEN_DIR/grpc to grpc.__path__ so that grpc.testing resolves here.
  touch "$GEN_DIR/grpc/testing/__init__.py"
  echo "$want_gen" > "$GEN_STAMP"
fi

"$VPY" -c 'import grpc; print("setup_venv: grpcio", grpc.__version__, "ready")' >&2
