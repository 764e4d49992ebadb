#!/usr/bin/env bash
# Builds the helloworld example, starts the greeter server, calls it with the
# greeter client, and stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."
# Cargo's progress goes to stderr, so a cold build is visibly working and
# stdout carries only what the server and client print.
echo "building the helloworld example (the first build takes a minute or two)…" >&2
cargo build -p ferrogrpc-examples --bin helloworld_server --bin helloworld_client >&2
addr=127.0.0.1:${PORT:-50051}
target/debug/helloworld_server "$addr" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/${addr%:*}/${addr#*:}") 2>/dev/null && break; sleep 0.1; done
target/debug/helloworld_client "$addr" "${1:-world}"
