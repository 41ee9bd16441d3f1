#!/usr/bin/env bash
# End to end: `airflow dags test` of every example DAG (examples/airflow) and of the failing DAG
# (tests/e2e/dags) against the cluster of $KUBECONFIG, each DAG in a namespace of its own, for Airflow 3
# and 2 (each from its cached venv, hack/venv.sh). Real Dask pods: the image dask-kubernetes:dev must be on
# the cluster's node(s) and dask-operator's CRDs installed.
#
# Usage: KUBECONFIG=... tests/e2e/run.sh [3|2 ...]        (default: 3 2)
#   E2E_OPERATOR=/path/to/dask-operator   start that binary for each test namespace
#                                         (otherwise an operator must already serve all namespaces)
#   E2E_ARTIFACTS=dir                     keep outputs there (default: a temp dir, printed)
#   E2E_SELECT="dask_mean or dask_generic"  a pytest -k expression selecting DAGs
#   E2E_FAKE_APISERVER=1                  no cluster: run the DAGs that need no real pods (dask_mean,
#                                         dask_generic) against tests/e2e/fake_apiserver.py, which plays
#                                         the API server and dask-operator (checks Airflow, not Dask)
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
examples=$(cd "$here/../../examples/airflow" && pwd)
fake_pid=
cleanup() { if [ -n "$fake_pid" ]; then kill "$fake_pid" 2>/dev/null || true; fi; }
trap cleanup EXIT
if [ -n "${E2E_FAKE_APISERVER:-}" ]; then
    fake_dir=$(mktemp -d -t airflow-fake-apiserver-XXXXXX)
    "$("$here/hack/venv.sh" 3)/bin/python" "$here/tests/e2e/fake_apiserver.py" "$fake_dir/kubeconfig" \
        2>"$fake_dir/requests.log" &
    fake_pid=$!
    for _ in $(seq 50); do [ -s "$fake_dir/kubeconfig" ] && break; sleep 0.2; done
    KUBECONFIG="$fake_dir/kubeconfig"
    E2E_SELECT=${E2E_SELECT:-"dask_mean or dask_generic"}
    unset E2E_OPERATOR
    echo "run.sh: fake API server (pid $fake_pid), requests logged in $fake_dir/requests.log"
fi
: "${KUBECONFIG:?set KUBECONFIG to the cluster to run the DAGs against}"
[ -r "$KUBECONFIG" ] || { echo "run.sh: cannot read KUBECONFIG=$KUBECONFIG" >&2; exit 2; }
export KUBECONFIG
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(3 2)
artifacts=${E2E_ARTIFACTS:-$(mktemp -d -t airflow-e2e-XXXXXX)}
mkdir -p "$artifacts"
echo "run.sh: artifacts in $artifacts"
status=0
for major in "${versions[@]}"; do
    venv=$("$here/hack/venv.sh" "$major")
    home=$(mktemp -d -t "airflow-home-$major-XXXXXX")
    mkdir -p "$home/dags"
    ln -s "$examples"/*.py "$here"/tests/e2e/dags/*.py "$home/dags/"
    export AIRFLOW_HOME="$home" AIRFLOW__CORE__DAGS_FOLDER="$home/dags" AIRFLOW__CORE__LOAD_EXAMPLES=False
    # No DAG-bundle refreshes or unit-test shortcuts: `dags test` parses the DAG file and runs tasks in
    # process, re-creating a deferred trigger from its serialized form and running it inline.
    started=$SECONDS
    "$venv/bin/airflow" db migrate >"$artifacts/db-migrate-$major.log" 2>&1 \
        || { echo "run.sh: airflow db migrate failed (see $artifacts/db-migrate-$major.log)" >&2; exit 1; }
    echo "== Airflow $major: db migrated in $((SECONDS - started))s ($home)"
    E2E_AIRFLOW="$venv/bin/airflow" E2E_AIRFLOW_MAJOR="$major" E2E_ARTIFACTS="$artifacts/airflow-$major" \
        "$venv/bin/python" -m pytest -p no:cacheprovider -v -s --rootdir "$here" "$here/tests/e2e/test_dags.py" \
        ${E2E_SELECT:+-k "$E2E_SELECT"} || status=1
    echo "== Airflow $major: e2e took $((SECONDS - started))s"
    rm -rf "$home"
done
exit $status
