#!/usr/bin/env bash
# Prints the path of the Python interpreter of the cached test-client venv: CPython 3.11 with the
# exact pins of hack/images/dask-requirements.txt + tests/conformance/requirements.txt + the pinned,
# sha256-checked dask-kubernetes wheel (which brings kopf and the upstream operator). Creates the
# venv once (under a lock, so concurrent callers share it); later calls only print the path.
#
# Used by run.sh (upstream's suite) and by tests/install/test_migration.py (which runs the real kopf
# operator from the wheel). Nothing is installed into the system Python.
#
# Environment:
#   PYTHON              interpreter for the venv (default python3; must be CPython 3.11)
#   CONFORMANCE_PYTHON  print this interpreter instead of making the cached venv
#   DASK_OPERATOR_CACHE cache root (default ${XDG_CACHE_HOME:-~/.cache}/dask-operator)
#
# `venv.sh --wheel` prints the path of the wheel instead (fetched if needed; no venv is made).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HERE/../.." && pwd)

DASK_KUBERNETES_VERSION=2026.3.0
WHEEL_SHA256=5cf138e03cb1851063b82b74e9fd4679251238e3867fcae1e3682aada6410728

CACHE_ROOT=${DASK_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dask-operator}

log() { echo "conformance: $*" >&2; }
die() { log "error: $*"; exit 2; }

PYTHON=${PYTHON:-python3}
py_version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[[ $py_version == 3.11 ]] || die "$PYTHON is Python $py_version; the test client must run CPython 3.11 like the Dask image (set PYTHON)"

WHEEL=$("$PYTHON" - "$REPO_ROOT/tests/compat" "$DASK_KUBERNETES_VERSION" "$WHEEL_SHA256" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
from fetch_wheel import fetch_wheel
print(fetch_wheel(sys.argv[2], sys.argv[3]))
EOF
)
if [[ ${1:-} == --wheel ]]; then
  echo "$WHEEL"
  exit 0
fi

if [[ -n ${CONFORMANCE_PYTHON:-} ]]; then
  echo "$CONFORMANCE_PYTHON"
  exit 0
fi

key=$({ cat "$REPO_ROOT/hack/images/dask-requirements.txt" "$HERE/requirements.txt"
        echo "$WHEEL_SHA256"; "$PYTHON" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16)
VENV=$CACHE_ROOT/venvs/conformance-$key
mkdir -p "$CACHE_ROOT/venvs"
(
  flock 9
  if [[ ! -f $VENV/.complete ]]; then
    log "creating the test client venv $VENV"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
      -r "$REPO_ROOT/hack/images/dask-requirements.txt" -r "$HERE/requirements.txt" "$WHEEL" >&2
    "$VENV/bin/python" -m pip check --disable-pip-version-check >/dev/null \
      || { "$VENV/bin/python" -m pip check >&2; die "the pins are incomplete or inconsistent"; }
    touch "$VENV/.complete"
  fi
) 9>"$VENV.lock"
echo "$VENV/bin/python"
