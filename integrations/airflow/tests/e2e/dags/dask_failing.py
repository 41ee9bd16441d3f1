"""Failures the end-to-end test checks: each task fails with a message naming its cause, and leaves no
DaskJob behind (``cleanup="always"`` for the runner that raises; the others never create one)."""

from __future__ import annotations

from datetime import datetime

from dask_operator_provider.operators.daskjob import DaskJobOperator

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

IMAGE = "dask-kubernetes:dev"

RAISES = """
from distributed import Client

client = Client()
print("about to fail on purpose")
raise ValueError("failed on purpose")
"""

with DAG(
    dag_id="dask_failing",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["dask", "e2e"],
):
    # The runner raises: the task fails with the DaskJob's reason and message and the runner's log.
    DaskJobOperator(
        task_id="raises",
        image=IMAGE,
        script=RAISES,
        workers=1,
        cleanup="always",
        deferrable=True,
        poll_interval=2,
        startup_timeout_seconds=300,
    )
    # A namespace that does not exist: fails at once, naming it.
    DaskJobOperator(
        task_id="no_namespace",
        image=IMAGE,
        command=["python", "-c", "print(1)"],
        namespace="airflow-e2e-no-such-namespace",
    )
    # Rejected by the CRD's schema (replicas must be an integer).
    DaskJobOperator(
        task_id="bad_schema",
        job={
            "apiVersion": "kubernetes.dask.org/v1",
            "kind": "DaskJob",
            "spec": {
                "job": {"spec": {"containers": [{"name": "job", "image": IMAGE}]}},
                "cluster": {
                    "spec": {
                        "worker": {"replicas": "two", "spec": {"containers": []}},
                        "scheduler": {"spec": {"containers": []}, "service": {}},
                    }
                },
            },
        },
    )
    # Not a DaskJob at all.
    DaskJobOperator(
        task_id="not_a_daskjob",
        job="apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: x}]}\n",
    )
