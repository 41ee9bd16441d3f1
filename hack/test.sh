#!/usr/bin/env bash
# `make test`: installs what is missing, lints, builds or reuses the cached binaries, brings the
# local cluster up, runs every test, and brings the cluster down again unless KEEP_CLUSTER=1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

hack/install-deps.sh
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
make --no-print-directory check-generated
hack/build-binaries.sh

teardown() {
  local rc=$?
  if [[ ${KEEP_CLUSTER:-0} == 1 ]]; then
    log "KEEP_CLUSTER=1: leaving the cluster running (make cluster-down stops it)"
  else
    hack/cluster-down.sh || rc=1
  fi
  exit "$rc"
}
trap teardown EXIT
hack/cluster-up.sh
status=0
cargo test --locked --no-fail-fast || status=1
# Upstream dask-kubernetes' own suite (from its wheel) against our operator on the real node.
DASK_OPERATOR_BIN="$CARGO_TARGET_DIR/debug/dask-operator" tests/conformance/run.sh || status=1
# CRD compatibility with the pinned dask-kubernetes wheel (no cluster needed, but run last so that a
# failure here does not hide the cluster tests' results).
DASK_OPERATOR_BIN="$CARGO_TARGET_DIR/debug/dask-operator" python3 -m pytest -q tests/compat || status=1
exit "$status"
