#!/usr/bin/env bash
# Creates (once) the virtualenv for Airflow <3|2> from the pinned requirements/airflow-<3|2>.txt and
# installs this provider into it (editable), then prints the venv's path on stdout.
# The venv lives outside the work tree, keyed by a hash of what it is made from:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/dask-operator/airflow-venv-<3|2>-<hash>
# Re-running with unchanged inputs does nothing; a venv whose build was interrupted is rebuilt.
# Usage: hack/venv.sh 3|2     (PYTHON=python3.11 by default)
set -euo pipefail
major=${1:?usage: hack/venv.sh 3|2}
case "$major" in 2|3) ;; *) echo "hack/venv.sh: major version must be 3 or 2, not '$major'" >&2; exit 2 ;; esac
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || { echo "hack/venv.sh: $python not found (set PYTHON)" >&2; exit 2; }
lock="$here/requirements/airflow-$major.txt"
[ -f "$lock" ] || { echo "hack/venv.sh: $lock is missing (hack/lock.sh $major makes it)" >&2; exit 2; }

# The key: the checkout (the provider is installed editable, so a venv serves the checkout it was made
# from), the interpreter, the lock, this script and the pyproject's [build-system]/[project] tables (its
# dependencies and entry points); tool settings (ruff, pytest) do not rebuild the venv.
hash=$( {
    echo "$here"
    "$python" -c 'import sys; print(sys.version)'
    cat "$lock" "$0"
    sed -n '1,/^\[tool\./p' "$here/pyproject.toml"
} | sha256sum | cut -c1-12)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/dask-operator
venv="$cache/airflow-venv-$major-$hash"
if [ -f "$venv/.complete" ]; then
    echo "$venv"
    exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/airflow-venv-$major.lock"
flock 9   # two runs at once: the second waits, then finds the venv complete
if [ ! -f "$venv/.complete" ]; then
    rm -rf "$venv"
    echo "hack/venv.sh: creating $venv" >&2
    started=$SECONDS
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$lock" >&2
    # Editable, without build isolation (hatchling is pinned in the lock): the source tree stays the
    # one imported, and nothing is written into it.
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e "$here" >&2
    "$venv/bin/python" -c 'import dask_operator_provider' >&2
    touch "$venv/.complete"
    echo "hack/venv.sh: $venv ready in $((SECONDS - started))s" >&2
fi
echo "$venv"
