#!/usr/bin/env bash
# Lint (ruff check + ruff format --check) and the provider's unit tests on Airflow 3 and Airflow 2, each
# in its cached venv (hack/venv.sh). No cluster is needed.
# Usage: hack/test.sh [3|2 ...]   (default: 3 2)   extra pytest args: PYTEST_ARGS="-k trigger"
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
examples=$(cd "$here/../../examples/airflow" && pwd)
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(3 2)
status=0
for major in "${versions[@]}"; do
    venv=$("$here/hack/venv.sh" "$major")
    echo "== Airflow $("$venv/bin/python" -c 'from importlib.metadata import version; print(version("apache-airflow"))') ($venv)"
    if [ "$major" = "${versions[0]}" ]; then
        # One lint is enough: the same ruff is pinned in both locks.
        (cd "$here" && "$venv/bin/ruff" check --config pyproject.toml . "$examples" \
            && "$venv/bin/ruff" format --check --config pyproject.toml . "$examples") || status=1
    fi
    # A scratch AIRFLOW_HOME: the tests never touch a real one.
    home=$(mktemp -d)
    (cd "$here" && AIRFLOW_HOME="$home" "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/unit ${PYTEST_ARGS:-}) || status=1
    rm -rf "$home"
done
exit $status
