"""End to end: ``airflow dags test`` of every example DAG against the cluster of ``$KUBECONFIG``, each DAG
in a namespace of its own (``airflow-<major>-<dag>-<random>``, made and deleted here), with real Dask pods.

Run by ``tests/e2e/run.sh``, which sets:

- ``KUBECONFIG``: the cluster; dask-operator's CRDs must be installed there.
- ``AIRFLOW_HOME``: a migrated scratch home whose ``dags_folder`` holds the example DAGs and ``dags/``.
- ``E2E_AIRFLOW``: the ``airflow`` command of the venv under test.
- ``E2E_OPERATOR`` (optional): a dask-operator binary, started for each namespace
  (``run --namespaces <ns> --http-addr 127.0.0.1:0``); without it an operator must already serve the
  cluster's namespaces.
- ``E2E_ARTIFACTS``: where each run's output and the operator's log are kept.

Asserted: the DAG run's outcome and every task's state, the XCom of the mean (close to 1.0), the
messages of the failing tasks, and that no DaskJob, DaskCluster or pod is left in the namespace.
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config

AIRFLOW = os.environ.get("E2E_AIRFLOW", "airflow")
ARTIFACTS = pathlib.Path(os.environ.get("E2E_ARTIFACTS", "/tmp/airflow-e2e"))
MAJOR = os.environ.get("E2E_AIRFLOW_MAJOR", "3")
DAG_TIMEOUT = int(os.environ.get("E2E_DAG_TIMEOUT", "900"))
GROUP, VERSION = "kubernetes.dask.org", "v1"

pytestmark = pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="KUBECONFIG is not set")


@pytest.fixture(scope="module")
def api() -> client.ApiClient:
    config.load_kube_config()
    return client.ApiClient()


def _short(dag_id: str) -> str:
    return dag_id.removeprefix("dask_").replace("_", "-")[:20]


@pytest.fixture
def namespace(request: pytest.FixtureRequest, api: client.ApiClient) -> Iterator[str]:
    dag_id = request.node.callspec.params["dag_id"]
    ns = f"airflow-{MAJOR}-{_short(dag_id)}-{secrets.token_hex(3)}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    operator = None
    if os.environ.get("E2E_OPERATOR"):
        log = open(ARTIFACTS / f"{ns}.operator.log", "w")  # noqa: SIM115 (closed below)
        operator = subprocess.Popen(
            [os.environ["E2E_OPERATOR"], "run", "--namespaces", ns, "--http-addr", "127.0.0.1:0"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield ns
    finally:
        # The operator keeps running until the namespace is gone: finalizers of its objects need it.
        try:
            core.delete_namespace(ns)
            _eventually(lambda: not _namespace_exists(core, ns), 180, f"namespace {ns} to be deleted")
        finally:
            if operator is not None:
                operator.terminate()
                try:
                    operator.wait(30)
                except subprocess.TimeoutExpired:
                    operator.kill()
                log.close()


def _namespace_exists(core: client.CoreV1Api, ns: str) -> bool:
    try:
        core.read_namespace(ns)
    except client.ApiException as e:
        if e.status == 404:
            return False
        raise
    return True


def _eventually(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(2)


def leftovers(api: client.ApiClient, ns: str) -> dict[str, list[str]]:
    custom = client.CustomObjectsApi(api)
    found = {
        plural: [
            o["metadata"]["name"]
            for o in custom.list_namespaced_custom_object(GROUP, VERSION, ns, plural)["items"]
        ]
        for plural in ("daskjobs", "daskclusters", "daskworkergroups")
    }
    found["pods"] = [p.metadata.name for p in client.CoreV1Api(api).list_namespaced_pod(ns).items]
    return {k: v for k, v in found.items() if v}


def dags_test(dag_id: str, ns: str) -> tuple[int, str, float]:
    env = dict(os.environ)
    if os.environ.get("E2E_OPERATOR"):
        # The command line under test is the same binary (dask_cli_bash).
        env["DASK_OPERATOR_CLI"] = os.environ["E2E_OPERATOR"]
    env["AIRFLOW_CONN_KUBERNETES_DEFAULT"] = json.dumps(
        {"conn_type": "kubernetes", "extra": {"kube_config_path": os.environ["KUBECONFIG"], "namespace": ns}}
    )
    started = time.monotonic()
    proc = subprocess.run(
        [AIRFLOW, "dags", "test", dag_id],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=DAG_TIMEOUT,
        check=False,
    )
    elapsed = time.monotonic() - started
    output = proc.stdout + _task_logs(dag_id)
    (ARTIFACTS / f"{ns}.dags-test.log").write_text(output)
    print(
        f"airflow dags test {dag_id}: exit {proc.returncode} in {elapsed:.1f}s "
        f"(log: {ARTIFACTS}/{ns}.dags-test.log)"
    )
    return proc.returncode, output, elapsed


def _task_logs(dag_id: str) -> str:
    logs = pathlib.Path(os.environ["AIRFLOW_HOME"]) / "logs"
    texts = [
        p.read_text(errors="replace") for p in sorted(logs.rglob("*")) if p.is_file() and dag_id in str(p)
    ]
    return "\n".join(texts)


def _db() -> sqlite3.Connection:
    return sqlite3.connect(pathlib.Path(os.environ["AIRFLOW_HOME"]) / "airflow.db")


def task_states(dag_id: str) -> dict[str, str]:
    with _db() as db:
        rows = db.execute(
            "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = ? AND run_id = "
            "(SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1)",
            (dag_id, dag_id),
        ).fetchall()
    return {(t if m < 0 else f"{t}[{m}]"): s for t, m, s in rows}


def task_seconds(dag_id: str, task_id: str) -> float | None:
    with _db() as db:
        row = db.execute(
            "SELECT start_date, end_date FROM task_instance WHERE dag_id = ? AND task_id = ? "
            "ORDER BY rowid DESC",
            (dag_id, task_id),
        ).fetchone()
    if not row or not row[0] or not row[1]:
        return None
    from datetime import datetime

    def parse(s: str) -> datetime:
        return datetime.fromisoformat(s.replace(" ", "T").split("+")[0])

    return (parse(row[1]) - parse(row[0])).total_seconds()


def xcom(dag_id: str, task_id: str, key: str = "return_value") -> Any:
    with _db() as db:
        row = db.execute(
            "SELECT value FROM xcom WHERE dag_id = ? AND task_id = ? AND key = ? ORDER BY rowid DESC",
            (dag_id, task_id, key),
        ).fetchone()
    assert row is not None, f"no XCom {key} of {dag_id}.{task_id}"
    value: Any = row[0]
    if isinstance(value, bytes):
        value = value.decode()
    while isinstance(value, str):  # JSON, once or twice encoded depending on the Airflow version
        try:
            value = json.loads(value)
        except ValueError:
            break
    return value


EXPECTED = {
    "dask_mean": (0, {"mean": "success", "check": "success"}),
    "dask_generic": (0, {"create": "success", "wait": "success", "delete": "success"}),
    "dask_cluster_pod": (0, {"create_cluster": "success", "client": "success", "delete_cluster": "success"}),
    "dask_shared_cluster": (
        0,
        {
            "create_cluster": "success",
            "part_0": "success",
            "part_1": "success",
            "part_2": "success",
            "add": "success",
            "delete_cluster": "success",
        },
    ),
    "dask_cli_bash": (0, {"submit": "success", "check": "success"}),
    "dask_failing": (
        1,
        {"raises": "failed", "no_namespace": "failed", "bad_schema": "failed", "not_a_daskjob": "failed"},
    ),
}


@pytest.mark.parametrize("dag_id", list(EXPECTED))
def test_dag(dag_id: str, namespace: str, api: client.ApiClient) -> None:
    want_exit, want_states = EXPECTED[dag_id]
    code, output, _ = dags_test(dag_id, namespace)
    states = task_states(dag_id)
    assert states == want_states, f"task states {states}; output tail:\n{output[-4000:]}"
    if want_exit == 0:  # a failed DAG run's exit code differs between Airflow versions: states decide
        assert code == 0, f"exit code {code}; output tail:\n{output[-4000:]}"

    if dag_id == "dask_mean":
        result = xcom("dask_mean", "mean")
        assert isinstance(result, dict), result
        assert abs(result["mean"] - 1.0) < 0.01, result
        assert "the DaskJob's mean is" in output
        assert "mean of x + x.T:" in output  # the runner's log, copied into the task log
        print(f"dask_mean: mean={result['mean']}, task 'mean' took {task_seconds('dask_mean', 'mean')}s")
    if dag_id == "dask_shared_cluster":
        assert xcom("dask_shared_cluster", "add") == sum(range(3_000_000))
    if dag_id == "dask_generic":
        assert abs(xcom("dask_generic", "wait")["mean"] - 1.0) < 0.01
    if dag_id == "dask_cli_bash":
        assert abs(xcom("dask_cli_bash", "check") - 1.0) < 0.01
        assert "mean of x + x.T:" in output  # the runner's log, streamed by the command line
    if dag_id == "dask_failing":
        assert "failed: RunnerFailed" in output, output[-4000:]
        assert "ValueError: failed on purpose" in output
        assert "namespace 'airflow-e2e-no-such-namespace' does not exist" in output
        assert "rejected by the API server" in output
        assert "replicas" in output
        assert "is not a DaskJob: it is a Pod" in output

    _eventually(
        lambda: not leftovers(api, namespace), 180, f"no DaskJob, DaskCluster or pod left in {namespace}"
    )
