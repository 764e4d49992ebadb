#!/usr/bin/env bash
# Checks that the crates users depend on, ferrogrpc and ferrogrpc-build,
# package as crates.io would receive them: the file list has what a
# published crate needs, and each packaged crate builds on its own from the
# .crate contents (cargo package's verify step, in target/package/).
#
#   .ci/package-check.sh
#
# Offline by default: run it after the workspace's dependencies have been
# downloaded (any cargo build or test of the workspace does that, as the
# earlier steps of .ci/run do). PACKAGE_CHECK_ONLINE=1 lets cargo use the
# network. --allow-dirty: the check is about what would be packaged, so it
# runs on a working tree with uncommitted changes too.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

net=(--offline)
[[ "${PACKAGE_CHECK_ONLINE:-0}" == 1 ]] && net=()

# ferrogrpc-build first: it does not depend on ferrogrpc, and ferrogrpc does
# not depend on it (only the examples and tests use both).
for crate in ferrogrpc-build ferrogrpc; do
  echo "== cargo package --list -p $crate"
  list=$(cargo package -p "$crate" "${net[@]}" --allow-dirty --list)
  for want in Cargo.toml README.md src/lib.rs; do
    grep -qx "$want" <<<"$list" || { echo "package-check: $crate: $want missing from the package" >&2; exit 1; }
  done
  if grep -E '^(target/|\.venv/)|\.(pem|key)$' <<<"$list"; then
    echo "package-check: $crate: build output or key material in the package (above)" >&2
    exit 1
  fi
  echo "$(wc -l <<<"$list") files"

  echo "== cargo package -p $crate (with verify build)"
  cargo package -p "$crate" "${net[@]}" --allow-dirty
done
echo "package-check: OK"
