#!/usr/bin/env bash
# Upstream dask-kubernetes' own test suite, as shipped in its PyPI wheel, run against dask-operator
# on the local cluster.
#
#   tests/conformance/run.sh [PYTEST_ARGS...]      e.g.  -k test_job   or   -x
#
# Steps: check the cluster and the operator binary; fetch the pinned wheel (sha256-checked, cached)
# and create (once, cached) a private Python 3.11 venv (both by venv.sh) with the exact pins of
# hack/images/dask-requirements.txt + tests/conformance/requirements.txt + the wheel; extract the
# wheel's operator/controller/tests (with resources/) and operator/kubecluster/tests into a
# temporary directory, unmodified; put our conftest.py at its root in place of upstream's; apply the
# documented patches of patch_upstream.py (fail loudly if one does not match); run pytest with the
# deselections listed in DESELECTED.md; print the summary; exit with pytest's status.
#
# Environment:
#   DASK_OPERATOR_BIN   operator binary (default: $CARGO_TARGET_DIR/debug/dask-operator as the
#                       Makefile resolves it). Not built here: `make build` / cargo build first.
#   PYTHON              interpreter for the venv (default python3; must be CPython 3.11, the Dask
#                       image's version)
#   CONFORMANCE_PYTHON  use this interpreter's environment as is instead of the cached venv
#   CONFORMANCE_TIMEOUT per-test timeout in seconds (default 60, upstream's; tests marked
#                       @pytest.mark.timeout(180) keep 180)
#   CONFORMANCE_KEEP=1  keep the work directory (extracted tests, logs) even when all tests pass
#   CONFORMANCE_RUN_UPSTREAM_SKIPPED=1  also run the tests upstream marks skip("Flaky in CI")
#   CONFORMANCE_INCLUDE_FAILING=1  also run the tests DESELECTED.md lists under "FAILING" (known
#                       operator bugs), e.g. to check a fix
#
# The local cluster must be up (`make cluster-up`); nothing here starts or stops it. Every process
# started here talks to 127.0.0.1 only (the API server relay and port-forwards through it), apart
# from pip reaching the package index once to fill the venv and the wheel cache.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HERE/../.." && pwd)

# The pinned dask-kubernetes version and its wheel's sha256 are in venv.sh.

CACHE_ROOT=${DASK_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dask-operator}
KUBECTL=$REPO_ROOT/.cluster/bin/kubectl
export KUBECONFIG=$REPO_ROOT/.cluster/kubeconfig

log() { echo "conformance: $*" >&2; }
die() { log "error: $*"; exit 2; }

start_time=$SECONDS

# --- the cluster and the operator binary ---------------------------------------------------------
[[ -x $KUBECTL && -f $KUBECONFIG ]] || die "no local cluster ($KUBECTL, $KUBECONFIG): run 'make cluster-up'"
"$KUBECTL" get --raw /readyz >/dev/null 2>&1 || die "the local cluster is not ready: run 'make cluster-up'"
if [[ -z ${DASK_OPERATOR_BIN:-} ]]; then
  target_dir=${CARGO_TARGET_DIR:-$CACHE_ROOT/cargo-target/rust-$(rustc --version | awk '{print $2}')}
  DASK_OPERATOR_BIN=$target_dir/debug/dask-operator
fi
[[ -x $DASK_OPERATOR_BIN ]] || die "operator binary $DASK_OPERATOR_BIN missing: run 'make build' or set DASK_OPERATOR_BIN"
export DASK_OPERATOR_BIN

# --- the wheel and the Python environment --------------------------------------------------------
# venv.sh: the pinned wheel (sha256-checked, cached) and the cached venv (or $CONFORMANCE_PYTHON).
WHEEL=$("$HERE/venv.sh" --wheel)
PY=$("$HERE/venv.sh")

# --- upstream's tests, our conftest, the documented patches ---------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dask-operator-conformance.XXXXXX")
RUN_ID=${WORK##*.}  # mktemp's random suffix; labels the test namespaces
export CONFORMANCE_LOG_DIR=$WORK/logs CONFORMANCE_RUN_ID=$RUN_ID DASK_OPERATOR_REPO=$REPO_ROOT
mkdir -p "$CONFORMANCE_LOG_DIR"
status=2
cleanup() {
  # Namespaces of tests interrupted before their teardown (the fixture deletes the others).
  "$KUBECTL" delete ns -l "dask-operator-conformance/run=$RUN_ID" --wait=false >/dev/null 2>&1 || true
  if [[ $status == 0 && ${CONFORMANCE_KEEP:-} != 1 ]]; then
    rm -rf "$WORK"
  else
    log "kept $WORK (tests, operator and port-forward logs in logs/)"
  fi
}
trap cleanup EXIT

"$PY" - "$WHEEL" "$WORK" <<'EOF'
import sys, zipfile
from pathlib import Path

wheel, work = sys.argv[1], Path(sys.argv[2])
# wheel folder -> folder under the work dir (flat, so that no directory named like the installed
# dask_kubernetes package or like the stdlib's `operator` shadows an import)
folders = {
    "dask_kubernetes/operator/controller/tests/": "controller/tests/",
    "dask_kubernetes/operator/kubecluster/tests/": "kubecluster/tests/",
}
counts = dict.fromkeys(folders, 0)
with zipfile.ZipFile(wheel) as zf:
    for name in zf.namelist():
        for src, dst in folders.items():
            if name.startswith(src) and not name.endswith("/"):
                target = work / dst / name[len(src):]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(name))
                counts[src] += 1
for src, n in counts.items():
    if n == 0:
        sys.exit(f"{wheel}: no files under {src}")
for needed in ("controller/tests/test_controller.py", "controller/tests/resources/simplecluster.yaml",
               "kubecluster/tests/test_kubecluster.py"):
    if not (work / needed).is_file():
        sys.exit(f"{wheel}: {needed} is missing")
EOF
cp "$HERE/conftest.py" "$WORK/conftest.py"
"$PY" "$HERE/patch_upstream.py" "$WORK"

timeout=${CONFORMANCE_TIMEOUT:-60}
cat > "$WORK/pytest.ini" <<EOF
# Written by tests/conformance/run.sh. Upstream's pytest options (not shipped in the wheel):
# -v --durations=10 and timeout = 60; --keep-cluster is pytest-kind's and has no use here.
[pytest]
testpaths = controller/tests kubecluster/tests
addopts = -v --durations=10 -rfEs -p no:cacheprovider
timeout = $timeout
EOF

# The deselect list is the table rows of DESELECTED.md whose first cell is a test id in backticks.
# CONFORMANCE_INCLUDE_FAILING=1 stops reading at the "## FAILING" section, so that the tests
# deselected for known operator bugs run (to check a fix).
deselect=()
while IFS= read -r id; do
  deselect+=(--deselect "$id")
done < <(
  if [[ ${CONFORMANCE_INCLUDE_FAILING:-} == 1 ]]; then sed '/^## FAILING/,$d' "$HERE/DESELECTED.md"; else cat "$HERE/DESELECTED.md"; fi \
    | sed -nE 's/^\| `([^`]+::[^`]+)` \|.*/\1/p'
)
log "operator: $DASK_OPERATOR_BIN; ${#deselect[@]} deselect arguments from DESELECTED.md ($(( ${#deselect[@]} / 2 )) ids)"

cd "$WORK"
set +e
"$PY" -m pytest --junitxml="$CONFORMANCE_LOG_DIR/junit.xml" "${deselect[@]}" "$@"
status=$?
set -e
log "pytest exit status $status; wall time $(( SECONDS - start_time ))s"
exit $status
